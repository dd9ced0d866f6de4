"""One visitor, one budget: the widget's limits hold across HTTP and sockets (SQLite and PostgreSQL).

The message limit used to be counted per socket (a deque in each), beside the HTTP limit: one
visitor already throttled over HTTP sent 150 more messages in 10 s over 5 sockets, and nothing
limited how many sockets one visitor or one address could open (300 with one token). Each refusal
now carries a reason the widget shows.
"""

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from tertulia.app import create_app
from tertulia.channels.adapters.webchat import read_access_token
from tertulia.conversations.ingress.widget import admit_message
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tests.conftest import Tenant
from tests.conversations.support import SHOP, Visitor, make_webchat, new_visitor, widget_socket
from tests.fakes import sql_statements

pytestmark = pytest.mark.usefixtures("immediate_queue")


@pytest.fixture
def limits() -> dict[str, int]:
    return {}


@pytest.fixture
def client(db: Database, limits: dict[str, int]) -> Iterator[TestClient]:
    settings = Settings(api_rate_limit_per_minute=100_000, **limits)
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as test_client:
        yield test_client


def _send(socket: WebSocketTestSession, text: str, client_msg_id: str) -> dict[str, Any]:
    socket.send_json({"type": "message", "text": text, "client_msg_id": client_msg_id})
    for _ in range(20):
        frame: dict[str, Any] = socket.receive_json()
        if frame["type"] in ("ack", "error") and frame.get("client_msg_id") == client_msg_id:
            return frame
    raise AssertionError("no answer to the message")


def _post(visitor: Visitor, text: str, client_msg_id: str) -> Any:
    return visitor.client.post(
        f"/widget/{visitor.key}/messages", headers=visitor.headers, json={"text": text, "client_msg_id": client_msg_id}
    )


@pytest.mark.parametrize("limits", [{"widget_messages_per_minute": 4}])
def test_one_message_budget_per_visitor_over_http_and_every_socket(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)
    assert _post(visitor, "uno", "budget-0001").status_code == 201
    assert _post(visitor, "dos", "budget-0002").status_code == 201
    with widget_socket(client, channel, visitor) as first, widget_socket(client, channel, visitor) as second:
        assert _send(first, "tres", "budget-0003")["type"] == "ack"
        assert _send(second, "cuatro", "budget-0004")["type"] == "ack"
        refused = _send(second, "cinco", "budget-0005")
        assert refused["type"] == "error"
        assert refused["error"]["code"] == "rate_limited"
        assert 0 < refused["error"]["details"]["retry_after"] <= 60
        assert _send(first, "seis", "budget-0006")["error"]["code"] == "rate_limited"
    over_http = _post(visitor, "siete", "budget-0007")
    assert over_http.status_code == 429
    assert over_http.json()["error"]["code"] == "rate_limited"
    assert "retry-after" in over_http.headers
    # Nothing refused was stored; everything accepted was.
    assert [m["text"] for m in visitor.history()] == ["uno", "dos", "tres", "cuatro"]
    # Another visitor has a budget of their own.
    assert new_visitor(client, channel).say("otra persona")


@pytest.mark.parametrize("limits", [{"widget_sockets_per_visitor": 2, "widget_sockets_per_ip": 3}])
def test_open_sockets_are_capped_per_visitor_and_per_address(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    ana, bea = new_visitor(client, channel), new_visitor(client, channel)

    def refused(visitor: Visitor) -> tuple[int, str]:
        with client.websocket_connect(f"/widget/ws?key={channel.key}", headers={"origin": SHOP}) as socket:
            socket.send_json({"type": "auth", "token": visitor.access_token})
            with pytest.raises(WebSocketDisconnect) as closed:
                socket.receive_json()
        return closed.value.code, closed.value.reason

    with ExitStack() as stack:
        stack.enter_context(widget_socket(client, channel, ana))
        stack.enter_context(widget_socket(client, channel, ana))
        assert refused(ana) == (4429, "too_many_sockets")  # a third tab of the same visitor
        stack.enter_context(widget_socket(client, channel, bea))
        assert refused(new_visitor(client, channel)) == (4429, "too_many_sockets")  # a fourth from this address
    # Closed sockets give their places back.
    with widget_socket(client, channel, ana), widget_socket(client, channel, ana), widget_socket(client, channel, bea):
        pass


@pytest.mark.parametrize("limits", [{"widget_conversations_per_minute": 2}])
def test_new_conversations_are_capped_per_channel(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    first, second, third, fourth = (new_visitor(client, channel) for _ in range(4))
    first.say("primera")
    second.say("segunda")
    over_http = _post(third, "tercera", "third-0001")
    assert over_http.status_code == 429
    assert over_http.json()["error"]["code"] == "too_many_conversations"
    with widget_socket(client, channel, fourth) as socket:
        refused = _send(socket, "cuarta", "fourth-0001")
        assert (refused["type"], refused["error"]["code"]) == ("error", "too_many_conversations")
    # Conversations already open go on.
    first.say("sigo aquí")
    assert [m["text"] for m in first.history()] == ["primera", "sigo aquí"]
    assert third.history() == []


def test_a_visitor_with_an_open_conversation_is_admitted_without_asking_the_database(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    """Whether a message opens a conversation is asked once; while the visitor's conversation is
    known to be open, admitting their next messages costs no query (a transaction per message there
    doubled the live inbox's CPU per message)."""
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel)
    assert _post(visitor, "hola", "admit-0001").status_code == 201  # opens the conversation
    app = cast(Any, client.app)
    settings, limiter = app.state.settings, app.state.rate_limiter
    decoded = read_access_token(visitor.access_token, channel)
    with sql_statements(db) as statements:
        admit_message(db, limiter, settings, channel, decoded)  # asks, and finds it open
        asked_first = len(statements)
        admit_message(db, limiter, settings, channel, decoded)
        admit_message(db, limiter, settings, channel, decoded)
    assert asked_first >= 2  # the identity and the open conversation
    assert len(statements) == asked_first
