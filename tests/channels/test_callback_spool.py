"""The callback spool: where verified provider callbacks wait for their task.

On SQLite the spool is a file of its own, so an acknowledgement never waits for the database's write
lock; callbacks are claimed for a lease, written, then removed, so a task that dies at any point
leaves them to be claimed again, and writing one twice stores its message once.
"""

import hashlib
import hmac
import json
import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, text, update
from structlog.testing import capture_logs

from tertulia.channels.models import Channel
from tertulia.channels.service import do_create_channel
from tertulia.conversations.ingress.callbacks import (
    LEASE,
    MAX_ATTEMPTS,
    CallbackSpool,
    _prepare,
    _write,
    callback_spool,
    process_callbacks,
    write_batch,
)
from tertulia.conversations.models import InboundCallback, Message
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.fakes import FAKE_SECRET, FakeHttpAdapter, callbacks_written, fakehttp_adapter

__all__ = ["fakehttp_adapter"]


def _channel(db: Database, tenant: Tenant) -> Channel:
    with db.transaction() as session:
        return do_create_channel(session, tenant.actor(), "fakehttp", "Proveedor")


def _signed(payload: dict[str, object]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"X-Signature": hmac.new(FAKE_SECRET.encode(), body, hashlib.sha256).hexdigest()}


def _stored(channel: Channel, body: bytes) -> dict[str, object]:
    """A spool row for `body` as the callback writer stores it."""
    return {
        "workspace_id": channel.workspace_id,
        "channel_id": channel.id,
        "method": "POST",
        "url": f"http://testserver/webhooks/{channel.key}",
        "headers": {},
        "query": {},
        "body": body,
        "received_at": utcnow(),
        "attempts": 0,
        "lease_until": None,
    }


def _messages(db: Database, provider_id: str) -> int:
    with db.transaction(write=False) as session:
        return int(
            session.scalar(select(func.count()).select_from(Message).where(Message.provider_message_id == provider_id))
            or 0
        )


def test_a_callback_is_acknowledged_while_the_database_is_write_locked(
    client: TestClient, db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    channel = _channel(db, tenant)
    body, headers = _signed({"messages": [{"from": "5215500000001", "id": "wamid.LOCK", "text": "hola"}]})
    answered = threading.Event()
    statuses: list[int] = []

    def post() -> None:
        statuses.append(client.post(f"/webhooks/{channel.key}", content=body, headers=headers).status_code)
        answered.set()

    # A long write transaction of the database (an import, a big merge) is open the whole time.
    with db.transaction() as session:
        session.execute(update(Channel).where(Channel.id == channel.id).values(name="Proveedor 2"))
        thread = threading.Thread(target=post)
        thread.start()
        acknowledged_under_the_lock = answered.wait(timeout=20)
    thread.join(timeout=30)
    assert acknowledged_under_the_lock
    assert statuses == [200]
    callbacks_written(db)
    assert _messages(db, "wamid.LOCK") == 1
    assert callback_spool(db).waiting() == 0


def test_a_callback_whose_task_died_after_writing_is_written_again_once(
    db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    channel = _channel(db, tenant)
    body, _ = _signed({"messages": [{"from": "5215500000002", "id": "wamid.TWICE", "text": "¿sigue ahí?"}]})
    spool = callback_spool(db)
    spool.add([_stored(channel, body)])
    # The task claims it, writes the message, and dies before removing it from the spool.
    prepared, _ = _prepare(db, spool.claim(limit=write_batch(db)))
    with db.transaction() as session:
        _write(session, prepared)
    assert _messages(db, "wamid.TWICE") == 1
    # Its lease still holds: nobody else takes it yet.
    assert process_callbacks(db) == 0
    assert spool.waiting() == 1
    # The lease runs out; the sweep claims it again, writes it (a no-op) and removes it.
    with spool.database.transaction() as session:
        session.execute(update(spool.table).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert process_callbacks(db) == 1
    assert _messages(db, "wamid.TWICE") == 1
    assert spool.waiting() == 0


def test_a_callback_that_keeps_failing_is_given_up_after_max_attempts(
    db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    channel = _channel(db, tenant)
    body, _ = _signed({"messages": [{"from": "5215500000003", "id": "wamid.LAST", "text": "x"}]})
    spool = callback_spool(db)
    (callback_id,) = spool.add([_stored(channel, body)])
    expired = utcnow() - LEASE
    with spool.database.transaction() as session:
        session.execute(update(spool.table).values(attempts=MAX_ATTEMPTS, lease_until=expired))
    with capture_logs() as logs:
        assert process_callbacks(db) == 0
    assert spool.waiting() == 0
    assert _messages(db, "wamid.LAST") == 0
    assert [entry["callback_ids"] for entry in logs if entry["event"] == "callbacks_given_up"] == [[callback_id]]


def test_callbacks_left_in_the_database_table_move_to_the_spool_file(
    db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    if db.dialect != "sqlite":  # the spool is the database's own table: nothing to move
        spool = CallbackSpool(db)
        assert spool.database is db
        assert spool.table is InboundCallback.__table__
        return
    channel = _channel(db, tenant)
    body, _ = _signed({"messages": [{"from": "5215500000004", "id": "wamid.OLD", "text": "de antes"}]})
    with db.transaction() as session:  # stored by a version that kept callbacks in the database
        session.execute(insert(InboundCallback).values(**_stored(channel, body)))
    spool = CallbackSpool(db)  # as a process starting on the upgraded version opens it
    try:
        assert spool.waiting() == 1
        with db.transaction(write=False) as session:
            assert session.scalar(select(func.count()).select_from(InboundCallback)) == 0
        prepared, _ = _prepare(db, spool.claim(limit=write_batch(db)))
        with db.transaction() as session:
            _write(session, prepared)
        assert _messages(db, "wamid.OLD") == 1
    finally:
        with spool.database.transaction() as session:
            session.execute(spool.table.delete())
        spool.database.dispose()


def test_an_unknown_channel_key_is_not_found_and_stores_nothing(client: TestClient, db: Database) -> None:
    body, headers = _signed({"messages": []})
    for _ in range(3):  # the answer for an unknown key is remembered briefly, not trusted forever
        response = client.post("/webhooks/no-such-channel", content=body, headers=headers)
        assert response.status_code == 404
        assert isinstance(response.json()["error"]["code"], str)
    assert callback_spool(db).waiting() == 0


def test_a_callback_after_the_database_dropped_the_writers_connection_is_stored_once(
    client: TestClient, db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    """The callback writer holds its connection across batches; one the server has closed since (a
    restart, an idle timeout) is replaced and the batch stored on the new one, answered 200 once."""
    if db.dialect != "postgresql":
        pytest.skip("an SQLite file has no server to close a connection")
    channel = _channel(db, tenant)
    first, headers = _signed({"messages": [{"from": "5215500000003", "id": "wamid.HELD1", "text": "hola"}]})
    assert client.post(f"/webhooks/{channel.key}", content=first, headers=headers).status_code == 200
    callbacks_written(db)
    with db.transaction() as session:  # what a restart does to every connection of the database
        session.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    second, headers = _signed({"messages": [{"from": "5215500000003", "id": "wamid.HELD2", "text": "¿sigue?"}]})
    assert client.post(f"/webhooks/{channel.key}", content=second, headers=headers).status_code == 200
    callbacks_written(db)
    assert _messages(db, "wamid.HELD1") == 1
    assert _messages(db, "wamid.HELD2") == 1
    assert callback_spool(db).waiting() == 0


def test_a_posted_callback_keeps_the_apps_size_limit_and_security_headers(
    client: TestClient, db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    """Posted callbacks are answered before the routing (CallbackFrontDoor): still inside the body
    limit, which refuses a body too big before it is read, and inside the security headers."""
    channel = _channel(db, tenant)
    body, headers = _signed({"messages": [], "padding": "x" * (2 * 1024 * 1024)})
    for path in (f"/webhooks/{channel.key}", f"/channels/{channel.key}/callback"):
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"]
    assert callback_spool(db).waiting() == 0
    body, headers = _signed({"messages": []})
    response = client.post(f"/webhooks/{channel.key}", content=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
