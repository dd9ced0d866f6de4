"""The resolutions, assignments and contacts reports against hand-computed scenarios, through the
real inbox, contacts, imports, the event log and the consumer, on both databases. The workspace is in
America/Mexico_City (UTC-6, no DST)."""

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.contacts.import_jobs import do_create_import, do_start_import
from tertulia.contacts.import_models import ImportJob, ImportStatus
from tertulia.contacts.models import Contact
from tertulia.contacts.service import do_create_contact, do_delete_contact, do_merge_contacts
from tertulia.conversations import service as inbox
from tertulia.conversations.models import Conversation
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.users.teams import do_create_team
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider
from tests.reports.support import DRIFT, at, feed, make_shop, report, system
from tests.web.helpers import sign_in_as

DAY = "2026-11-02"  # a Monday
BEFORE = "2026-11-01"  # the previous period of a one-day range


def _day(day: str = DAY) -> dict[str, str]:
    return {"range": "custom", "from": day, "to": day}


def _summary(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    table = body["tables"]["summary"]
    return {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["rows"]}


def _rows(body: dict[str, Any], table: str) -> dict[Any, list[Any]]:
    return {row[0]: row[1:] for row in body["tables"][table]["rows"]}


def _close(db: Database, conversation_id: int, actor: Actor) -> None:
    with db.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        inbox.do_close(session, actor, conversation, category_id=None, summary=None)


def _assign(db: Database, conversation_id: int, actor: Actor, user_id: int | None, team_id: int | None = None) -> None:
    with db.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        inbox.do_assign(session, actor, conversation, user_id=user_id, team_id=team_id)


def _api(tenant: Tenant) -> Actor:
    return Actor(workspace_id=tenant.workspace_id, kind="api", token_id=1)


def test_resolutions_split_by_who_closed_with_times_and_the_previous_period(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        with at(f"{BEFORE} 15:00"):
            yesterday = shop.customer_writes("+5215550001000")
        with at(f"{BEFORE} 15:20"):
            shop.close(yesterday)  # the previous period: one closing by a person, 20 min
        with at(f"{DAY} 09:00"):
            by_person = shop.customer_writes("+5215550001001")
        with at(f"{DAY} 09:10"):
            shop.assign(by_person, tenant.agent_id)
        with at(f"{DAY} 10:00"):
            shop.close(by_person)  # a person: 1 h
        with at(f"{DAY} 11:00"):
            by_bot = shop.customer_writes("+5215550001002")
        with at(f"{DAY} 11:05"):
            _close(db, by_bot, system(tenant, "bot"))  # the bot: 5 min
        with at(f"{DAY} 12:00"):
            by_workflow = shop.customer_writes("+5215550001003")
        with at(f"{DAY} 14:00"):
            _close(db, by_workflow, system(tenant, "workflow"))  # a workflow: 2 h
        with at(f"{DAY} 23:30"):
            still_open = shop.customer_writes("+5215550001004")
        with at("2026-11-03 00:30"):
            shop.close(still_open)  # the next day: not in this range
        feed(db)
    body = report(client, tenant, "resolutions", **_day())
    summary = _summary(body)
    assert summary["closed"]["count"] == 3
    assert summary["closed"]["previous_count"] == 1
    assert summary["closed"]["change_percent"] == 200.0
    assert (
        summary["closed_by_person"]["count"],
        summary["closed_by_bot"]["count"],
        summary["closed_by_other"]["count"],
    ) == (1, 1, 1)
    assert summary["closed_by_person"]["previous_count"] == 1
    assert summary["closed_by_bot"]["previous_count"] == 0
    resolution = summary["resolution"]
    assert resolution["count"] == 3
    assert abs(resolution["average_seconds"] - (3600 + 300 + 7200) / 3) <= DRIFT
    assert abs(resolution["median_seconds"] - 3600) <= DRIFT
    assert abs(resolution["p90_seconds"] - 7200) <= DRIFT
    assert abs(resolution["previous_median_seconds"] - 1200) <= DRIFT
    assert summary["assignment"]["count"] == 1
    assert abs(summary["assignment"]["median_seconds"] - 600) <= DRIFT
    closers = _rows(body, "by_closer")
    assert list(closers) == ["user", "api", "workflow", "bot", "system", "auto-close"]
    assert closers["user"][0] == 1
    assert abs(closers["user"][2] - 3600) <= DRIFT
    assert closers["bot"][0] == 1
    assert abs(closers["bot"][2] - 300) <= DRIFT
    assert closers["workflow"][0] == 1
    assert closers["api"] == [0, None, None, None]
    # A one-day range by the hour: the closings at 10:00, 11:05 and 14:00 local.
    series = {row[0][11:]: row[1:5] for row in body["tables"]["series"]["rows"] if row[1]}
    assert series == {"10": [1, 1, 0, 0], "11": [1, 0, 1, 0], "14": [1, 0, 0, 1]}
    # The conversations report still counts every closing, whoever closed it.
    assert _summary(report(client, tenant, "conversations", **_day()))["closed"]["count"] == 3


def test_assignments_by_source_person_and_team(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with db.transaction() as session:
        team = do_create_team(session, tenant.actor(), "Soporte").id
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        with at(f"{DAY} 09:00"):
            first = shop.customer_writes("+5215550002001")
        with at(f"{DAY} 09:05"):
            _assign(db, first, tenant.actor(), tenant.agent_id)  # a person assigns the agent
        with at(f"{DAY} 09:30"):
            _assign(db, first, system(tenant, "workflow"), tenant.manager_id, team)  # a workflow moves it
        with at(f"{DAY} 09:40"):
            _assign(db, first, tenant.actor(), tenant.manager_id, None)  # the team alone changes: not counted
        with at(f"{DAY} 10:00"):
            _assign(db, first, _api(tenant), None)  # the API takes it from the manager
        with at(f"{DAY} 11:00"):
            second = shop.customer_writes("+5215550002002")
        with at(f"{DAY} 11:01"):
            _assign(db, second, system(tenant, "bot"), None, team)  # to a team only: not a person
        with at(f"{DAY} 11:02"):
            _assign(db, second, system(tenant, "bot"), tenant.agent_id, team)
        feed(db)
    body = report(client, tenant, "assignments", **_day())
    summary = _summary(body)
    assert (summary["assigned"]["count"], summary["unassigned"]["count"]) == (3, 1)
    # The first assignment of each conversation: 5 min and 2 min after the opening.
    assert summary["assignment"]["count"] == 2
    assert abs(summary["assignment"]["average_seconds"] - 210) <= DRIFT
    assert _rows(body, "by_source") == {
        "user": [1, 0],
        "workflow": [1, 0],
        "api": [0, 1],
        "bot": [1, 0],
        "system": [0, 0],
    }
    by_user = _rows(body, "by_user")
    assert by_user[tenant.agent_id][1:] == [2, 0]
    assert by_user[tenant.manager_id][1:] == [1, 1]
    assert list(by_user) == [tenant.agent_id, tenant.manager_id]  # the most assignments first
    by_team = _rows(body, "by_team")
    # The workflow's assignment and the bot's were under the team; the unassignment took the
    # conversation from the manager when it had no team any more.
    assert by_team[team] == ["Soporte", 2, 0]
    assert by_team[None] == [None, 1, 1]
    filtered = report(client, tenant, "assignments", **_day(), team_id=team)
    assert _summary(filtered)["assigned"]["count"] == 2
    # An agent sees their own assignments only.
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    own = client.get("/api/v1/reports/assignments", params=_day())
    assert own.status_code == 200, own.text
    assert _summary(own.json())["assigned"]["count"] == 2
    assert _summary(own.json())["unassigned"]["count"] == 0
    other = client.get("/api/v1/reports/assignments", params={**_day(), "user_id": tenant.manager_id})
    assert other.status_code == 422


def test_contacts_added_by_source_deleted_and_merged(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        with at(f"{BEFORE} 12:00"), db.transaction() as session:
            do_create_contact(session, tenant.actor(), {"first_name": "Ayer"})
        with at(f"{DAY} 09:00"), db.transaction() as session:
            by_hand = do_create_contact(session, tenant.actor(Role.AGENT), {"first_name": "Ana"}).id
        with at(f"{DAY} 09:30"):
            response = client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": "Beto"})
            assert response.status_code == 201, response.text
        with at(f"{DAY} 10:00"):
            shop.customer_writes("+5215550003001")
        with at(f"{DAY} 11:00"), db.transaction() as session:
            job = do_create_import(
                session,
                tenant.actor(),
                "nuevos.csv",
                b"first_name,email\nCarla,carla@example.com\nDiego,d@example.com\n",
            )
            do_start_import(
                session, tenant.actor(), job, {"first_name": "first_name", "email": "email"}, update_existing=False
            )
        with db.transaction(write=False) as session:
            finished = session.scalars(select(ImportJob)).one()
            assert (finished.status, finished.created_count) == (ImportStatus.DONE, 2)
        with at(f"{DAY} 12:00"), db.transaction() as session:
            carla = session.scalars(select(Contact).where(Contact.first_name == "Carla")).one()
            diego = session.scalars(select(Contact).where(Contact.first_name == "Diego")).one()
            do_merge_contacts(session, tenant.actor(), carla, diego)
        with at(f"{DAY} 13:00"), db.transaction() as session:
            contact = session.get(Contact, by_hand)
            assert contact is not None
            do_delete_contact(session, tenant.actor(), contact)
        feed(db)
    body = report(client, tenant, "contacts", **_day())
    summary = _summary(body)
    assert summary["contacts_added"]["count"] == 5  # by hand, the API, a customer, two imported
    assert summary["contacts_added"]["previous_count"] == 1
    assert summary["contacts_deleted"]["count"] == 1
    assert summary["contacts_merged"]["count"] == 1
    assert _rows(body, "added_by_source") == {"manual": [1], "import": [2], "api": [1], "incoming": [1], "other": [0]}
    series = {row[0][11:]: row[1:] for row in body["tables"]["series"]["rows"] if any(row[1:])}
    assert series == {"09": [2, 0, 0], "10": [1, 0, 0], "11": [2, 0, 0], "12": [0, 0, 1], "13": [0, 1, 0]}
    # Filters that name conversations do not apply; the team member filter does.
    by_channel = report(client, tenant, "contacts", **_day(), channel_id=shop.channel_id)
    assert by_channel["filters"] == {}
    assert by_channel["tables"] == body["tables"]
    by_agent = report(client, tenant, "contacts", **_day(), user_id=tenant.agent_id)
    assert _summary(by_agent)["contacts_added"]["count"] == 1
    by_owner = report(client, tenant, "contacts", **_day(), user_id=tenant.owner_id)
    assert _rows(by_owner, "added_by_source")["import"] == [2]
    assert _summary(by_owner)["contacts_deleted"]["count"] == 1
