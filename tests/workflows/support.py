"""Helpers for the workflow tests: a channel on a fake provider, customers who write, workflows
saved and published through the service, and reading runs, logs and messages back."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.conversations import repository as conversations_repo
from tertulia.conversations import service as conversations_service
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.models import Conversation, Direction, Message
from tertulia.events import dispatcher
from tertulia.kit.db import Database
from tertulia.segments import repository as segments_repo
from tertulia.users.models import User
from tertulia.users.service import do_set_activity_status
from tertulia.workflows import runner, service
from tertulia.workflows.models import WorkflowRun, WorkflowRunLog
from tertulia.workflows.triggers import CONSUMER
from tests.conftest import Tenant
from tests.fakes import FakeProvider, fake_provider


@contextmanager
def channel_on_fake(db: Database, tenant: Tenant) -> Iterator[tuple[Channel, FakeProvider]]:
    with fake_provider() as provider:
        with db.transaction() as session:
            channel = do_create_channel(session, tenant.actor(), "fakehttp", "Fake", {"url": provider.url})
            session.expunge(channel)
        yield channel, provider


counter = iter(range(1, 1_000_000))


def customer_writes(db: Database, channel: Channel, sender: str, text: str) -> int:
    """One message from `sender` on the channel; the contact's id."""
    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        received = do_receive_many(
            session, [(stored, InboundMessage(sender_id=sender, provider_message_id=f"in-{next(counter)}", text=text))]
        )
        return received[0].contact.id


def publish(db: Database, tenant: Tenant, definition: dict[str, Any], name: str = "Flow") -> int:
    with db.transaction() as session:
        workflow = service.do_create_workflow(session, tenant.actor(), name, definition)
        service.do_publish(session, tenant.actor(), workflow)
        return workflow.id


def dispatch(db: Database, timeout: float = 15.0) -> None:
    """Feed the trigger consumer every event written so far (another dispatcher may hold its lease
    for a moment, and PostgreSQL's horizon may hold back the newest events: wait for the position)."""
    newest = dispatcher.newest_event_id(db)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dispatcher.dispatch(db, [CONSUMER])
        status = {s.name: s for s in dispatcher.consumer_status(db)}.get(CONSUMER.name)
        if status is not None and status.last_event_id >= newest:
            return
        time.sleep(0.02)
    raise AssertionError("the workflows consumer did not catch up")


def feed(db: Database, *, allow_private: bool = True) -> None:
    """Run the trigger consumer over every event so far, then every due run."""
    dispatch(db)
    runner.run_due(db, policy=runner.Policy(allow_private=allow_private))


def advance(db: Database, now: datetime | None = None) -> None:
    runner.run_due(db, now=now, policy=runner.Policy(allow_private=True))


def runs(db: Database, workflow_id: int) -> list[WorkflowRun]:
    with db.transaction(write=False) as session:
        found = list(
            session.scalars(select(WorkflowRun).where(WorkflowRun.workflow_id == workflow_id).order_by(WorkflowRun.id))
        )
        for run in found:
            session.expunge(run)
        return found


def logs(db: Database, run_id: int) -> list[tuple[str, str]]:
    with db.transaction(write=False) as session:
        rows = session.scalars(
            select(WorkflowRunLog).where(WorkflowRunLog.run_id == run_id).order_by(WorkflowRunLog.id)
        )
        return [(row.step_id, row.outcome) for row in rows]


def sent_texts(db: Database, contact_id: int) -> list[str]:
    with db.transaction(write=False) as session:
        query = (
            select(Message.text)
            .where(Message.contact_id == contact_id, Message.direction == Direction.OUTGOING)
            .order_by(Message.id)
        )
        return [text or "" for text in session.scalars(query)]


def open_conversation(db: Database, contact_id: int) -> Conversation | None:
    with db.transaction(write=False) as session:
        found = session.scalar(
            select(Conversation).where(Conversation.contact_id == contact_id, Conversation.status == "open")
        )
        if found is not None:
            session.expunge(found)
        return found


def tags_of(db: Database, contact_id: int) -> list[str]:
    with db.transaction(write=False) as session:
        return sorted(segments_repo.contact_tag_keys(session, contact_id))


def set_status(db: Database, user_id: int, status: str) -> None:
    """The user's activity status (online, away, busy, offline), as they would set it."""
    with db.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        do_set_activity_status(session, user, status)


def close_conversation(db: Database, tenant: Tenant, contact_id: int) -> None:
    """An owner closes the contact's open conversation, with no category or summary."""
    with db.transaction() as session:
        conversation = conversations_repo.open_conversation(session, tenant.workspace_id, contact_id)
        assert conversation is not None
        conversations_service.do_close(session, tenant.actor(), conversation, category_id=None, summary=None)
