"""Visitor credentials stay out of URLs and logs, and what a request carries is short-lived
(SQLite and PostgreSQL).

The widget used to open its socket at `/widget/ws?key=...&token=<visitor token>`: access logs (ours,
and any proxy's) recorded a token valid for 365 days that gave the visitor's whole chat history, and
the same token was the bearer of every request. Now the widget keeps a visitor token it only ever
sends in the body of POST /session, and trades it there for access tokens valid for an hour, which
requests carry in `Authorization` and the socket in its first frame.
"""

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tertulia.channels.adapters import webchat
from tertulia.channels.adapters.webchat import Visitor as TokenClaims
from tertulia.channels.adapters.webchat import issue_access_token
from tertulia.channels.models import Channel
from tertulia.conversations.ingress import widget
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.users.models import Role
from tests.conftest import Tenant
from tests.conversations.support import SHOP, make_webchat, new_visitor, sign_in, token_from_before, widget_socket

pytestmark = pytest.mark.usefixtures("immediate_queue")


def _session(client: TestClient, channel: Channel, **body: Any) -> dict[str, Any]:
    response = client.post(f"/widget/{channel.key}/session", headers={"Origin": SHOP}, json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _history(client: TestClient, channel: Channel, bearer: str) -> Any:
    return client.get(f"/widget/{channel.key}/messages", headers={"Origin": SHOP, "Authorization": f"Bearer {bearer}"})


def test_requests_carry_an_hour_long_access_token_the_kept_token_renews(
    client: TestClient, db: Database, tenant: Tenant, settings: Settings
) -> None:
    channel = make_webchat(db, tenant)
    started = _session(client, channel)
    now = time.time()
    assert abs(started["access_expires_at"] - (now + settings.widget_access_token_seconds)) < 5
    assert started["access_expires_at"] <= now + 3600 + 5
    assert started["expires_at"] > now + 30 * 86400  # the kept token remembers the visitor for months
    visitor = new_visitor(client, channel)
    visitor.access_token = started["access_token"]
    visitor.say("hola")
    # Each token works only where it belongs.
    assert _history(client, channel, started["token"]).status_code == 401
    assert _history(client, channel, started["access_token"]).status_code == 200
    stranger = _session(client, channel, token=started["access_token"])  # not a visitor token: a new visitor
    assert _history(client, channel, stranger["access_token"]).json()["items"] == []
    # The kept token, sent to /session, brings the same visitor back with a fresh access token.
    again = _session(client, channel, token=started["token"])
    assert [m["text"] for m in _history(client, channel, again["access_token"]).json()["items"]] == ["hola"]


def test_a_token_from_before_access_tokens_still_brings_the_visitor_back(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    """Visitors who chatted before the change keep their conversation: the token their browser kept
    is the visitor token, traded at /session like any other."""
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)
    visitor.say("de antes")
    claims = webchat.read_token(visitor.token, channel)
    kept_by_an_old_widget = token_from_before(claims)
    renewed = _session(client, channel, token=kept_by_an_old_widget)
    assert [m["text"] for m in _history(client, channel, renewed["access_token"]).json()["items"]] == ["de antes"]


def test_the_socket_url_carries_no_credential_and_the_first_frame_authenticates(
    client: TestClient, db: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)
    with widget_socket(client, channel, visitor) as socket:  # /widget/ws?key=..., then an auth frame
        socket.send_json({"type": "ping"})
        assert socket.receive_json() == {"type": "pong"}

    def closed(first_frame: dict[str, Any] | None, query: str = "") -> tuple[int, str]:
        url = f"/widget/ws?key={channel.key}{query}"
        with client.websocket_connect(url, headers={"origin": SHOP}) as socket:
            if first_frame is not None:
                socket.send_json(first_frame)
            with pytest.raises(WebSocketDisconnect) as refused:
                socket.receive_json()
        return refused.value.code, refused.value.reason

    monkeypatch.setattr(widget, "AUTH_TIMEOUT_SECONDS", 0.5)
    assert closed({"type": "auth", "token": visitor.token}) == (4401, "unauthorized")  # the kept token
    assert closed({"type": "ping"}) == (4401, "the first frame must be auth")
    # A token in the URL is not read at all: the socket waits for its auth frame, then gives up.
    assert closed(None, f"&token={visitor.access_token}") == (4401, "auth_timeout")
    expired = issue_access_token(
        TokenClaims(channel.id, webchat.read_access_token(visitor.access_token, channel).external_id, None, None, 1),
        channel,
    )
    assert closed({"type": "auth", "token": expired}) == (4401, "token_expired")


def test_a_socket_closes_when_its_access_token_expires_unless_it_sends_a_fresh_one(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)
    claims = webchat.read_access_token(visitor.access_token, channel)

    def short_lived(seconds: float) -> str:
        expires_at = int(time.time() + seconds)
        return issue_access_token(TokenClaims(channel.id, claims.external_id, None, None, expires_at), channel)

    visitor.access_token = short_lived(2)
    with widget_socket(client, channel, visitor) as socket, pytest.raises(WebSocketDisconnect) as expired:
        socket.receive_json()
    assert (expired.value.code, expired.value.reason) == (4401, "token_expired")

    visitor.access_token = short_lived(2)
    with widget_socket(client, channel, visitor) as socket:
        socket.send_json({"type": "auth", "token": short_lived(60)})
        assert socket.receive_json()["type"] == "ready"
        time.sleep(3)  # past the first token's expiry
        socket.send_json({"type": "ping"})
        assert socket.receive_json() == {"type": "pong"}
        other = new_visitor(client, channel)
        socket.send_json({"type": "auth", "token": other.access_token})  # another visitor's token
        with pytest.raises(WebSocketDisconnect) as switched:
            socket.receive_json()
        assert (switched.value.code, switched.value.reason) == (4401, "another visitor")


def test_a_new_identity_secret_revokes_every_token_of_the_widget(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    """Visitor tokens are valid for a year; a new identity secret (Settings > Channels) is how a
    workspace revokes them all at once, with the access tokens traded for them."""
    channel = make_webchat(db, tenant)
    other_channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)
    visitor.say("antes")
    elsewhere = new_visitor(client, other_channel)
    assert _history(client, channel, visitor.access_token).status_code == 200
    manager = sign_in(db, tenant, Role.MANAGER)
    rotated = client.post(
        f"/settings/channels/{channel.id}/identity-secret",
        headers={"Cookie": manager.headers["Cookie"]},
        data={"csrf_token": manager.csrf},
    )
    assert rotated.status_code == 200, rotated.text
    refused = _history(client, channel, visitor.access_token)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "unauthorized"
    # The kept token no longer brings the visitor back: /session starts a new visitor, without the history.
    fresh = _session(client, channel, token=visitor.token)
    assert _history(client, channel, fresh["access_token"]).json()["items"] == []
    with pytest.raises(WebSocketDisconnect), widget_socket(client, channel, visitor) as socket:
        socket.receive_json()
    # Another widget's visitors are not touched.
    assert _history(client, other_channel, elsewhere.access_token).status_code == 200
