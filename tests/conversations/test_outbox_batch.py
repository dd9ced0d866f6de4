"""The outbox's batch path (`process_outbound_batch`): many pending messages claimed in one
transaction, sent together, recorded in one, with the same outcome as one by one."""

import itertools
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tertulia.channels.models import Channel
from tertulia.channels.protocol import PACE_SETTING, Pace
from tertulia.contacts.models import Contact, ContactIdentity
from tertulia.conversations import outbox
from tertulia.conversations.models import DeliveryStatus, Message
from tertulia.events.models import EventRecord
from tertulia.kit import queue
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.conversations.support import fake_channel_with_contact
from tests.fakes import FakeProvider, fake_provider

pytestmark = pytest.mark.usefixtures("fakehttp_adapter")


@pytest.fixture
def held_queue(db: Database) -> Iterator[None]:
    """Sends are queued, not run: the test drives the outbox itself."""
    queue.huey.immediate = False
    queue.use_database(db)
    queue.huey.flush()
    yield
    queue.huey.flush()
    queue.use_database(None)


def _backlog(client: TestClient, db: Database, tenant: Tenant, provider: FakeProvider, count: int) -> list[int]:
    """`count` pending replies on one channel, each to a different customer."""
    channel_id, first_contact = fake_channel_with_contact(db, tenant, provider.url)
    contact_ids = [first_contact]
    with db.transaction() as session:
        for n in range(1, count):
            contact = Contact(workspace_id=tenant.workspace_id, first_name=f"Cliente {n}", custom={})
            session.add(contact)
            session.flush()
            session.add(
                ContactIdentity(
                    workspace_id=tenant.workspace_id,
                    contact_id=contact.id,
                    channel="fakehttp",
                    external_id=f"+52155{n:08d}",
                )
            )
            contact_ids.append(contact.id)
    ids = []
    for n, contact_id in enumerate(contact_ids):
        response = client.post(
            f"/api/v1/contacts/id:{contact_id}/messages",
            headers=tenant.headers,
            json={"channel_id": channel_id, "message": {"type": "text", "text": f"Aviso {n}"}},
        )
        assert response.status_code == 201, response.text
        ids.append(int(response.json()["id"]))
    queue.huey.flush()  # their single-message tasks are dropped: the batch sends them
    return ids


def _statuses(db: Database, ids: list[int]) -> dict[int, tuple[DeliveryStatus, str | None, int, str | None]]:
    with db.transaction(write=False) as session:
        rows = session.execute(
            select(
                Message.id, Message.status, Message.status_reason, Message.attempts, Message.provider_message_id
            ).where(Message.id.in_(ids))
        )
        return {int(r[0]): (DeliveryStatus(r[1]), r[2], int(r[3]), r[4]) for r in rows}


def _status_events(db: Database, ids: list[int]) -> Counter[tuple[int, str]]:
    with db.transaction(write=False) as session:
        payloads = session.scalars(select(EventRecord.payload).where(EventRecord.type == "message.status_changed"))
        return Counter((int(p["message_id"]), str(p["status"])) for p in payloads if int(p["message_id"]) in set(ids))


def test_a_backlog_is_sent_once_each_and_recorded_as_one_by_one(
    client: TestClient, db: Database, tenant: Tenant, held_queue: None
) -> None:
    with fake_provider() as provider:
        ids = _backlog(client, db, tenant, provider, 12)
        # The first call is refused for good; the rest are accepted.
        provider.script.append((400, {"error": "recipient has blocked the business"}))
        outcomes = outbox.process_outbound_batch(db, ids)
    assert Counter(o.state for o in outcomes.values()) == Counter({"sent": 11, "failed": 1})
    stored = _statuses(db, ids)
    failed = [i for i, (status, *_rest) in stored.items() if status == DeliveryStatus.FAILED]
    assert len(failed) == 1
    assert stored[failed[0]][1] == "recipient has blocked the business"
    sent = [i for i in ids if i not in failed]
    assert all(stored[i][0] == DeliveryStatus.SENT and stored[i][2] == 1 for i in sent)
    assert sorted(stored[i][3] or "" for i in sent) == sorted(provider.ids.values())
    assert provider.calls == 12
    assert sorted(provider.deliveries) == sorted(f"tertulia-msg-{i}" for i in sent)
    assert set(provider.deliveries.values()) == {1}
    # One status event per move, as the single path emits.
    events = _status_events(db, ids)
    assert events == Counter({**{(i, "sent"): 1 for i in sent}, (failed[0], "failed"): 1})
    # Run again (a duplicated task): nothing is pending, nothing is sent.
    assert outbox.process_outbound_batch(db, ids) == {}
    assert provider.calls == 12


def test_a_transient_error_leaves_the_message_pending_with_a_backoff(
    client: TestClient, db: Database, tenant: Tenant, held_queue: None
) -> None:
    with fake_provider() as provider:
        ids = _backlog(client, db, tenant, provider, 3)
        provider.script.append((503, {"error": "try later"}))
        outcomes = outbox.process_outbound_batch(db, ids)
    retried = [i for i, o in outcomes.items() if o.state == "retry"]
    assert len(retried) == 1
    assert outcomes[retried[0]].reason == "try later"
    assert outcomes[retried[0]].retry_in is not None
    stored = _statuses(db, ids)
    assert stored[retried[0]][0] == DeliveryStatus.PENDING
    assert stored[retried[0]][2] == 1  # the attempt is counted
    with db.transaction(write=False) as session:
        channel = session.scalar(select(Channel).where(Channel.type == "fakehttp"))
        assert channel is not None
        # One provider failure is a blip: counted in the channel's run, no error shown or told.
        assert (channel.last_error, channel.provider_failures) == (None, 1)


def test_a_worker_killed_after_the_provider_calls_sends_each_exactly_once_after_restart(
    client: TestClient, db: Database, tenant: Tenant, held_queue: None
) -> None:
    def crash(_message_id: int) -> None:
        raise SystemError("worker killed after the provider accepted the batch")

    with fake_provider() as provider:
        ids = _backlog(client, db, tenant, provider, 8)
        outbox.AFTER_PROVIDER_CALL.append(crash)
        try:
            with pytest.raises(SystemError):
                outbox.process_outbound_batch(db, ids)
        finally:
            outbox.AFTER_PROVIDER_CALL.remove(crash)
        assert {s[0] for s in _statuses(db, ids).values()} == {DeliveryStatus.PENDING}
        # At start-up the consumer queues every pending message again, in batches.
        with db.transaction() as session:
            session.execute(update(Message).where(Message.id.in_(ids)).values(status_at=utcnow() - timedelta(hours=1)))
        queue.huey.immediate = True
        try:
            assert outbox.requeue_stuck_outbound.call_local() == 8
        finally:
            queue.huey.immediate = False
    stored = _statuses(db, ids)
    assert {s[0] for s in stored.values()} == {DeliveryStatus.SENT}
    assert provider.calls == 16
    assert dict(provider.deliveries) == {f"tertulia-msg-{i}": 1 for i in ids}


def _pace_channel(db: Database, per_second: int) -> None:
    with db.transaction() as session:
        channel = session.scalar(select(Channel).where(Channel.type == "fakehttp"))
        assert channel is not None
        channel.config = {**channel.config, PACE_SETTING: per_second}


def _spaced(counted: list[float], pace: Pace) -> bool:
    """Counted one every window/messages seconds: never more than the pace in any of its windows."""
    spacing = outbox.window(pace) / pace.messages
    return all(later - earlier >= spacing - 1e-6 for earlier, later in itertools.pairwise(counted))


def test_a_batch_spaces_a_paced_channel_s_sends_and_leaves_the_rest_for_a_later_batch(
    client: TestClient, db: Database, tenant: Tenant, held_queue: None
) -> None:
    pace = Pace(4, 1.0)
    with fake_provider() as provider:
        ids = _backlog(client, db, tenant, provider, 10)
        _pace_channel(db, pace.messages)
        outcomes = outbox.process_outbound_batch(db, ids)
    sent = sorted(i for i, o in outcomes.items() if o.state == "sent")
    later = {i: o for i, o in outcomes.items() if o.state == "later"}
    # Within the batch's horizon, oldest first (one the loaded machine could only send late is left
    # for the next batch too), each counted at its own moment and not sent before it.
    spacing = outbox.spacing_of(pace)
    within = sorted(ids)[: int((outbox.BATCH_HORIZON - outbox.BATCH_LEAD) / spacing) + 1]
    assert sent
    assert set(sent) <= set(within)
    counted = sorted(outcomes[i].counted_at or 0.0 for i in sent)
    assert _spaced(counted, pace)
    arrived = provider.arrived_at
    assert all(arrived[f"tertulia-msg-{i}"] >= (outcomes[i].counted_at or 0.0) - 0.005 for i in sent)
    assert provider.calls == len(sent)
    assert sorted(later) == sorted(set(ids) - set(sent))
    assert all(o.retry_in is not None and o.retry_in >= 0 for o in later.values())
    waiting = {i: s for i, s in _statuses(db, ids).items() if i in later}
    assert {s[0] for s in waiting.values()} == {DeliveryStatus.PENDING}
    assert {s[2] for s in waiting.values()} == {0}  # waiting for a later batch is not an attempt


def test_batches_one_after_another_count_every_send_within_the_pace(
    client: TestClient, db: Database, tenant: Tenant, held_queue: None
) -> None:
    pace = Pace(9, 1.0)  # a spacing of 1.05 / 9 s: the stored times are rounded
    with fake_provider() as provider:
        ids = _backlog(client, db, tenant, provider, 24)
        _pace_channel(db, pace.messages)
        remaining, counted = ids, {}
        while remaining:  # each batch at once after the last: the spacing comes from the pace's log
            outcomes = outbox.process_outbound_batch(db, remaining)
            assert {o.state for o in outcomes.values()} <= {"sent", "later"}
            counted |= {i: o.counted_at or 0.0 for i, o in outcomes.items() if o.state == "sent"}
            remaining = [i for i, o in outcomes.items() if o.state == "later"]
    assert provider.calls == 24
    assert set(provider.deliveries.values()) == {1}
    assert sorted(counted) == sorted(ids)
    assert _spaced(sorted(counted.values()), pace)
    arrived = provider.arrived_at
    assert all(arrived[f"tertulia-msg-{i}"] >= at - 0.005 for i, at in counted.items())
