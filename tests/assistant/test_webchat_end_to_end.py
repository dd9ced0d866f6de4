"""The bot on web chat end to end, through public surfaces only: the widget's HTTP API as the
customer, the REST API as the workspace's manager (channel, bot settings, knowledge) and as the agent
(queue, internal note, take over, reply, close with "turn the bot back on"). The bot runs as the
event consumer it is in production, fed from the event log after each customer message.

A customer asks and the bot answers from the knowledge; asks something unknown and the bot hands
off (its message, a pause, a note for the team, the conversation left in the people's queue); the
agent takes over and replies, and the bot stays quiet; the agent closes with the bot back on, and
the customer's next conversation is the bot's again. The channel keeps pauses (`keep_paused`), so
that last step depends on the close's option: without it the next conversation would start paused.
"""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tertulia.kit.db import Database
from tertulia.users.models import Role
from tests.assistant.support import feed
from tests.conftest import Tenant
from tests.conversations.support import SHOP, Agent, Visitor, sign_in

pytestmark = pytest.mark.usefixtures("no_background_work")

HANDOFF_MESSAGE = "Te comunico con una persona del equipo."
OPENING_HOURS = "Abrimos de lunes a sábado de 9 a 19 h."
DELIVERIES = "Sí, enviamos a todo el país en 48 horas."
CARDS = "Aceptamos todas las tarjetas de crédito y débito."
KNOWLEDGE = [
    {
        "question": "¿Cuál es el horario de la tienda?",
        "alternatives": ["¿A qué hora abren?", "¿Hasta qué hora atienden?"],
        "answer": OPENING_HOURS,
        "language": "es",
    },
    {
        "question": "¿Hacen envíos a domicilio?",
        "alternatives": ["¿Mandan pedidos a casa?"],
        "answer": DELIVERIES,
        "language": "es",
    },
    {
        "question": "¿Aceptan tarjeta de crédito?",
        "alternatives": ["¿Puedo pagar con tarjeta?"],
        "answer": CARDS,
        "language": "es",
    },
]
UNKNOWN_QUESTION = "¿Reparan bicicletas eléctricas de montaña?"
AGENT_REPLY = "Hola, soy Marta. Sí, reparamos bicicletas eléctricas; tráela cuando quieras."


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _set_up_shop(client: TestClient, manager: dict[str, str]) -> dict[str, Any]:
    """A web-chat channel with the bot on (keeping pauses) and the knowledge, as a manager sets them up
    through the API; the channel as created."""
    channel: dict[str, Any] = _ok(
        client.post(
            "/api/v1/channels",
            headers=manager,
            json={"type": "webchat", "name": "Tienda", "config": {"allowed_origins": [SHOP]}},
        ),
        201,
    )
    settings = _ok(
        client.put(
            f"/api/v1/assistant/channels/{channel['id']}/settings",
            headers=manager,
            json={"enabled": True, "keep_paused": True, "handoff_message": HANDOFF_MESSAGE},
        )
    )
    assert (settings["enabled"], settings["keep_paused"]) == (True, True)
    for entry in KNOWLEDGE:
        _ok(client.post("/api/v1/knowledge/entries", headers=manager, json=entry), 201)
    return channel


def _open_chat(client: TestClient, channel_key: str, name: str) -> Visitor:
    """The widget's session for a customer on the shop's site."""
    started = _ok(client.post(f"/widget/{channel_key}/session", headers={"Origin": SHOP}, json={"name": name}))
    return Visitor(client, channel_key, started["token"], started["access_token"])


def _customer_says(db: Database, visitor: Visitor, text: str) -> list[dict[str, Any]]:
    """The customer writes through the widget, the bot gets its turn; what the customer's widget
    then shows after their message (oldest first)."""
    said = visitor.say(text)
    feed(db)
    history = visitor.history()
    ids = [message["id"] for message in history]
    assert said["id"] in ids
    return history[ids.index(said["id"]) + 1 :]


def _conversations(client: TestClient, agent: Agent, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _ok(client.get("/api/v1/conversations", headers=agent.headers, params=params))[
        "items"
    ]
    return items


def _messages(client: TestClient, agent: Agent, conversation_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _ok(
        client.get(f"/api/v1/conversations/{conversation_id}/messages", headers=agent.headers, params={"limit": 200})
    )["items"]
    return sorted(items, key=lambda message: message["id"])


def test_bot_answers_hands_off_to_an_agent_and_answers_again_after_a_close_that_turns_it_back_on(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    feed(db)  # the bot's place in the log starts at its end, as for a consumer added to a running system
    channel = _set_up_shop(client, sign_in(db, tenant, Role.MANAGER).headers)
    visitor = _open_chat(client, channel["key"], "Lucía Gómez")
    # The agent works with their own session (cookie and CSRF token) in the API.
    agent = sign_in(db, tenant, Role.AGENT)

    # 1. A question the knowledge answers: the bot's reply is the entry's answer.
    shown = _customer_says(db, visitor, "Hola, ¿a qué hora abren?")
    assert [(m["direction"], m["text"]) for m in shown] == [("outgoing", OPENING_HOURS)]
    [conversation] = _conversations(client, agent, view="all")
    conversation_id = conversation["id"]
    [bot_reply] = [m for m in _messages(client, agent, conversation_id) if m["direction"] == "outgoing"]
    assert bot_reply["sender_kind"] == "bot"
    assert bot_reply["payload"]["bot"]["outcome"] == "answered"
    assert conversation["bot_paused"] is False

    # 2. Something the knowledge does not answer: the hand-off message, the bot paused here, a note
    # for the team with the customer's question, and the conversation waiting in the people's queue.
    shown = _customer_says(db, visitor, UNKNOWN_QUESTION)
    assert [(m["direction"], m["text"]) for m in shown] == [("outgoing", HANDOFF_MESSAGE)]
    [queued] = _conversations(client, agent, view="unassigned")
    assert queued["id"] == conversation_id
    assert queued["assignee_id"] is None
    assert queued["status"] == "open"
    assert queued["bot_paused"] is True
    messages = _messages(client, agent, conversation_id)
    outgoing = [m for m in messages if m["direction"] == "outgoing"]
    assert [m["payload"]["bot"]["outcome"] for m in outgoing] == ["answered", "handoff"]
    [note] = [m for m in messages if m["direction"] == "comment"]
    assert UNKNOWN_QUESTION in note["text"]
    assert (note["sender_kind"], note["sender_user_id"]) == ("bot", None)
    # The note is the team's: the customer's widget never shows it.
    assert all(m["text"] != note["text"] for m in visitor.history())

    # 3. The agent takes the conversation over and answers; a question the knowledge would answer
    # now gets nothing from the bot (paused since the hand-off, and now assigned: either keeps it out).
    taken = _ok(
        client.post(
            f"/api/v1/conversations/{conversation_id}/assign", headers=agent.headers, json={"user_id": agent.user_id}
        )
    )
    assert taken["assignee_id"] == agent.user_id
    assert _conversations(client, agent, view="unassigned") == []
    _ok(
        client.post(
            f"/api/v1/conversations/{conversation_id}/messages", headers=agent.headers, json={"text": AGENT_REPLY}
        ),
        201,
    )
    assert _customer_says(db, visitor, "¿Aceptan tarjeta de crédito?") == []
    assert [m["text"] for m in visitor.history() if m["direction"] == "outgoing"] == [
        OPENING_HOURS,
        HANDOFF_MESSAGE,
        AGENT_REPLY,
    ]

    # 4. The agent closes with "turn the bot back on".
    closed = _ok(
        client.post(f"/api/v1/conversations/{conversation_id}/close", headers=agent.headers, json={"resume_bot": True})
    )
    assert (closed["status"], closed["bot_paused"]) == ("closed", False)

    # 5. The customer's next message opens a new conversation, which the bot answers again.
    shown = _customer_says(db, visitor, "¿Hacen envíos a domicilio?")
    assert [(m["direction"], m["text"]) for m in shown] == [("outgoing", DELIVERIES)]
    [next_conversation] = _conversations(client, agent, view="unassigned")
    assert next_conversation["id"] != conversation_id
    assert (next_conversation["status"], next_conversation["bot_paused"], next_conversation["assignee_id"]) == (
        "open",
        False,
        None,
    )
    [second_reply] = [m for m in _messages(client, agent, next_conversation["id"]) if m["direction"] == "outgoing"]
    assert second_reply["sender_kind"] == "bot"
    assert second_reply["payload"]["bot"]["outcome"] == "answered"
