"""The inbox end to end through HTTP: web-chat visitor -> conversation -> agent actions."""

import hashlib
import hmac
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from tertulia.app import create_app
from tertulia.channels.models import Channel
from tertulia.contacts.models import Contact, ContactActivity
from tertulia.conversations import files
from tertulia.conversations.models import (
    Conversation,
    ConversationStatus,
    DeliveryStatus,
    Mention,
    Message,
    StoredFile,
)
from tertulia.kit import storage
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.users.models import Role
from tests.conftest import Tenant
from tests.conversations.support import SHOP, make_webchat, new_visitor, sign_in

pytestmark = pytest.mark.usefixtures("immediate_queue")


def _conversations(client: TestClient, tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/api/v1/conversations", headers=tenant.headers, params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_visitor_message_opens_one_conversation_and_is_deduplicated(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel, name="Ana Pérez", email="ana@example.com")
    first = visitor.say("Hola, ¿tienen envíos?", client_msg_id="client-0001")
    again = visitor.say("Hola, ¿tienen envíos?", client_msg_id="client-0001")
    assert again["id"] == first["id"]
    assert again["duplicate"] is True
    visitor.say("¿A Monterrey?")
    [conversation] = _conversations(client, tenant)
    assert conversation["contact"]["name"] == "Ana Pérez"
    assert conversation["last_message_preview"] == "¿A Monterrey?"
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 2
        contact = session.scalar(select(Contact))
        assert contact is not None
        assert contact.email == "ana@example.com"
        assert contact.last_incoming_at is not None
    assert [m["text"] for m in visitor.history()] == ["Hola, ¿tienen envíos?", "¿A Monterrey?"]


def test_database_refuses_a_second_open_conversation(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    new_visitor(client, channel).say("hola")
    with db.transaction(write=False) as session:
        existing = session.scalar(select(Conversation))
        assert existing is not None
        contact_id = existing.contact_id

    def second_open() -> None:
        with db.transaction() as session:
            session.add(
                Conversation(workspace_id=tenant.workspace_id, contact_id=contact_id, status=ConversationStatus.OPEN)
            )

    with pytest.raises(IntegrityError):
        second_open()


def test_agent_flow_assign_reply_with_snippet_close_reopen(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel, name="Ana Pérez")
    visitor.say("Necesito ayuda")
    [conversation] = _conversations(client, tenant)
    cid = conversation["id"]
    agent = sign_in(db, tenant, Role.AGENT)
    # Unassigned: the agent sees it, to pick it up; once a colleague has it, it is gone for them.
    assert client.get(f"/api/v1/conversations/{cid}", headers=agent.headers).status_code == 200
    taken = client.post(
        f"/api/v1/conversations/{cid}/assign", headers=tenant.headers, json={"user_id": tenant.manager_id}
    )
    assert taken.status_code == 200, taken.text
    assert client.get(f"/api/v1/conversations/{cid}", headers=agent.headers).status_code == 404
    assigned = client.post(
        f"/api/v1/conversations/{cid}/assign", headers=tenant.headers, json={"user_id": agent.user_id}
    )
    assert assigned.status_code == 200, assigned.text
    assert client.get(f"/api/v1/conversations/{cid}", headers=agent.headers).status_code == 200
    mine = client.get("/api/v1/conversations", headers=agent.headers, params={"view": "mine"}).json()["items"]
    assert [c["id"] for c in mine] == [cid]
    assert mine[0]["unread"] == 1

    snippet = client.post(
        "/api/v1/snippets",
        headers=tenant.headers,
        json={"shortcut": "/hola", "text": 'Hola {{contact.first_name | "cliente"}}, soy {{user.first_name}}.'},
    )
    assert snippet.status_code == 201, snippet.text
    rendered = client.post(
        f"/api/v1/snippets/{snippet.json()['id']}/render", headers=agent.headers, json={"conversation_id": cid}
    )
    assert rendered.status_code == 200, rendered.text
    assert rendered.json()["text"] == "Hola Ana, soy ."
    sent = client.post(
        f"/api/v1/conversations/{cid}/messages",
        headers=agent.headers,
        json={"text": "Hola {{contact.first_name}} de {{workspace.name}}"},
    )
    assert sent.status_code == 201, sent.text
    assert sent.json()["text"] == f"Hola Ana de {tenant.name}"
    # Without the CSRF header a cookie-authenticated write is refused.
    no_csrf = client.post(
        f"/api/v1/conversations/{cid}/messages",
        headers={"Cookie": agent.headers["Cookie"]},
        json={"text": "hola"},
    )
    assert no_csrf.status_code == 403
    bad_var = client.post(
        f"/api/v1/conversations/{cid}/messages", headers=agent.headers, json={"text": "Hola {{contact.nickname}}"}
    )
    assert bad_var.status_code == 422
    assert "message.text" in bad_var.json()["error"]["details"]
    assert visitor.history()[-1]["text"] == f"Hola Ana de {tenant.name}"

    manager = sign_in(db, tenant, Role.MANAGER)
    category = client.post("/api/v1/closing-categories", headers=manager.headers, json={"name": "Resuelto"})
    assert category.status_code == 201, category.text
    needs_category = client.post(f"/api/v1/conversations/{cid}/close", headers=agent.headers, json={})
    assert needs_category.status_code == 422
    closed = client.post(
        f"/api/v1/conversations/{cid}/close",
        headers=agent.headers,
        json={"category_id": category.json()["id"], "summary": "Le expliqué los envíos"},
    )
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"
    # A new message after closing opens a new conversation.
    visitor.say("Otra pregunta")
    open_now = _conversations(client, tenant)
    assert len(open_now) == 1
    assert open_now[0]["id"] != cid
    assert client.post(f"/api/v1/conversations/{cid}/reopen", headers=tenant.headers).status_code == 409

    with db.transaction(write=False) as session:
        system = list(
            session.scalars(
                select(Message.text)
                .where(Message.conversation_id == cid, Message.direction == "system")
                .order_by(Message.id)
            )
        )
        assert len(system) == 3
        assert system[0].startswith("Assigned to manager")
        assert system[1].startswith("Assigned to agent")
        assert system[2] == "Closed: Resuelto"
        actions = set(session.scalars(select(ContactActivity.action)))
        assert {"conversation_opened", "conversation_assigned", "conversation_closed"} <= actions
        outgoing = session.scalar(select(Message).where(Message.direction == "outgoing"))
        assert outgoing is not None
        assert outgoing.status == DeliveryStatus.SENT
        assert outgoing.provider_message_id == f"webchat:{outgoing.id}"


def test_comments_mention_teammates_and_stay_internal(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)
    visitor.say("hola")
    [conversation] = _conversations(client, tenant)
    response = client.post(
        f"/api/v1/conversations/{conversation['id']}/comments",
        headers=tenant.headers,
        json={"text": "@Mara ¿lo ves tú?", "mentions": [tenant.manager_id]},
    )
    assert response.status_code == 201, response.text
    assert response.json()["direction"] == "comment"
    bad = client.post(
        f"/api/v1/conversations/{conversation['id']}/comments",
        headers=tenant.headers,
        json={"text": "x", "mentions": [999_999]},
    )
    assert bad.status_code == 422
    assert "mentions[0]" in bad.json()["error"]["details"]
    with db.transaction(write=False) as session:
        assert list(session.scalars(select(Mention.user_id))) == [tenant.manager_id]
    assert [m["direction"] for m in visitor.history()] == ["incoming"]


def test_rest_api_send_and_list_contact_messages(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    new_visitor(client, channel, email="luz@example.com").say("hola")
    sent = client.post(
        "/api/v1/contacts/email:luz@example.com/messages",
        headers=tenant.headers,
        json={"channel_id": channel.id, "message": {"type": "text", "text": "¡Hola!"}},
    )
    assert sent.status_code == 201, sent.text
    assert set(sent.json()) == {"id", "status", "conversation_id", "channel_id"}
    listed = client.get("/api/v1/contacts/email:luz@example.com/messages", headers=tenant.headers)
    assert [(m["direction"], m["text"], m["status"]) for m in listed.json()["items"]] == [
        ("incoming", "hola", None),
        ("outgoing", "¡Hola!", "sent"),
    ]
    unreachable = client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": "Sin canal"}).json()
    refused = client.post(
        f"/api/v1/contacts/id:{unreachable['id']}/messages",
        headers=tenant.headers,
        json={"channel_id": channel.id, "message": {"type": "text", "text": "hola"}},
    )
    assert refused.status_code == 422
    assert "channel_id" in refused.json()["error"]["details"]


def test_conversation_list_and_history_pages(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    visitors = [new_visitor(client, channel) for _ in range(5)]
    for index, visitor in enumerate(visitors):
        visitor.say(f"hola {index}")
    visitors[1].say("last")
    seen: list[str | None] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/conversations", headers=tenant.headers, params=params).json()
        seen += [c["last_message_preview"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["last", "hola 4", "hola 3", "hola 2", "hola 0"]
    [first] = [c for c in _conversations(client, tenant) if c["last_message_preview"] == "last"]
    for index in range(3):
        visitors[1].say(f"more {index}")
    page = client.get(f"/api/v1/conversations/{first['id']}/messages", headers=tenant.headers, params={"limit": 3})
    body = page.json()
    assert [m["text"] for m in body["items"]] == ["more 0", "more 1", "more 2"]
    older = client.get(
        f"/api/v1/conversations/{first['id']}/messages",
        headers=tenant.headers,
        params={"limit": 3, "before_id": body["next_before_id"]},
    ).json()
    assert [m["text"] for m in older["items"]] == ["hola 1", "last"]
    assert older["next_before_id"] is None


def test_widget_cors_and_identity_verification(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant, identity_verification=True)
    other_site = client.get(f"/widget/{channel.key}/config", headers={"Origin": "https://evil.example"})
    assert other_site.status_code == 403
    assert other_site.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in other_site.headers
    ok = client.get(f"/widget/{channel.key}/config", headers={"Origin": SHOP})
    assert ok.headers["access-control-allow-origin"] == SHOP
    preflight = client.options(f"/widget/{channel.key}/messages", headers={"Origin": SHOP})
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["access-control-allow-headers"]

    with db.transaction(write=False) as session:
        secret = session.get(Channel, channel.id).secrets["identity_secret"]  # type: ignore[union-attr]
    good = hmac.new(secret.encode(), b"user-42", hashlib.sha256).hexdigest()
    forged = client.post(
        f"/widget/{channel.key}/session", headers={"Origin": SHOP}, json={"user_id": "user-42", "user_hash": "0" * 64}
    )
    assert forged.status_code == 401
    non_ascii = client.post(
        f"/widget/{channel.key}/session", headers={"Origin": SHOP}, json={"user_id": "user-42", "user_hash": "ñ" * 64}
    )
    assert non_ascii.status_code == 401  # compared as bytes: a TypeError (500) when compared as str
    laptop = new_visitor(client, channel, user_id="user-42", user_hash=good)
    phone = new_visitor(client, channel, user_id="user-42", user_hash=good)
    laptop.say("desde la laptop")
    phone.say("desde el teléfono")
    assert [m["text"] for m in phone.history()] == ["desde la laptop", "desde el teléfono"]
    stranger = new_visitor(client, channel)
    assert stranger.history() == []
    tampered = laptop.access_token[:-2] + ("AA" if not laptop.access_token.endswith("AA") else "BB")
    non_ascii_token = laptop.access_token.split(".")[0] + "." + "é" * 43
    assert (
        client.get(
            f"/widget/{channel.key}/messages", headers={"Authorization": f"Bearer {non_ascii_token}".encode()}
        ).status_code
        == 401
    )
    assert (
        client.get(f"/widget/{channel.key}/messages", headers={"Authorization": f"Bearer {tampered}"}).status_code
        == 401
    )


def test_contact_merge_moves_conversations(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    new_visitor(client, channel, email="a@example.com").say("uno")
    new_visitor(client, channel, email="b@example.com").say("dos")
    merged = client.post(
        "/api/v1/contacts/email:a@example.com/merge", headers=tenant.headers, json={"other": "email:b@example.com"}
    )
    assert merged.status_code == 200, merged.text
    [conversation] = _conversations(client, tenant)
    messages = client.get(f"/api/v1/conversations/{conversation['id']}/messages", headers=tenant.headers).json()
    assert [m["text"] for m in messages["items"]] == ["uno", "dos"]


def test_file_upload_is_served_only_to_those_who_see_the_conversation(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = make_webchat(db, tenant)
    new_visitor(client, channel).say("te mando la factura")
    [conversation] = _conversations(client, tenant)
    uploaded = client.post(
        "/api/v1/files",
        headers=tenant.headers,
        data={"conversation_id": str(conversation["id"])},
        files={"file": ("factura ñ.pdf", b"%PDF-1.4 test", "application/pdf")},
    )
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    download = client.get(f"/api/v1/files/{file_id}", headers=tenant.headers)
    assert download.status_code == 200
    assert download.content == b"%PDF-1.4 test"
    agent = sign_in(db, tenant, Role.AGENT)
    assert client.get(f"/api/v1/files/{file_id}", headers=agent.headers).status_code == 200  # unassigned
    client.post(
        f"/api/v1/conversations/{conversation['id']}/assign",
        headers=tenant.headers,
        json={"user_id": tenant.manager_id},
    )
    assert client.get(f"/api/v1/files/{file_id}", headers=agent.headers).status_code == 404
    exe = client.post(
        "/api/v1/files", headers=tenant.headers, files={"file": ("x.exe", b"MZ", "application/x-msdownload")}
    )
    assert exe.status_code == 422


def test_search_and_widget_rate_limit(db: Database, tenant: Tenant) -> None:
    settings = Settings(api_rate_limit_per_minute=100_000, widget_messages_per_minute=2)
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as client:
        channel = make_webchat(db, tenant)
        new_visitor(client, channel, name="Zoe Quintero").say("hola")
        chatty = new_visitor(client, channel, name="Beto")
        chatty.say("1")
        chatty.say("2")
        third = client.post(
            f"/widget/{channel.key}/messages", headers=chatty.headers, json={"text": "3", "client_msg_id": "third-0003"}
        )
        assert third.status_code == 429, third.text
        assert int(third.headers["retry-after"]) > 0
        assert third.json()["error"]["code"] == "rate_limited"
        found = _conversations(client, tenant, search="quin")
        assert [c["contact"]["name"] for c in found] == ["Zoe Quintero"]


def test_an_unsent_upload_can_be_deleted_a_sent_one_cannot(client: TestClient, db: Database, tenant: Tenant) -> None:
    new_visitor(client, make_webchat(db, tenant)).say("¿me mandas el catálogo?")
    [conversation] = _conversations(client, tenant)
    manager = sign_in(db, tenant, Role.MANAGER)
    agent = sign_in(db, tenant, Role.AGENT)

    def upload(name: str) -> int:
        response = client.post(
            "/api/v1/files",
            headers=manager.headers,
            data={"conversation_id": str(conversation["id"])},
            files={"file": (name, b"%PDF-1.4 " + name.encode(), "application/pdf")},
        )
        assert response.status_code == 201, response.text
        file_id: int = response.json()["id"]
        return file_id

    kept, dropped = upload("catalogo.pdf"), upload("borrador.pdf")
    sent = client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        headers=manager.headers,
        json={"type": "file", "attachments": [kept]},
    )
    assert sent.status_code == 201, sent.text
    refused = client.delete(f"/api/v1/files/{kept}", headers=manager.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "file_in_use"
    # Someone else's upload: only its uploader or a manager may delete it.
    assert client.delete(f"/api/v1/files/{dropped}", headers=agent.headers).status_code == 403
    assert client.delete(f"/api/v1/files/{dropped}", headers=manager.headers).status_code == 204
    assert client.get(f"/api/v1/files/{dropped}", headers=manager.headers).status_code == 404
    assert client.get(f"/api/v1/files/{kept}", headers=manager.headers).content == b"%PDF-1.4 catalogo.pdf"
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(StoredFile)) == 1


def test_unsent_uploads_are_swept_after_a_day_sent_ones_stay(client: TestClient, db: Database, tenant: Tenant) -> None:
    new_visitor(client, make_webchat(db, tenant)).say("hola")
    [conversation] = _conversations(client, tenant)

    def upload(name: str) -> int:
        response = client.post(
            "/api/v1/files",
            headers=tenant.headers,
            data={"conversation_id": str(conversation["id"])},
            files={"file": (name, name.encode(), "text/plain")},
        )
        assert response.status_code == 201, response.text
        file_id: int = response.json()["id"]
        return file_id

    sent, snippet_file, forgotten, fresh = upload("sent"), upload("snippet"), upload("forgotten"), upload("fresh")
    assert (
        client.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            headers=tenant.headers,
            json={"type": "file", "attachments": [sent]},
        ).status_code
        == 201
    )
    client.post(
        "/api/v1/snippets", headers=tenant.headers, json={"shortcut": "doc", "text": "", "file_id": snippet_file}
    )
    with db.transaction() as session:
        session.execute(
            update(StoredFile)
            .where(StoredFile.id.in_([sent, snippet_file, forgotten]))
            .values(created_at=utcnow() - timedelta(hours=30))
        )
        forgotten_key = session.get(StoredFile, forgotten).storage_key  # type: ignore[union-attr]
    with db.transaction() as session:
        assert files.do_sweep_unsent_uploads(session, utcnow()) == 1
    with db.transaction(write=False) as session:
        left = set(session.scalars(select(StoredFile.id)))
    assert left == {sent, snippet_file, fresh}
    with pytest.raises(FileNotFoundError):
        storage.get_storage().get(forgotten_key)


def test_conversations_filter_by_assignee_channel_and_change_time(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    shop, other_shop = make_webchat(db, tenant), make_webchat(db, tenant)
    new_visitor(client, shop, name="Ana").say("hola")
    new_visitor(client, other_shop, name="Beto").say("buenas")
    with db.transaction() as session:
        ana, beto = sorted(session.scalars(select(Conversation)), key=lambda c: c.channel_id or 0)
        ana_id, beto_id = ana.id, beto.id
        # Both last changed an hour ago, except Beto's, assigned just now.
        hour_ago = utcnow() - timedelta(hours=1)
        session.execute(update(Conversation).values(last_message_at=hour_ago, updated_at=hour_ago))
    assigned = client.post(
        f"/api/v1/conversations/{beto_id}/assign", headers=tenant.headers, json={"user_id": tenant.agent_id}
    )
    assert assigned.status_code == 200, assigned.text
    assert [c["id"] for c in _conversations(client, tenant, channel_id=shop.id)] == [ana_id]
    assert [c["id"] for c in _conversations(client, tenant, assignee_id=tenant.agent_id)] == [beto_id]
    assert _conversations(client, tenant, assignee_id=tenant.owner_id) == []
    since = (utcnow() - timedelta(minutes=5)).isoformat()
    assert [c["id"] for c in _conversations(client, tenant, updated_since=since)] == [beto_id]
    naive = client.get("/api/v1/conversations", headers=tenant.headers, params={"updated_since": "2026-01-01T10:00:00"})
    assert naive.status_code == 422
    assert "updated_since" in naive.json()["error"]["details"]
