"""The away message: sent through the outbox when a customer writes while closed, once per
conversation per closed period, from the team's hours when the conversation's team has its own, and
never counted as a person's activity (auto-close)."""

import threading
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.conversations.away import do_set_away_message
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.models import AwayMessageSend, Conversation, Message, SenderKind
from tertulia.conversations.service import do_assign, do_close, do_reopen
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.users.teams import do_create_team
from tertulia.workspaces.hours import WEEKDAYS
from tertulia.workspaces.service import do_set_business_hours
from tests.conftest import Tenant
from tests.conversations.support import make_webchat
from tests.web.helpers import sign_in_as

TODAY = utcnow().date()
ALL_DAY = {day: [{"start": "00:00", "end": "24:00"}] for day in WEEKDAYS}


def _at(days: int, hour: int) -> timedelta:
    """The clock offset that puts `utcnow()` at TODAY + days, hour:00 UTC."""
    target = datetime(TODAY.year, TODAY.month, TODAY.day, hour, tzinfo=UTC) + timedelta(days=days)
    return target - utcnow()


def _setup(db: Database, tenant: Tenant, *, holidays: tuple[int, ...] = (0, 2)) -> Channel:
    """Open around the clock except on the given days from today (holidays: closed all day)."""
    channel = make_webchat(db, tenant)
    with db.transaction() as session:
        hours = {
            "timezone": "UTC",
            "week": ALL_DAY,
            "holidays": [{"date": (TODAY + timedelta(days=d)).isoformat()} for d in holidays],
        }
        with travel(_at(-1, 0)):  # in force before every instant the tests use
            do_set_business_hours(session, tenant.actor(), hours)
        do_set_away_message(
            session, tenant.actor(), enabled=True, text='Hola {{contact.first_name | "cliente"}}, hoy no abrimos.'
        )
    return channel


def _writes(db: Database, channel: Channel, who: str, text: str) -> int:
    with db.transaction() as session:
        fresh = session.get(Channel, channel.id)
        assert fresh is not None
        inbound = InboundMessage(sender_id=f"{fresh.id}:v:{who}", provider_message_id=None, text=text)
        [result] = do_receive_many(session, [(fresh, inbound)])
        return result.message.conversation_id


def _away_messages(db: Database, conversation_id: int | None = None) -> list[Message]:
    with db.transaction(write=False) as session:
        query = select(Message).where(Message.payload["automation"].as_string() == "away_message")
        if conversation_id is not None:
            query = query.where(Message.conversation_id == conversation_id)
        return list(session.scalars(query.order_by(Message.id)))


def test_once_per_closed_period_with_a_reopening_between(db: Database, tenant: Tenant) -> None:
    channel = _setup(db, tenant)
    with travel(_at(0, 10)):
        conversation = _writes(db, channel, "ana", "Hola")
    with travel(_at(0, 11)):
        assert _writes(db, channel, "ana", "¿Hay alguien?") == conversation
    sent = _away_messages(db)
    assert [m.text for m in sent] == ["Hola cliente, hoy no abrimos."]
    assert sent[0].sender_kind == SenderKind.WORKFLOW
    assert sent[0].conversation_id == conversation
    with travel(_at(0, 12)):  # an agent closes and reopens it: the same closed period
        with db.transaction() as session:
            row = session.get(Conversation, conversation)
            assert row is not None
            do_close(session, tenant.actor(), row, category_id=None, summary=None)
            do_reopen(session, tenant.actor(), row)
        _writes(db, channel, "ana", "Sigo aquí")
    assert len(_away_messages(db)) == 1
    with travel(_at(1, 10)):  # open all day tomorrow: nothing
        _writes(db, channel, "ana", "Buenos días")
    assert len(_away_messages(db)) == 1
    with travel(_at(2, 9)):  # closed again the day after: a new closed period
        _writes(db, channel, "ana", "¿Hoy tampoco?")
    assert len(_away_messages(db, conversation)) == 2
    with db.transaction(write=False) as session:
        row = session.get(Conversation, conversation)
        assert row is not None
        # Automated: the away messages did not count as a person's activity.
        assert row.last_agent_message_at is None


def test_a_team_with_its_own_hours_is_judged_by_them(db: Database, tenant: Tenant) -> None:
    channel = _setup(db, tenant)
    with travel(_at(0, 8)):
        conversation = _writes(db, channel, "luis", "Hola")
    assert len(_away_messages(db, conversation)) == 1
    with travel(_at(0, 9)), db.transaction() as session:
        team = do_create_team(session, tenant.actor(), "Guardia")
        do_set_business_hours(session, tenant.actor(), {"timezone": "UTC", "week": ALL_DAY}, team_id=team.id)
        row = session.get(Conversation, conversation)
        assert row is not None
        do_close(session, tenant.actor(), row, category_id=None, summary=None)
    with travel(_at(0, 10)):
        second = _writes(db, channel, "luis", "Otra cosa")  # a new conversation, no team: away again
    assert second != conversation
    assert len(_away_messages(db, second)) == 1
    with travel(_at(0, 10)), db.transaction() as session:
        row = session.get(Conversation, second)
        assert row is not None
        do_close(session, tenant.actor(), row, category_id=None, summary=None)
    with travel(_at(0, 11)):
        third = _writes(db, channel, "luis", "Y otra")
    assert len(_away_messages(db, third)) == 1  # the workspace is closed; third is not the team's yet
    with travel(_at(0, 11)), db.transaction() as session:
        row = session.get(Conversation, third)
        assert row is not None
        do_assign(session, tenant.actor(), row, user_id=None, team_id=team.id)
    # Day 2 is a new closed period for the workspace, but the conversation is the team's now, and
    # the team is open around the clock.
    with travel(_at(2, 10)):
        _writes(db, channel, "luis", "¿Guardia?")
    assert len(_away_messages(db, third)) == 1


def test_off_or_open_sends_nothing(db: Database, tenant: Tenant) -> None:
    channel = _setup(db, tenant)
    with travel(_at(1, 10)):
        _writes(db, channel, "marta", "Hola")  # open
    with db.transaction() as session:
        do_set_away_message(session, tenant.actor(), enabled=False, text="Cerrado")
    with travel(_at(2, 10)):
        _writes(db, channel, "marta", "Hola de nuevo")  # closed, but the message is off
    assert _away_messages(db) == []


def test_api_and_page(client: TestClient, db: Database, tenant: Tenant) -> None:
    assert client.get("/api/v1/workspace/away-message", headers=tenant.headers).json() == {
        "enabled": False,
        "text": "",
    }
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    headers = {"X-CSRF-Token": token}
    empty = client.put("/api/v1/workspace/away-message", headers=headers, json={"enabled": True, "text": " "})
    assert empty.status_code == 422
    assert empty.json()["error"]["details"] == {"text": "write the message to turn it on"}
    unknown = client.put("/api/v1/workspace/away-message", headers=headers, json={"enabled": True, "text": "{{x.y}}"})
    assert unknown.status_code == 422
    saved = client.put("/api/v1/workspace/away-message", headers=headers, json={"enabled": True, "text": "Volvemos"})
    assert saved.json() == {"enabled": True, "text": "Volvemos"}
    client.post("/language", data={"language": "es", "next": "/settings/away-message", "csrf_token": token})
    page = client.get("/settings/away-message")
    assert page.status_code == 200
    assert "Fuera de horario" in page.text
    assert 'data-testid="away-hours-off"' in page.text  # no business hours yet: always open
    refused = client.post("/settings/away-message", data={"csrf_token": token, "enabled": "1", "text": ""})
    assert refused.status_code == 422
    assert "escribe el mensaje para activarlo" in refused.text
    assert 'id="text-error"' in refused.text
    done = client.post("/settings/away-message", data={"csrf_token": token, "enabled": "1", "text": "Abrimos el lunes"})
    assert done.status_code == 200
    assert "Abrimos el lunes" in done.text


def test_messages_written_at_once_send_one_away_message(db: Database, tenant: Tenant) -> None:
    channel = _setup(db, tenant)
    with travel(_at(1, 10)):
        conversation = _writes(db, channel, "sara", "Hola")  # open: the conversation exists
    failures: list[BaseException] = []

    def write(n: int) -> None:
        try:
            _writes(db, channel, "sara", f"mensaje {n}")
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    with travel(_at(2, 10)):
        writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
    assert failures == []
    assert len(_away_messages(db, conversation)) == 1
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(AwayMessageSend)) == 1
