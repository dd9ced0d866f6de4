"""The trigger consumer takes a read of the log as one batch (one transaction); fed the same events
one at a time it must start and feed exactly the same runs. A random mix of tags added and removed
and messages from a few contacts is fed both ways, from the same position of the log."""

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from tertulia.channels.models import Channel
from tertulia.contacts import service as contacts
from tertulia.contacts.models import Contact
from tertulia.events import dispatcher
from tertulia.events.models import ConsumerPosition
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.workflows.models import WorkflowRun
from tertulia.workflows.triggers import CONSUMER
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter
from tests.workflows.support import channel_on_fake, customer_writes, publish

ONE_AT_A_TIME = dispatcher.Consumer(CONSUMER.name, CONSUMER.handle, CONSUMER.types)
ASK = {
    "id": "ask",
    "type": "ask_question",
    "config": {"text": "¿Cuántos?", "kind": "number", "save_to": {"kind": "variable", "name": "n"}},
}
WORKFLOWS = {
    "vip": {"trigger": {"type": "tag_added", "config": {"tags": ["vip"]}}, "steps": [ASK]},
    "any tag": {"trigger": {"type": "tag_added"}, "steps": [{**ASK, "id": "other"}]},
    "once": {
        "trigger": {"type": "tag_removed", "once_per_contact": True},
        "steps": [{"id": "note", "type": "add_comment", "config": {"text": "sin etiqueta"}}],
    },
}


@pytest.fixture
def channel(db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter) -> Iterator[Channel]:
    with channel_on_fake(db, tenant) as (found, _provider):
        for name, definition in WORKFLOWS.items():
            publish(db, tenant, definition, name=name)
        queue.huey.immediate = False  # the test feeds the consumer itself
        try:
            yield found
        finally:
            queue.huey.immediate = True
            queue.huey.flush()


def act(
    db: Database, tenant: Tenant, channel: Channel, senders: list[str], contact_ids: list[int], step: tuple[str, int]
) -> None:
    kind, who = step
    if kind == "write":
        customer_writes(db, channel, senders[who], "3")
        return
    with db.transaction() as session:
        contact = session.get(Contact, contact_ids[who])
        assert contact is not None
        tag = "vip" if kind.endswith("vip") else "nuevo"
        if kind.startswith("tag"):
            contacts.do_add_tags(session, tenant.actor(), contact, [tag])
        else:
            contacts.do_remove_tags(session, tenant.actor(), contact, [tag])


def feed_from(db: Database, position: int, consumer: dispatcher.Consumer) -> list[tuple[Any, ...]]:
    """Forget every run, put the consumer back at `position`, feed it everything: the runs it made."""
    with db.transaction() as session:
        session.execute(delete(WorkflowRun))
        session.execute(
            update(ConsumerPosition).where(ConsumerPosition.name == CONSUMER.name).values(last_event_id=position)
        )
    newest = dispatcher.newest_event_id(db)
    while True:
        dispatcher.dispatch(db, [consumer])
        with db.transaction(write=False) as session:
            if session.get(ConsumerPosition, CONSUMER.name).last_event_id >= newest:  # type: ignore[union-attr]
                break
    with db.transaction(write=False) as session:
        rows = session.scalars(select(WorkflowRun).order_by(WorkflowRun.workflow_id, WorkflowRun.contact_id))
        return [
            (run.workflow_id, run.contact_id, run.trigger_event_id, run.last_event_id, run.inbox, run.status)
            for run in rows
        ]


numbers = itertools.count(1)
STEPS = st.tuples(st.sampled_from(["tag vip", "tag other", "untag vip", "untag other", "write"]), st.integers(0, 2))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)
@given(steps=st.lists(STEPS, min_size=1, max_size=12))
def test_a_batch_starts_and_feeds_the_same_runs_as_one_event_at_a_time(
    db: Database, tenant: Tenant, channel: Channel, no_background_work: None, steps: list[tuple[str, int]]
) -> None:
    # New contacts for each example: those of the last one already have their tags.
    senders = [f"+52550{next(numbers):06d}" for _ in range(3)]
    contact_ids = [customer_writes(db, channel, sender, "hola") for sender in senders]
    dispatcher.dispatch(db, [CONSUMER])  # the first messages are behind both runs below
    start = dispatcher.newest_event_id(db)
    for step in steps:
        act(db, tenant, channel, senders, contact_ids, step)
    one_at_a_time = feed_from(db, start, ONE_AT_A_TIME)
    batched = feed_from(db, start, CONSUMER)
    assert batched == one_at_a_time
    tagged = {who for kind, who in steps if kind.startswith("tag")}
    assert {contact for _, contact, *_ in batched} >= {contact_ids[who] for who in tagged}
