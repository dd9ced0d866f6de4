"""Sending a broadcast end to end through the API, the outbox and a local fake provider."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from tertulia.broadcasts import service
from tertulia.conversations.models import Conversation, ConversationStatus
from tertulia.events.models import EventRecord
from tertulia.kit.db import Database
from tertulia.kit.errors import PermissionDenied
from tertulia.users.models import Role
from tests.broadcasts.support import broadcast_messages, customers_write, fake_channel
from tests.conftest import Tenant
from tests.conversations.support import stored_image
from tests.fakes import FakeHttpAdapter, fake_provider


def test_send_now_reaches_each_contact_once_without_opening_conversations(
    db: Database, client: TestClient, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        channel = fake_channel(db, tenant, provider.url)
        ids = customers_write(db, channel, [f"+5215500000{n:02d}" for n in range(5)], first_name="Ana")
        ids += customers_write(db, channel, ["+521550000099"])  # no first name: the fallback
        with db.transaction() as session:
            session.execute(update(Conversation).values(status=ConversationStatus.CLOSED))
        created = client.post(
            "/api/v1/broadcasts",
            headers=tenant.headers,
            json={
                "name": "Promo de noviembre",
                "labels": ["promo"],
                "audience": "all",
                "channel_id": channel.id,
                "content": {"default": {"text": 'Hola {{contact.first_name | "cliente"}}, 20% hoy.'}},
            },
        )
        assert created.status_code == 201, created.text
        broadcast_id = created.json()["id"]
        assert created.json()["status"] == "draft"
        dry = client.post(f"/api/v1/broadcasts/{broadcast_id}/dry-run", headers=tenant.headers)
        assert dry.status_code == 200, dry.text
        assert dry.json()["counts"]["recipients"] == 6
        assert dry.json()["refused"] is False
        preview = client.post(f"/api/v1/broadcasts/{broadcast_id}/preview", headers=tenant.headers)
        assert preview.status_code == 200, preview.text
        assert [p["text"] for p in preview.json()] == ["Hola Ana, 20% hoy."] * 3
        sent = client.post(f"/api/v1/broadcasts/{broadcast_id}/schedule", headers=tenant.headers, json={})
        assert sent.status_code == 200, sent.text
        got = client.get(f"/api/v1/broadcasts/{broadcast_id}", headers=tenant.headers).json()
        assert got["status"] == "completed", got
        assert got["counts"]["recipients"] == 6
        assert got["results"]["sent"] == 6
        assert sorted(provider.deliveries.values()) == [1] * 6
    messages = broadcast_messages(db, broadcast_id)
    assert sorted(m.contact_id for m in messages) == sorted(ids)
    assert {m.text for m in messages} == {"Hola Ana, 20% hoy.", "Hola cliente, 20% hoy."}
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).where(Conversation.status == ConversationStatus.OPEN)) == 0
        kinds = list(
            session.scalars(
                select(EventRecord.type).where(EventRecord.type.like("broadcast.%")).order_by(EventRecord.id)
            )
        )
        opened = session.scalar(select(func.count()).where(EventRecord.type == "conversation.opened"))
    assert kinds == ["broadcast.started", "broadcast.completed"]
    assert opened == len(ids)  # only the customers' own first messages opened one
    assert client.get("/api/v1/broadcasts?label=prom", headers=tenant.headers).json()["items"] == []
    listed = client.get("/api/v1/broadcasts?label=promo", headers=tenant.headers).json()["items"]
    assert [(b["id"], b["recipients"], b["results"]["sent"]) for b in listed] == [(broadcast_id, 6, 6)]
    when = got["scheduled_at"]
    calendar = client.get(
        "/api/v1/broadcasts",
        headers=tenant.headers,
        params={"scheduled_from": when, "scheduled_to": "2100-01-01T00:00:00Z"},
    ).json()["items"]
    assert [b["id"] for b in calendar] == [broadcast_id]
    naive = client.get("/api/v1/broadcasts", headers=tenant.headers, params={"scheduled_from": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    rows = client.get(f"/api/v1/broadcasts/{broadcast_id}/recipients?status=sent", headers=tenant.headers).json()
    assert len(rows["items"]) == 6
    csv_text = client.get(f"/api/v1/broadcasts/{broadcast_id}/recipients.csv", headers=tenant.headers).text
    assert csv_text.splitlines()[0] == "contact_id,name,phone,email,channel_id,status,reason,time"
    assert len(csv_text.splitlines()) == 7


def test_agents_cannot_touch_broadcasts(client: TestClient, tenant: Tenant, db: Database) -> None:
    with db.transaction() as session, pytest.raises(PermissionDenied):
        service.do_create_broadcast(session, tenant.actor(Role.AGENT), service.DraftFields(name="x"))
    missing = client.get("/api/v1/broadcasts/999", headers=tenant.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"]


def test_a_file_goes_with_its_caption_and_reply_choices_only_where_the_channel_has_them(
    db: Database, client: TestClient, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        channel = fake_channel(db, tenant, provider.url)
        customers_write(db, channel, ["+5215500000001"])
        file_id = stored_image(db, tenant.workspace_id)
        body = {
            "name": "Con foto",
            "audience": "all",
            "channel_id": channel.id,
            "content": {"default": {"text": "Mira la promo", "file_ids": [file_id]}},
        }
        created = client.post("/api/v1/broadcasts", headers=tenant.headers, json=body).json()
        base = f"/api/v1/broadcasts/{created['id']}"
        preview = client.post(f"{base}/preview", headers=tenant.headers).json()
        assert (preview[0]["type"], preview[0]["text"]) == ("image", "Mira la promo")
        assert [a["file_id"] for a in preview[0]["attachments"]] == [file_id]
        choices = {"default": {"text": "¿Vienes?", "quick_reply": {"buttons": [{"id": "si", "title": "Sí"}]}}}
        assert client.patch(base, headers=tenant.headers, json={"content": choices}).status_code == 200
        refused = client.post(f"{base}/schedule", headers=tenant.headers, json={})
        assert refused.status_code == 422  # this provider has no reply choices
        assert refused.json()["error"]["details"]
