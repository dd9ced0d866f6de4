"""The outbox under injected failures, against a fake provider that is a real local HTTP server."""

import threading
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage, StatusUpdate
from tertulia.conversations import outbox as tasks
from tertulia.conversations.inbound import do_receive
from tertulia.conversations.models import DeliveryStatus, Message
from tertulia.conversations.status import advance_message_status, do_apply_statuses
from tertulia.events.models import EventRecord
from tertulia.kit import queue
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.conversations.support import fake_channel_with_contact, make_webchat
from tests.fakes import fake_provider, sql_statements

pytestmark = pytest.mark.usefixtures("immediate_queue", "fakehttp_adapter")


def _send(client: TestClient, tenant: Tenant, channel_id: int, contact_id: int, text: str = "hola") -> int:
    response = client.post(
        f"/api/v1/contacts/id:{contact_id}/messages",
        headers=tenant.headers,
        json={"channel_id": channel_id, "message": {"type": "text", "text": text}},
    )
    assert response.status_code == 201, response.text
    message_id: int = response.json()["id"]
    return message_id


def _message(db: Database, message_id: int) -> Message:
    with db.transaction(write=False) as session:
        message = session.get(Message, message_id)
        assert message is not None
        return message


def test_permanent_failure_records_the_providers_reason(client: TestClient, db: Database, tenant: Tenant) -> None:
    with fake_provider() as provider:
        provider.script.append((400, {"error": "recipient has blocked the business"}))
        channel_id, contact_id = fake_channel_with_contact(db, tenant, provider.url)
        message_id = _send(client, tenant, channel_id, contact_id)
    message = _message(db, message_id)
    assert message.status == DeliveryStatus.FAILED
    assert message.status_reason == "recipient has blocked the business"
    assert message.attempts == 1
    assert provider.calls == 1


def test_worker_killed_between_provider_send_and_commit_delivers_exactly_once(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    def crash(_message_id: int) -> None:
        raise SystemError("worker killed after the provider accepted the message")

    with fake_provider() as provider:
        channel_id, contact_id = fake_channel_with_contact(db, tenant, provider.url)
        tasks.AFTER_PROVIDER_CALL.append(crash)
        try:
            message_id = _send(client, tenant, channel_id, contact_id)
        finally:
            tasks.AFTER_PROVIDER_CALL.remove(crash)
        assert _message(db, message_id).status == DeliveryStatus.PENDING
        # The lost task is found by the periodic sweep once it looks stuck, and retried.
        with db.transaction() as session:
            session.execute(
                update(Message).where(Message.id == message_id).values(status_at=utcnow() - timedelta(hours=1))
            )
        assert tasks.requeue_stuck_outbound.call_local() == 1
        # A duplicate task (e.g. a second sweeper) is a no-op once sent.
        assert tasks.process_outbound(db, message_id).state == "skipped"
    message = _message(db, message_id)
    assert message.status == DeliveryStatus.SENT
    assert message.provider_message_id == "prov-1"
    assert provider.calls == 2
    assert dict(provider.deliveries) == {f"tertulia-msg-{message_id}": 1}


def test_transient_errors_are_retried_by_a_real_consumer(client: TestClient, db: Database, tenant: Tenant) -> None:
    queue.huey.immediate = False
    queue.huey.flush()
    consumer = queue.start_consumer(2)
    try:
        with fake_provider() as provider:
            provider.script += [(503, {"error": "try later"}), (429, {"error": "throttled"})]
            channel_id, contact_id = fake_channel_with_contact(db, tenant, provider.url)
            message_id = _send(client, tenant, channel_id, contact_id)
            deadline = time.monotonic() + 60  # generous: the two backoffs run on a loaded 2-core machine
            while _message(db, message_id).status == DeliveryStatus.PENDING and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        consumer.stop(graceful=True)
        queue.huey.flush()
    message = _message(db, message_id)
    assert message.status == DeliveryStatus.SENT
    assert message.attempts == 3
    assert provider.calls == 3
    assert sum(provider.deliveries.values()) == 1


def test_concurrent_inbound_deliveries_of_one_provider_message_store_it_once(db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    barrier = threading.Barrier(4)
    results: list[bool] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            barrier.wait()
            with db.transaction() as session:
                fresh = session.get(Channel, channel.id)
                assert fresh is not None
                received = do_receive(
                    session,
                    fresh,
                    InboundMessage(sender_id=f"{channel.id}:v:abc", provider_message_id="wamid.1", text="hola"),
                )
                results.append(received.duplicate)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(results) == [False, True, True, True]
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1


ORDER = {"pending": 0, "sent": 1, "delivered": 2, "read": 3}


def _model(current: str, new: str) -> str:
    """Stated independently of STATUS_PREDECESSORS: forward only; failed only before delivery."""
    if current == "failed":
        return current
    if new == "failed":
        return new if current in ("pending", "sent") else current
    return new if ORDER[new] > ORDER[current] else current


@pytest.fixture
def outgoing(client: TestClient, db: Database, tenant: Tenant) -> int:
    with fake_provider() as provider:
        channel_id, contact_id = fake_channel_with_contact(db, tenant, provider.url)
        queue.huey.immediate = False  # keep it pending: the test drives the status itself
        try:
            return _send(client, tenant, channel_id, contact_id)
        finally:
            queue.huey.immediate = True


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([s.value for s in DeliveryStatus if s != DeliveryStatus.PENDING]), max_size=8))
def test_receipts_applied_together_move_a_message_as_one_by_one(
    db: Database, outgoing: int, sequence: list[str]
) -> None:
    """One callback batch of receipts ends where applying them one at a time would, with an event per
    move, in one UPDATE of the messages table."""
    with db.transaction() as session:
        session.execute(
            update(Message)
            .where(Message.id == outgoing)
            .values(status="pending", status_reason=None, provider_message_id="wamid.batch")
        )
    expected, moves = "pending", []
    for status in sequence:
        new_expected = _model(expected, status)
        if new_expected != expected:
            moves.append(new_expected)
        expected = new_expected
    with sql_statements(db) as executed, db.transaction() as session:
        message = session.get(Message, outgoing)
        assert message is not None
        channel = session.get(Channel, message.channel_id)
        assert channel is not None
        receipts = [(channel, StatusUpdate("wamid.batch", DeliveryStatus(s), f"reason {s}")) for s in sequence]
        moved = do_apply_statuses(session, receipts)
    updates = [statement for statement in executed if statement.starts("UPDATE messages")]
    with db.transaction(write=False) as session:  # events are written as the transaction commits
        newest_events = list(
            session.scalars(
                select(EventRecord.payload)
                .where(EventRecord.type == "message.status_changed")
                .order_by(EventRecord.id.desc())
                .limit(len(moves))
            )
        )
    assert moved == len(moves)
    assert len(updates) == (1 if moves else 0)
    stored = _message(db, outgoing)
    assert stored.status == DeliveryStatus(expected)
    if expected == "failed":
        assert stored.status_reason == "reason failed"
    assert [payload["status"] for payload in reversed(newest_events)] == moves


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([s.value for s in DeliveryStatus if s != DeliveryStatus.PENDING]), max_size=8))
def test_status_never_moves_backwards(db: Database, outgoing: int, sequence: list[str]) -> None:
    with db.transaction() as session:
        session.execute(update(Message).where(Message.id == outgoing).values(status="pending", status_reason=None))
    expected = "pending"
    for status in sequence:
        with db.transaction() as session:
            message = session.get(Message, outgoing)
            assert message is not None
            changed = advance_message_status(session, message, DeliveryStatus(status), f"reason {status}")
        new_expected = _model(expected, status)
        assert changed == (new_expected != expected)
        expected = new_expected
        assert _message(db, outgoing).status == DeliveryStatus(expected)
