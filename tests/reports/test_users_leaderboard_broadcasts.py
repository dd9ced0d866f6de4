"""The users, leaderboard and broadcasts reports against hand-computed scenarios, through the real
inbox, presence, broadcasts, the event log and the consumer, on both databases. The workspace is in
America/Mexico_City (UTC-6, no DST)."""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from tertulia.channels.protocol import DeliveryStatus
from tertulia.conversations import service as inbox
from tertulia.conversations.models import Conversation, Message
from tertulia.conversations.status import advance_message_status
from tertulia.kit.db import Database
from tertulia.users.models import ActivityStatus, Role, User
from tertulia.users.presence import set_shown_status
from tertulia.users.service import do_add_member, do_create_user
from tertulia.users.teams import do_create_team
from tertulia.workspaces.service import do_set_business_hours
from tests.broadcasts.support import broadcast_messages, customers_write, draft, fake_channel
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider
from tests.reports.support import DRIFT, WEEKDAYS, Shop, at, feed, report, system
from tests.web.helpers import sign_in_as

DAY = "2026-11-02"  # a Monday
BEFORE = "2026-11-01"
ZONE = ZoneInfo("America/Mexico_City")


def _day(day: str = DAY) -> dict[str, str]:
    return {"range": "custom", "from": day, "to": day}


def _summary(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    table = body["tables"]["summary"]
    return {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["rows"]}


def _rows_by_id(body: dict[str, Any], table: str) -> dict[Any, dict[str, Any]]:
    found = body["tables"][table]
    return {row[0]: dict(zip(found["columns"], row, strict=True)) for row in found["rows"]}


def _local(moment: str) -> datetime:
    return datetime.fromisoformat(moment).replace(tzinfo=ZONE)


def _status(db: Database, user_id: int, status: ActivityStatus, moment: str) -> None:
    with db.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        set_shown_status(session, user, status, at=_local(moment))


def _comment(db: Database, tenant: Tenant, conversation_id: int, role: Role) -> None:
    with db.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        inbox.do_comment(session, tenant.actor(role), conversation, "nota interna")


def _a_day_of_work(db: Database, tenant: Tenant, shop: Shop, team: int) -> None:
    """The agent: assigned once (in the team), answers after 4 min, comments, closes after 1 h; the
    conversation is reopened and the same contact's second question answered after 10 min and closed
    after 1 h. The owner answers another customer after 2 min and closes it unassigned. A bot's
    reply is nobody's message. The agent is online 09:00-11:00 and away 11:00-11:30."""
    _status(db, tenant.agent_id, ActivityStatus.ONLINE, f"{DAY} 09:00")
    with at(f"{DAY} 09:00"):
        first = shop.customer_writes("+5215550004001")
    with at(f"{DAY} 09:01"), db.transaction() as session:
        conversation = session.get(Conversation, first)
        assert conversation is not None
        inbox.do_assign(session, tenant.actor(), conversation, user_id=tenant.agent_id, team_id=team)
    with at(f"{DAY} 09:02"):
        shop.reply(first, system(tenant, "bot"), "soy un bot")
    with at(f"{DAY} 09:04"):
        shop.reply(first, tenant.actor(Role.AGENT))
    with at(f"{DAY} 09:30"):
        _comment(db, tenant, first, Role.AGENT)
    with at(f"{DAY} 10:00"):
        shop.close(first)
    with at(f"{DAY} 11:00"):
        shop.reopen(first)
    _status(db, tenant.agent_id, ActivityStatus.AWAY, f"{DAY} 11:00")
    with at(f"{DAY} 11:05"):
        shop.customer_writes("+5215550004001", "otra pregunta")
    with at(f"{DAY} 11:15"):
        shop.reply(first, tenant.actor(Role.AGENT))
    _status(db, tenant.agent_id, ActivityStatus.OFFLINE, f"{DAY} 11:30")
    with at(f"{DAY} 12:00"):
        shop.close(first)
    with at(f"{DAY} 13:00"):
        second = shop.customer_writes("+5215550004002")
    with at(f"{DAY} 13:02"):
        shop.reply(second, tenant.actor())
    with at(f"{DAY} 13:30"):
        shop.close(second)
    feed(db)


def test_users_one_row_per_member_with_counts_times_and_presence(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with db.transaction() as session:
        team = do_create_team(session, tenant.actor(), "Soporte").id
    with fake_provider() as provider:
        shop = Shop(db, tenant, fake_channel(db, tenant, provider.url).id)
        _a_day_of_work(db, tenant, shop, team)
    body = report(client, tenant, "users", **_day())
    rows = _rows_by_id(body, "users")
    assert set(rows) == {tenant.owner_id, tenant.manager_id, tenant.agent_id}
    agent = rows[tenant.agent_id]
    assert (
        agent["assigned"],
        agent["closed"],
        agent["contacts_closed"],
        agent["messages_sent"],
        agent["comments"],
    ) == (1, 2, 1, 2, 1)
    # First responses 4 min and 10 min: the nearest-rank median is the smaller one.
    assert abs(agent["first_response_median_seconds"] - 240) <= DRIFT
    assert abs(agent["first_response_average_seconds"] - 420) <= DRIFT
    # Two resolutions of 1 h in one bucket: the median is read inside it, within the documented bound.
    assert abs(agent["resolution_median_seconds"] - 3600) <= 0.091 * 3600
    assert abs(agent["resolution_average_seconds"] - 3600) <= DRIFT
    assert (agent["online_seconds"], agent["away_seconds"]) == (7200, 1800)
    owner = rows[tenant.owner_id]
    # The owner's closing was of an unassigned conversation: a closing belongs to the assignee.
    assert (owner["assigned"], owner["closed"], owner["messages_sent"], owner["comments"]) == (0, 0, 1, 0)
    assert abs(owner["first_response_median_seconds"] - 120) <= DRIFT
    assert owner["resolution_median_seconds"] is None
    assert rows[tenant.manager_id]["online_seconds"] == 0
    summary = _summary(body)
    assert summary["closed"]["count"] == 3
    assert summary["contacts_closed"]["count"] == 2
    assert summary["messages_sent"]["count"] == 3  # the bot's reply is not a person's message
    assert summary["comments"]["count"] == 1
    assert summary["first_response"]["count"] == 3
    assert summary["resolution"]["count"] == 3
    # An agent sees their own row only.
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    own = client.get("/api/v1/reports/users", params=_day())
    assert own.status_code == 200, own.text
    assert [row[0] for row in own.json()["tables"]["users"]["rows"]] == [tenant.agent_id]


def test_the_leaderboard_ranks_people_and_teams_on_a_chosen_metric(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with db.transaction() as session:
        team = do_create_team(session, tenant.actor(), "Soporte").id
        for n in range(9):  # twelve members in all: the page shows ten and the rest under Show all
            extra = do_create_user(session, f"extra{n}-{tenant.workspace_id}@example.com", None, first_name=f"Z{n}")
            do_add_member(session, tenant.workspace_id, extra.id, Role.AGENT)
    with fake_provider() as provider:
        shop = Shop(db, tenant, fake_channel(db, tenant, provider.url).id)
        _a_day_of_work(db, tenant, shop, team)

    def board(**params: Any) -> list[list[Any]]:
        body = report(client, tenant, "leaderboard", **_day(), **params)
        rows: list[list[Any]] = body["tables"]["leaderboard"]["rows"]
        return rows

    closed = board()
    assert closed[0][:4] == [1, tenant.agent_id, closed[0][2], 2]
    assert [row[0] for row in closed[1:]] == [2] * 11  # the others tie at 0
    assert len(closed) == 12
    fastest = board(metric="first_response")
    assert [row[1] for row in fastest[:2]] == [tenant.owner_id, tenant.agent_id]
    assert [row[0] for row in fastest[:3]] == [1, 2, 3]
    assert fastest[2][3] is None  # without a first response: last
    online = board(metric="online")
    assert online[0][1:4:2] == [tenant.agent_id, 7200]
    teams = report(client, tenant, "leaderboard", **_day(), metric="messages_sent", by="team")
    assert teams["options"] == {"metric": "messages_sent", "by": "team"}
    assert teams["tables"]["leaderboard"]["columns"][3] == "value_count"
    # Every team is listed, in the previous period too (where it had none).
    [team_row] = teams["tables"]["leaderboard"]["rows"]
    assert team_row[:6] == [1, team, "Soporte", 2, 1, 0]
    # Beside the ranking, the team's replies: the agent's two in the team's conversation.
    assert teams["tables"]["leaderboard"]["columns"][6:] == ["reply_time_median_seconds", "replies_per_conversation"]
    assert abs(team_row[6] - 240) <= DRIFT
    assert team_row[7] == 2.0
    refused = client.get(
        "/api/v1/reports/leaderboard", headers=tenant.headers, params={**_day(), "metric": "online", "by": "team"}
    )
    assert refused.status_code == 422
    assert "metric" in refused.json()["error"]["details"]
    bad = client.get("/api/v1/reports/leaderboard", headers=tenant.headers, params={"by": "planet"})
    assert bad.status_code == 422
    assert "by" in bad.json()["error"]["details"]
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    page = client.get("/reports/leaderboard", params={**_day(), "metric": "closed"})
    assert page.status_code == 200, page.text
    assert 'data-testid="show-all"' in page.text
    assert "Show all (12)" in page.text or "Mostrar todos (12)" in page.text


def test_broadcasts_one_row_each_with_the_fate_of_their_messages(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        channel = fake_channel(db, tenant, provider.url)
        with at(f"{BEFORE} 08:00"):
            customers_write(db, channel, [f"+52155000050{n:02d}" for n in range(4)])
        with at(f"{BEFORE} 18:00"):
            earlier = draft(
                db, tenant, name="Ayer", audience="all", channel_id=channel.id, content={"default": {"text": "Hola"}}
            )
            sent = client.post(f"/api/v1/broadcasts/{earlier}/schedule", headers=tenant.headers, json={})
            assert sent.status_code == 200, sent.text
        draft(db, tenant, name="Borrador", audience="all", channel_id=channel.id, content={"default": {"text": "x"}})
        with at(f"{DAY} 10:00"):
            today = draft(
                db, tenant, name="=Oferta", audience="all", channel_id=channel.id, content={"default": {"text": "Hoy"}}
            )
            provider.script.append((400, {"error": "number not on the service"}))
            sent = client.post(f"/api/v1/broadcasts/{today}/schedule", headers=tenant.headers, json={})
            assert sent.status_code == 200, sent.text
        messages = sorted(broadcast_messages(db, today), key=lambda m: m.id)
        delivered = [m for m in messages if m.status == DeliveryStatus.SENT.value]
        assert len(messages) == 4
        assert len(delivered) == 3
        with db.transaction() as session:
            for message, status in ((delivered[0], DeliveryStatus.DELIVERED), (delivered[1], DeliveryStatus.READ)):
                stored = session.get(Message, message.id)
                assert stored is not None
                advance_message_status(session, stored, status, None)
        with at(f"{DAY} 11:00"):
            customers_write(db, channel, ["+5215500005000"], text="me interesa")
    body = report(client, tenant, "broadcasts", **_day())
    rows = _rows_by_id(body, "by_broadcast")
    assert list(rows) == [today]
    row = rows[today]
    assert row["broadcast"] == "=Oferta"
    assert row["started"] == f"{DAY} 10:00"
    assert row["status"] == "completed"
    assert [row[k] for k in ("recipients", "sent", "delivered", "read", "replied", "failed")] == [4, 3, 2, 1, 1, 1]
    assert row["link"] == f"/broadcasts/{today}"
    summary = _summary(body)
    assert (summary["broadcasts"]["count"], summary["broadcasts"]["previous_count"]) == (1, 1)
    assert (summary["recipients"]["count"], summary["recipients"]["previous_count"]) == (4, 4)
    assert summary["failed"]["count"] == 1
    series = {r[0][11:]: r[1:] for r in body["tables"]["series"]["rows"] if r[1]}
    assert series == {"10": [1, 4, 3, 2, 1, 1, 1]}
    # The channel filter applies; the others do not (broadcasts have no team or closing category).
    other = fake_channel(db, tenant, "http://127.0.0.1:9")
    assert report(client, tenant, "broadcasts", **_day(), channel_id=other.id)["tables"]["by_broadcast"]["rows"] == []
    by_team = report(client, tenant, "broadcasts", **_day(), source="incoming")
    assert by_team["filters"] == {}
    assert by_team["tables"] == body["tables"]
    # The CSV is the table, with the name made safe for a spreadsheet.
    csv_text = client.get("/api/v1/reports/broadcasts/by_broadcast.csv", headers=tenant.headers, params=_day()).text
    assert f"{today},'=Oferta,{DAY} 10:00,completed,4,3,2,1,1,1,/broadcasts/{today}" in csv_text
    # An agent sees the broadcasts they created: none.
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    own = client.get("/api/v1/reports/broadcasts", params=_day())
    assert own.status_code == 200, own.text
    assert own.json()["tables"]["by_broadcast"]["rows"] == []


def _reply_columns(row: dict[str, Any]) -> tuple[float | None, float | None]:
    return row["reply_time_median_seconds"], row["replies_per_conversation"]


def _near(found: float | None, expected: float) -> bool:
    return found is not None and abs(found - expected) <= DRIFT


TEN_TO_SEVEN = {
    "timezone": "America/Mexico_City",
    "week": {day: [{"start": "10:00", "end": "19:00"}] for day in WEEKDAYS},
}


def test_users_and_leaderboard_show_each_persons_reply_time_and_responses_per_conversation(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    """The day of work: the agent's replies answer after 4 min (09:00 to 09:04, the bot's reply
    does not stop the clock) and 10 min (11:05 to 11:15), both in one conversation; the owner's one
    reply after 2 min. With business hours from 10:00, the agent's first reply took no business
    time."""
    with at(f"{BEFORE} 08:00"), db.transaction() as session:
        do_set_business_hours(session, tenant.actor(), TEN_TO_SEVEN)
        team = do_create_team(session, tenant.actor(), "Soporte").id
    with fake_provider() as provider:
        shop = Shop(db, tenant, fake_channel(db, tenant, provider.url).id)
        _a_day_of_work(db, tenant, shop, team)
        other_channel = fake_channel(db, tenant, provider.url).id
    users = report(client, tenant, "users", **_day())
    assert users["tables"]["users"]["columns"][-2:] == ["reply_time_median_seconds", "replies_per_conversation"]
    rows = _rows_by_id(users, "users")
    # Two replies: the nearest-rank median is the smaller one.
    agent_median, agent_per = _reply_columns(rows[tenant.agent_id])
    assert _near(agent_median, 240)
    assert agent_per == 2.0
    owner_median, owner_per = _reply_columns(rows[tenant.owner_id])
    assert _near(owner_median, 120)
    assert owner_per == 1.0
    assert _reply_columns(rows[tenant.manager_id]) == (None, None)
    in_hours = _rows_by_id(report(client, tenant, "users", **_day(), business_hours="true"), "users")
    # Answered at 09:04 before the 10:00 opening: 0 business seconds; 600 s for the second reply.
    assert _reply_columns(in_hours[tenant.agent_id]) == (0.0, 2.0)
    assert _near(in_hours[tenant.owner_id]["reply_time_median_seconds"], 120)
    # The filters apply: the person, the channel, the team (the owner's reply was in no team).
    mine = _rows_by_id(report(client, tenant, "users", **_day(), user_id=tenant.agent_id), "users")
    assert list(mine) == [tenant.agent_id]
    assert _near(mine[tenant.agent_id]["reply_time_median_seconds"], 240)
    elsewhere = _rows_by_id(report(client, tenant, "users", **_day(), channel_id=other_channel), "users")
    assert all(_reply_columns(row) == (None, None) for row in elsewhere.values())
    in_team = _rows_by_id(report(client, tenant, "users", **_day(), team_id=team), "users")
    assert tenant.owner_id not in in_team
    assert in_team[tenant.agent_id]["replies_per_conversation"] == 2.0
    # The CSV has the same columns and numbers.
    csv_lines = client.get(
        "/api/v1/reports/users/users.csv", headers=tenant.headers, params={**_day(), "user_id": tenant.agent_id}
    ).text.splitlines()
    assert csv_lines[0].endswith(",reply_time_median_seconds,replies_per_conversation")
    assert csv_lines[1].endswith(",2.0")
    # The leaderboard shows them beside the ranked value, for people and in business hours.
    board = report(client, tenant, "leaderboard", **_day(), metric="messages_sent")
    columns = board["tables"]["leaderboard"]["columns"]
    ranked = {row[1]: dict(zip(columns, row, strict=True)) for row in board["tables"]["leaderboard"]["rows"]}
    assert ranked[tenant.agent_id]["value_count"] == 2
    assert _near(ranked[tenant.agent_id]["reply_time_median_seconds"], 240)
    assert ranked[tenant.agent_id]["replies_per_conversation"] == 2.0
    assert ranked[tenant.owner_id]["replies_per_conversation"] == 1.0
    assert _reply_columns(ranked[tenant.manager_id]) == (None, None)
    timed = report(client, tenant, "leaderboard", **_day(), metric="first_response", business_hours="true")
    fastest = {row[1]: row for row in timed["tables"]["leaderboard"]["rows"]}
    assert fastest[tenant.agent_id][6:] == [0.0, 2.0]
    # The page shows both columns, in the page's language.
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    for name in ("users", "leaderboard"):
        page = client.get(f"/reports/{name}", params=_day())
        assert page.status_code == 200, page.text
        assert "Reply time (median)" in page.text or "Tiempo de cada respuesta (mediana)" in page.text
        assert "Responses per conversation" in page.text or "Respuestas por conversación" in page.text
