"""Text from outside: NUL and unpaired surrogates get the same answer on SQLite and PostgreSQL (a 422
naming the field, or U+FFFD where nobody can correct the text any more), and invisible or bidi
characters never make two names that look alike, or a name that looks empty.

PostgreSQL's text cannot hold NUL (the driver raised a DataError, a 500) while SQLite stored it; an
unpaired surrogate could not be encoded to UTF-8 on either (a 500 too).
"""

import hashlib
import hmac
import json
from typing import Annotated, Any
from urllib.parse import quote_from_bytes

import pytest
from fastapi import Form
from fastapi.routing import APIRoute, APIRouter
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tertulia.app import create_app
from tertulia.channels.models import Channel
from tertulia.contacts.models import Contact, Tag
from tertulia.conversations.models import Message, StoredFile
from tertulia.kit.db import Database
from tertulia.kit.http import CheckedInputRoute, DbSession
from tertulia.kit.settings import Settings
from tertulia.kit.text import UNSAFE_TEXT_MESSAGE, has_unsafe_characters, name_key, tidy_name
from tertulia.segments.models import Segment
from tertulia.users.models import Role
from tests.conftest import Tenant
from tests.conversations.support import SHOP, make_webchat, new_visitor, sign_in, widget_socket
from tests.fakes import callbacks_written, immediate_queue

__all__ = ["immediate_queue"]  # a fixture, used by name
from tests.web.helpers import sign_in_as

NUL = "nul\x00byte"
SURROGATE = "\ud800x"


def _refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"] == {field: UNSAFE_TEXT_MESSAGE}, error


def _raw_json(value: Any) -> bytes:
    # json.dumps escapes a lone surrogate as \ud800, the way a client's JSON carries it.
    return json.dumps(value).encode()


def _post_json(client: TestClient, url: str, body: Any, headers: dict[str, str]) -> Any:
    return client.post(url, content=_raw_json(body), headers={**headers, "Content-Type": "application/json"})


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/contacts", {"first_name": "{bad}"}, "first_name"),
        ("/api/v1/contacts", {"first_name": "Ana", "tags": ["ok", "{bad}"]}, "tags[1]"),
        ("/api/v1/contacts", {"first_name": "Ana", "custom_fields": {"plan": "{bad}"}}, "custom_fields.plan"),
        ("/api/v1/segments", {"name": "{bad}"}, "name"),
        ("/api/v1/snippets", {"shortcut": "hi", "text": "{bad}"}, "text"),
        ("/api/v1/closing-categories", {"name": "{bad}"}, "name"),
        ("/api/v1/custom-fields", {"key": "plan", "label": "Plan", "type": "list", "options": ["{bad}"]}, "options[0]"),
        ("/api/v1/workflows", {"name": "{bad}", "definition": {}}, "name"),
        ("/api/v1/workflows/1/run", {"contact": "id:1", "answers": {"reason": "{bad}"}}, "answers.reason"),
        ("/api/v1/workflow-templates/assign_agent/workflows", {"values": {"team": "{bad}"}}, "values.team"),
    ],
)
def test_api_bodies_refuse_nul_and_unpaired_surrogates(
    client: TestClient, db: Database, tenant: Tenant, url: str, body: dict[str, Any], field: str, bad: str
) -> None:
    filled = json.loads(json.dumps(body).replace("{bad}", json.dumps(bad)[1:-1]))
    _refused(_post_json(client, url, filled, tenant.headers), field)
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 0


def test_query_and_path_text_refuse_nul(client: TestClient, tenant: Tenant) -> None:
    _refused(client.get("/api/v1/contacts", params={"search": "a\x00b"}, headers=tenant.headers), "search")
    _refused(client.get("/api/v1/contacts/email:a%00b@example.com", headers=tenant.headers), "identifier")


def test_the_widget_refuses_nul_over_http_and_its_socket(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    headers = {"Origin": SHOP}
    _refused(_post_json(client, f"/widget/{channel.key}/session", {"name": "a\x00b"}, headers), "name")
    visitor = new_visitor(client, channel)
    message = {"text": "a\x00b", "client_msg_id": "abcdefgh01"}
    _refused(_post_json(client, f"/widget/{channel.key}/messages", message, visitor.headers), "text")
    with widget_socket(client, channel, visitor) as socket:
        socket.send_text(json.dumps({"type": "message", **message}))
        frame = socket.receive_json()
        assert frame["type"] == "error"
        assert frame["client_msg_id"] == "abcdefgh01"
        assert frame["error"]["details"] == {"text": UNSAFE_TEXT_MESSAGE}
    # The same visitor's good message still lands: nothing of the bad one was kept.
    assert visitor.say("hola")["text"] == "hola"
    with db.transaction(write=False) as session:
        assert list(session.scalars(select(Message.text))) == ["hola"]


@pytest.mark.usefixtures("immediate_queue")
def test_the_agents_socket_refuses_nul_and_unpaired_surrogates_as_the_widget_does(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)
    manager = sign_in(db, tenant, Role.MANAGER)
    with client.websocket_connect("/ws", headers={"cookie": manager.headers["Cookie"]}) as inbox:
        assert inbox.receive_json()["type"] == "hello"
        # json.dumps escapes NUL as \u0000 and a lone surrogate as \ud800, as a client's JSON does.
        for frame, path in (
            ({"type": "ping", "note": NUL}, "note"),
            ({"type": "ping", "nested": [{"x": SURROGATE}]}, "nested[0].x"),
        ):
            inbox.send_text(json.dumps(frame))
            answer = inbox.receive_json()
            assert answer["type"] == "error"
            assert answer["error"]["code"] == "validation_failed"
            assert answer["error"]["details"] == {path: UNSAFE_TEXT_MESSAGE}
        # Raw control characters are not JSON at all: unreadable, as on the widget's socket.
        inbox.send_text('{"type": "ping", "note": "raw ' + "\x00" + ' inside"}')
        assert inbox.receive_json()["error"]["code"] == "invalid_frame"
        inbox.send_text("not json")
        assert inbox.receive_json()["error"]["code"] == "invalid_frame"
        inbox.send_text(json.dumps({"type": "subscribe"}))
        assert inbox.receive_json()["error"]["code"] == "invalid_frame"
        inbox.send_text(json.dumps({"type": "ping"}))
        assert inbox.receive_json() == {"type": "pong"}
        # The socket was not closed over the bad frames: it still streams the workspace's events.
        visitor.say("hola")
        while (event := inbox.receive_json())["type"] != "message.created":
            assert event["type"] != "error", event
        assert event["data"]["message"]["text"] == "hola"


SPANISH_UNSAFE = "no debe contener caracteres NUL ni sustitutos sin pareja"


@pytest.mark.parametrize(("language", "message"), [("en", UNSAFE_TEXT_MESSAGE), ("es", SPANISH_UNSAFE)])
def test_page_forms_show_the_refusal_beside_the_field(
    client: TestClient, db: Database, tenant: Tenant, language: str, message: str
) -> None:
    """A form with NUL in a field is shown again with the message beside that field, in the
    reader's language (it was a bare 422 page), and nothing is saved. (A lone surrogate cannot reach
    a form: its UTF-8 bytes are invalid, and Starlette decodes them as U+FFFD.)"""
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    headers = {"Accept-Language": language}
    typed = quote_from_bytes(NUL.encode()).encode()
    form = b"&".join([b"first_name=" + typed, b"last_name=Ruiz", b"csrf_token=" + token.encode()])
    form_headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    created = client.post("/contacts", content=form, headers=form_headers)
    assert created.status_code == 422, created.text
    page = created.text
    assert f'<p class="field-error" id="first_name-error" role="alert">{message}</p>' in page
    assert 'value="Ruiz"' in page  # what was typed is kept
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 0

    contact = client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": "Ana"}).json()
    edit = b"value=" + typed + b"&csrf_token=" + token.encode()
    for htmx in ({}, {"HX-Request": "true"}):
        saved = client.post(
            f"/contacts/{contact['id']}/fields/first_name", content=edit, headers={**form_headers, **htmx}
        )
        assert saved.status_code == 422, saved.text
        assert f'<p class="field-error" id="err-first_name" role="alert">{message}</p>' in saved.text

    segment = client.post("/api/v1/segments", headers=tenant.headers, json={"name": "Clientes"}).json()
    rename = b"name=" + typed + b"&csrf_token=" + token.encode()
    renamed = client.post(f"/contacts/segments/{segment['id']}/rename", content=rename, headers=form_headers)
    assert renamed.status_code == 422, renamed.text
    assert f'<p class="field-error" id="name-error" role="alert">{message}</p>' in renamed.text
    with db.transaction(write=False) as session:
        assert session.scalars(select(Contact.first_name)).all() == ["Ana"]
        assert session.scalar(select(Segment.name).where(Segment.id == segment["id"])) == "Clientes"


def test_a_page_that_never_asks_about_its_form_text_stores_nothing(
    db: Database, settings: Settings, tenant: Tenant
) -> None:
    """Pages show kit.text's refusal beside the field (tests/web/test_form_text_everywhere.py walks
    every one); a page that forgot to ask (check_form_text) still stores nothing: its transaction
    is rolled back and the answer is the bare 422 page."""
    app = create_app(settings, db)

    def careless(session: DbSession, name: Annotated[str, Form()]) -> dict[str, str]:
        session.add(Tag(workspace_id=tenant.workspace_id, name=name, name_key=name.casefold()))
        session.flush()
        return {"stored": name}

    pages = APIRouter(route_class=CheckedInputRoute)
    pages.add_api_route("/test-only/tags", careless, methods=["POST"])
    app.include_router(pages)
    with TestClient(app, raise_server_exceptions=False) as client:
        refused = client.post("/test-only/tags", data={"name": "a\x00b"})
        assert refused.status_code == 422, refused.text
        assert "text/html" in refused.headers["content-type"]
        assert client.post("/test-only/tags", data={"name": "ab"}).json() == {"stored": "ab"}
    with db.transaction(write=False) as session:
        assert list(session.scalars(select(Tag.name))) == ["ab"]


def test_provider_callbacks_keep_the_message_with_the_characters_replaced(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = make_webchat(db, tenant)
    with db.transaction(write=False) as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        secret = stored.secrets["identity_secret"]
    item = {"id": "srv-1", "user_id": "u\x00-1", "name": "Lu\x00z", "text": "ho\x00la \ud800"}
    raw = _raw_json({"messages": [item]})
    signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    response = client.post(
        f"/channels/{channel.key}/callback",
        content=raw,
        headers={"Content-Type": "application/json", "X-Tertulia-Signature": f"sha256={signature}"},
    )
    assert response.status_code == 200, response.text
    callbacks_written(db)
    with db.transaction(write=False) as session:
        assert list(session.scalars(select(Message.text))) == ["ho\ufffdla \ufffd"]
        assert list(session.scalars(select(Contact.first_name))) == ["Lu\ufffdz"]


@pytest.fixture
def contacts_client(client: TestClient, db: Database, tenant: Tenant) -> tuple[TestClient, Tenant]:
    return client, tenant


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0xFFFF), max_size=12))
def test_any_text_is_stored_as_sent_or_refused_naming_the_field(
    contacts_client: tuple[TestClient, Tenant], name: str
) -> None:
    """On both databases: a name with NUL or a surrogate is a 422 naming it, any other name is stored
    (or refused for another reason), never a 500."""
    client, tenant = contacts_client
    response = _post_json(client, "/api/v1/contacts", {"last_name": name, "email": None}, tenant.headers)
    if has_unsafe_characters(name):
        _refused(response, "last_name")
    else:
        assert response.status_code in (201, 422), response.text
        if response.status_code == 201:
            assert response.json()["last_name"] == (tidy_name(name) or None)


# ----- invisible and bidi characters in names (one rule: kit.text.tidy_name) ---------------------


def test_format_characters_are_dropped_from_names_before_they_are_compared() -> None:
    assert tidy_name("v\u200bip") == "vip"
    assert tidy_name("\u200b") == ""
    assert tidy_name("photo\u202egnp.exe") == "photognp.exe"
    assert tidy_name(" Ana \u2066 María\u2069 ") == "Ana María"
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # an emoji sequence keeps its joiners
    assert tidy_name(family) == family
    assert tidy_name("\u200dvip\u200c") == "vip"  # but not at either end
    assert name_key("v\u200dip") == name_key("VIP")


def test_invisible_characters_make_no_second_tag_segment_or_empty_contact(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    created = client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": "Ana", "tags": ["vip"]})
    assert created.status_code == 201, created.text
    tagged = client.post(
        f"/api/v1/contacts/id:{created.json()['id']}/tags", headers=tenant.headers, json={"tags": ["v\u200bip"]}
    )
    assert tagged.status_code == 200, tagged.text
    with db.transaction(write=False) as session:
        assert list(session.scalars(select(Tag.name))) == ["vip"]

    invisible = client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": "\u200b\u2060"})
    assert invisible.status_code == 422, invisible.text

    first = client.post("/api/v1/segments", headers=tenant.headers, json={"name": "SegA"})
    assert first.status_code == 201, first.text
    second = client.post("/api/v1/segments", headers=tenant.headers, json={"name": "SegA\u200b"})
    assert second.status_code == 409, second.text


def test_bidi_controls_are_dropped_from_file_names(client: TestClient, db: Database, tenant: Tenant) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    response = client.post(
        "/api/v1/files", headers=tenant.headers, files={"file": ("photo\u202egnp.exe", png, "image/png")}
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "photognp.exe"
    with db.transaction(write=False) as session:
        assert list(session.scalars(select(StoredFile.name))) == ["photognp.exe"]


def test_nul_text_the_driver_refuses_is_a_422_wherever_it_escapes(db: Database, settings: Settings) -> None:
    """The last resort, for a path that would let NUL through to PostgreSQL (which refuses it)."""
    app = create_app(settings, db)

    def unchecked(session: DbSession, name: str) -> dict[str, int]:
        return {"found": len(list(session.scalars(select(Contact.id).where(Contact.first_name == name))))}

    # A plain APIRoute on purpose: CheckedInputRoute would refuse the text before the query.
    unchecked_routes = APIRouter(route_class=APIRoute)
    unchecked_routes.add_api_route("/api/test-only/contacts", unchecked)
    app.include_router(unchecked_routes)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/test-only/contacts", params={"name": "a\x00b"})
    if db.dialect == "postgresql":
        _refused(response, "request")
    else:
        assert response.json() == {"found": 0}
