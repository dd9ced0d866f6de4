"""Scheduling in the workspace's time zone across a clock change, cancel, pause/resume/stop, a worker
dying mid-send, the pace, replies and unsubscribes, resend to failed, clone and delete."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tertulia.broadcasts import sender, service, tasks
from tertulia.broadcasts.models import BroadcastOptOut
from tertulia.conversations import outbox
from tertulia.events.models import EventRecord
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tests.broadcasts.support import broadcast_messages, customers_write, draft, fake_channel, get, recipients
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, FakeProvider, fake_provider
from tests.workflows.support import feed, publish, runs


@contextmanager
def at(moment: datetime) -> Iterator[None]:
    """The process's clock at `moment` for the block."""
    with travel(moment - utcnow()):
        yield


def ready(db: Database, tenant: Tenant, provider: FakeProvider, n: int, **config: object) -> tuple[int, list[int]]:
    channel = fake_channel(db, tenant, provider.url, **config)
    ids = customers_write(db, channel, [f"+52155{i:08d}" for i in range(n)])
    broadcast_id = draft(
        db, tenant, name="Aviso", audience="all", channel_id=channel.id, content={"default": {"text": "Hola"}}
    )
    return broadcast_id, ids


def send_now(client: TestClient, tenant: Tenant, base: str) -> dict[str, Any]:
    """Send now; the broadcast as it is once the request's transaction committed (and, with the
    inline queue, its start and first tick ran)."""
    answer = client.post(f"{base}/schedule", headers=tenant.headers, json={})
    assert answer.status_code == 200, answer.text
    got: dict[str, Any] = client.get(base, headers=tenant.headers).json()
    return got


def test_a_schedule_fires_at_its_instant_across_a_clock_change(
    db: Database, client: TestClient, make_tenant: Callable[..., Tenant], fakehttp_adapter: FakeHttpAdapter
) -> None:
    tenant = make_tenant(timezone="Europe/Madrid")
    with fake_provider() as provider:
        broadcast_id, ids = ready(db, tenant, provider, 2)
        url = f"/api/v1/broadcasts/{broadcast_id}/schedule"
        # 2027-03-28 02:00 in Madrid the clocks jump to 03:00: 02:30 never happens.
        skipped = client.post(url, headers=tenant.headers, json={"scheduled_at": "2027-03-28T02:30:00"})
        assert skipped.status_code == 422
        assert "scheduled_at" in skipped.json()["error"]["details"]
        # 2027-10-31 03:00 they go back to 02:00: 02:30 happens twice; the first (CEST, +02:00) is taken.
        twice = client.post(url, headers=tenant.headers, json={"scheduled_at": "2027-10-31T02:30:00"})
        assert twice.status_code == 200, twice.text
        assert twice.json()["scheduled_at"].startswith("2027-10-31T00:30:00")
        assert (
            client.post(f"/api/v1/broadcasts/{broadcast_id}/cancel", headers=tenant.headers).json()["status"] == "draft"
        )
        # Just after the spring change: 03:30 CEST is 01:30 UTC (it would be 02:30 UTC a day earlier).
        scheduled = client.post(url, headers=tenant.headers, json={"scheduled_at": "2027-03-28T03:30:00"})
        assert scheduled.status_code == 200, scheduled.text
        when = datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
        assert datetime.fromisoformat(scheduled.json()["scheduled_at"]) == when
        with at(when - timedelta(seconds=30)):
            tasks.sweep()
            assert get(db, broadcast_id).status == "scheduled"
        with at(when + timedelta(seconds=1)):
            tasks.sweep()
            assert get(db, broadcast_id).status == "completed"
        assert sorted(m.contact_id for m in broadcast_messages(db, broadcast_id)) == sorted(ids)


def test_cancel_delete_clone(
    db: Database, client: TestClient, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        broadcast_id, _ids = ready(db, tenant, provider, 1)
        base = f"/api/v1/broadcasts/{broadcast_id}"
        later = (utcnow() + timedelta(days=2)).isoformat()
        assert client.post(f"{base}/schedule", headers=tenant.headers, json={"scheduled_at": later}).status_code == 200
        assert client.patch(base, headers=tenant.headers, json={"name": "Otro"}).status_code == 409
        assert client.delete(base, headers=tenant.headers).status_code == 409
        assert client.post(f"{base}/pause", headers=tenant.headers).json()["error"]["code"] == "broadcast_status"
        assert client.post(f"{base}/cancel", headers=tenant.headers).json()["status"] == "draft"
        clone = client.post(f"{base}/clone", headers=tenant.headers)
        assert clone.status_code == 201
        assert clone.json()["status"] == "draft"
        assert clone.json()["content"] == {"default": {"text": "Hola"}}
        assert clone.json()["scheduled_at"] is not None
        assert client.delete(base, headers=tenant.headers).status_code == 204
        assert client.get(base, headers=tenant.headers).status_code == 404
        listed = client.get("/api/v1/broadcasts?status=draft", headers=tenant.headers).json()
        assert [b["id"] for b in listed["items"]] == [clone.json()["id"]]


def test_pause_resume_and_stop(
    db: Database, client: TestClient, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        # 5 a second: 4 a tick for broadcasts (BROADCAST_SHARE), the rest for agents.
        broadcast_id, _ids = ready(db, tenant, provider, 10, messages_per_second=5)
        base = f"/api/v1/broadcasts/{broadcast_id}"
        assert send_now(client, tenant, base)["status"] == "sending"
        assert len(provider.deliveries) == 4
        assert client.post(f"{base}/pause", headers=tenant.headers).json()["status"] == "paused"
        assert sender.pump(db, broadcast_id).state == "stopped"
        assert len(provider.deliveries) == 4
        with travel(timedelta(seconds=1.2)):
            assert client.post(f"{base}/resume", headers=tenant.headers).json()["status"] == "sending"
            assert len(provider.deliveries) == 8
        stopped = client.post(f"{base}/stop", headers=tenant.headers).json()
        assert stopped["status"] == "cancelled"
        assert stopped["results"]["sent"] == 8
        assert stopped["counts"]["skipped"] == 2
        assert sender.pump(db, broadcast_id).state == "stopped"
    assert len(provider.deliveries) == 8


class Killed(BaseException):
    """A worker dying: not an Exception, so nothing on the way catches it."""


def test_a_worker_killed_mid_send_and_restarted_sends_each_recipient_once(
    db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        broadcast_id, ids = ready(db, tenant, provider, 12)
        with db.transaction() as session:
            item = service.access_broadcast(session, tenant.actor(), broadcast_id)
            service.do_schedule(session, tenant.actor(), item, utcnow() + timedelta(minutes=5))
        with at(utcnow() + timedelta(minutes=5, seconds=1)):
            assert sender.start(db, broadcast_id) == "started"

            def die_before_commit(_broadcast_id: int) -> None:
                raise Killed

            sender.AFTER_BATCH_WRITTEN.append(die_before_commit)
            try:
                with pytest.raises(Killed):
                    sender.pump(db, broadcast_id)
            finally:
                sender.AFTER_BATCH_WRITTEN.clear()
            assert broadcast_messages(db, broadcast_id) == []  # the batch rolled back: nobody skipped
            assert {r.state for r in recipients(db, broadcast_id)} == {"waiting"}
            calls = iter(range(100))

            def die_after_the_provider(_message_id: int) -> None:
                if next(calls) == 3:  # the provider has the fourth message; we never recorded it
                    raise Killed

            outbox.AFTER_PROVIDER_CALL.append(die_after_the_provider)
            try:
                with pytest.raises(Killed):
                    sender.pump(db, broadcast_id)
            finally:
                outbox.AFTER_PROVIDER_CALL.clear()
            # A new worker starts: pending messages queued again, sending broadcasts pumped.
            with travel(timedelta(seconds=2)):
                outbox.requeue_pending_outbound()
                tasks.sweep()
                for _ in range(5):
                    if get(db, broadcast_id).status == "completed":
                        break
                    sender.pump(db, broadcast_id)
    assert get(db, broadcast_id).status == "completed"
    messages = broadcast_messages(db, broadcast_id)
    assert sorted(m.contact_id for m in messages) == sorted(ids)  # one message each
    assert {m.status for m in messages} == {"sent"}
    assert sorted(provider.deliveries) == sorted(f"tertulia-msg-{m.id}" for m in messages)
    assert set(provider.deliveries.values()) == {1}


def test_the_pace_holds_in_every_second_and_two_broadcasts_share_it(
    db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        channel = fake_channel(db, tenant, provider.url, messages_per_second=5)
        customers_write(db, channel, [f"+52155{i:08d}" for i in range(12)])
        first = draft(db, tenant, name="A", audience="all", channel_id=channel.id, content={"default": {"text": "A"}})
        second = draft(db, tenant, name="B", audience="all", channel_id=channel.id, content={"default": {"text": "B"}})
        with db.transaction() as session:
            for broadcast_id in (first, second):
                item = service.access_broadcast(session, tenant.actor(), broadcast_id)
                service.do_schedule(session, tenant.actor(), item, utcnow() + timedelta(minutes=1))
        with at(utcnow() + timedelta(minutes=1, seconds=1)):
            assert sender.start(db, first) == "started"
            assert sender.start(db, second) == "started"
            per_tick: list[tuple[int, int]] = []
            deadline = time.monotonic() + 60
            while {get(db, first).status, get(db, second).status} != {"completed"} and time.monotonic() < deadline:
                ticks = (sender.pump(db, first).written, sender.pump(db, second).written)
                per_tick.append(ticks)
                time.sleep(1.1)
    assert {get(db, first).status, get(db, second).status} == {"completed"}
    times = sorted(t for t, _key in provider.arrivals)
    assert len(times) == 24
    for index, start in enumerate(times):
        assert sum(1 for t in times[index:] if t - start < 1.0) <= 5, per_tick
    # While both were sending, each took half the broadcasts' share of a tick.
    assert per_tick[0] == (2, 2), per_tick


def test_a_reply_within_the_window_counts_once_and_a_keyword_unsubscribes(
    db: Database, client: TestClient, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        channel = fake_channel(db, tenant, provider.url)
        other = fake_channel(db, tenant, provider.url)
        ana, ben, cris = customers_write(db, channel, ["+5215500000001", "+5215500000002", "+5215500000003"])
        on_reply = publish(
            db,
            tenant,
            {
                "trigger": {"type": "broadcast_replied", "config": {}},
                "steps": [{"id": "mark", "type": "add_tags", "config": {"tags": ["respondio"]}}],
            },
            name="Al responder",
        )
        broadcast_id = draft(
            db,
            tenant,
            name="Encuesta",
            audience="all",
            channel_id=channel.id,
            content={"default": {"text": "¿Vienes?"}},
            reply_workflow_id=on_reply,
        )
        base = f"/api/v1/broadcasts/{broadcast_id}"
        assert send_now(client, tenant, base)["status"] == "completed"
        customers_write(db, channel, ["+5215500000001"], text="sí")
        customers_write(db, channel, ["+5215500000001"], text="sí, los dos")  # the same recipient again
        customers_write(db, other, ["+5215500000002"], text="hola")  # another channel: not a reply
        with travel(timedelta(days=3, hours=1)):  # past the default 3-day window
            customers_write(db, channel, ["+5215500000003"], text="tarde")
        got = client.get(base, headers=tenant.headers).json()
        assert got["results"]["replied"] == 1
        replied = client.get(f"{base}/recipients?replied=true", headers=tenant.headers).json()["items"]
        assert [r["contact_id"] for r in replied] == [ana]
        with db.transaction(write=False) as session:
            events = list(session.scalars(select(EventRecord).where(EventRecord.type == "broadcast.replied")))
        assert [(e.payload["broadcast_id"], e.payload["contact_id"], e.payload["workflow_id"]) for e in events] == [
            (broadcast_id, ana, on_reply)
        ]
        # The named workflow runs once, for the one contact who replied in time.
        feed(db)
        assert [(run.contact_id, run.status) for run in runs(db, on_reply)] == [(ana, "finished")]
        # BAJA (any case, any accent) opts the contact out of broadcasts; they are excluded after.
        customers_write(db, channel, ["+5215500000002"], text=" Baja ")
        with db.transaction(write=False) as session:
            assert session.scalar(select(func.count()).select_from(BroadcastOptOut)) == 1
        clone = client.post(f"{base}/clone", headers=tenant.headers).json()
        dry = client.post(f"/api/v1/broadcasts/{clone['id']}/dry-run", headers=tenant.headers).json()
        assert dry["counts"]["excluded_by_reason"] == {"opted_out": 1}
        assert client.put(
            "/api/v1/broadcast-settings", headers=tenant.headers, json={"unsubscribe_keywords": ["SALIR"]}
        ).json() == {"unsubscribe_keywords": ["SALIR"]}
        customers_write(db, channel, ["+5215500000003"], text="baja")  # no longer a keyword
        with db.transaction(write=False) as session:
            assert session.scalar(select(func.count()).select_from(BroadcastOptOut)) == 1
    del ben, cris


def test_resend_to_failed_is_a_new_draft_for_the_failed_ones(
    db: Database, client: TestClient, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        broadcast_id, ids = ready(db, tenant, provider, 3)
        provider.script.append((400, {"error": "recipient unknown"}))
        base = f"/api/v1/broadcasts/{broadcast_id}"
        assert send_now(client, tenant, base)["status"] == "completed"
        got = client.get(base, headers=tenant.headers).json()
        assert (got["results"]["sent"], got["results"]["failed"]) == (2, 1)
        failed = client.get(f"{base}/recipients?status=failed", headers=tenant.headers).json()["items"]
        assert [r["reason"] for r in failed] == ["recipient unknown"]
        resend = client.post(f"{base}/resend-failed", headers=tenant.headers)
        assert resend.status_code == 201, resend.text
        assert resend.json()["audience"] == "resend"
        again = resend.json()["id"]
        assert send_now(client, tenant, f"/api/v1/broadcasts/{again}")["status"] == "completed"
        assert [m.contact_id for m in broadcast_messages(db, again)] == [failed[0]["contact_id"]]
    assert failed[0]["contact_id"] in ids
