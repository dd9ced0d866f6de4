"""Branches on the run's conversation and its assignee's status against the app's services, on both
databases: real runs in one batch take the path their conversation calls for (closed, on another
channel, an online or an away assignee), the batch reads the conversations in one query, a step
that changes the conversation is seen by the branch after it, the simulator shows the conversation
it read, and saving refuses unknown channels, teams and people and bad operators by path."""

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from tertulia.channels.models import Channel
from tertulia.contacts import service as contacts_service
from tertulia.contacts.models import Contact
from tertulia.conversations import repository as conversations_repo
from tertulia.conversations import service as conversations_service
from tertulia.kit.db import Database
from tertulia.users.teams import do_create_team, do_set_team_members
from tertulia.workflows import service
from tertulia.workflows.simulate import simulate
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as
from tests.workflows.support import (
    channel_on_fake,
    close_conversation,
    customer_writes,
    feed,
    open_conversation,
    publish,
    runs,
    set_status,
    tags_of,
)

pytestmark = pytest.mark.usefixtures("no_background_work")


def tag(name: str) -> dict[str, Any]:
    return {"id": name, "type": "add_tags", "config": {"tags": [name]}}


def branch(name: str, condition: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "conditions": {"groups": [{"conditions": [condition]}]}, "next": name}


def conv(field: str, operator: str, value: Any) -> dict[str, Any]:
    return {"category": "conversation", "field": field, "operator": operator, "value": value}


def status_is(status: str) -> dict[str, Any]:
    return {"category": "assignee_status", "operator": "is", "value": status}


def assign(db: Database, tenant: Tenant, contact_id: int, user_id: int) -> None:
    with db.transaction() as session:
        conversation = conversations_repo.open_conversation(session, tenant.workspace_id, contact_id)
        assert conversation is not None
        conversations_service.do_assign(session, tenant.actor(), conversation, user_id=user_id, team_id=None)


def add_tag(db: Database, tenant: Tenant, contact_ids: list[int], name: str) -> None:
    with db.transaction() as session:
        for contact_id in contact_ids:
            contact = session.get(Contact, contact_id)
            assert contact is not None
            contacts_service.do_add_tags(session, tenant.actor(), contact, [name])


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """Every SQL statement run meanwhile."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_a_batch_of_runs_branches_on_status_channel_and_assignee_status(
    db: Database, tenant: Tenant, channel: Channel
) -> None:
    with channel_on_fake(db, tenant) as (other, _provider):
        set_status(db, tenant.manager_id, "online")
        set_status(db, tenant.agent_id, "away")
        workflow_id = publish(
            db,
            tenant,
            {
                "trigger": {"type": "tag_added", "config": {"tags": ["go"]}},
                "steps": [
                    {
                        "id": "b",
                        "type": "branch",
                        "config": {
                            "branches": [
                                branch("closed", conv("status", "is", "closed")),
                                branch("on-other", conv("channel", "is_any_of", [other.id])),
                                branch("online", status_is("online")),
                            ]
                        },
                        "next": "else",
                    },
                    tag("closed"),
                    tag("on-other"),
                    tag("online"),
                    tag("else"),
                ],
            },
        )
        away = customer_writes(db, channel, "c-away", "hola")
        closed = customer_writes(db, channel, "c-closed", "hola")
        elsewhere = customer_writes(db, other, "c-other", "hola")
        online = customer_writes(db, channel, "c-online", "hola")
        never = customer_writes(db, channel, "c-unassigned", "hola")
        assign(db, tenant, away, tenant.agent_id)
        assign(db, tenant, online, tenant.manager_id)
        assign(db, tenant, closed, tenant.manager_id)  # online, but the conversation is closed first
        close_conversation(db, tenant, closed)
        contacts = [away, closed, elsewhere, online, never]
        add_tag(db, tenant, contacts, "go")
        with statements(db) as seen:
            feed(db)
        facts_queries = [s for s in seen if "row_number" in s.lower()]
        assert len(facts_queries) == 1, facts_queries  # one query for the batch's five runs
        assert [run.status for run in runs(db, workflow_id)] == ["finished"] * 5
        assert tags_of(db, away) == ["else", "go"]
        assert tags_of(db, closed) == ["closed", "go"]
        assert tags_of(db, elsewhere) == ["go", "on-other"]
        assert tags_of(db, online) == ["go", "online"]
        assert tags_of(db, never) == ["else", "go"]

        # The agent comes online: the same flow now takes the online branch for the first contact.
        set_status(db, tenant.agent_id, "online")
        with db.transaction() as session:
            contact = session.get(Contact, away)
            assert contact is not None
            contacts_service.do_remove_tags(session, tenant.actor(), contact, ["go", "else"])
        add_tag(db, tenant, [away], "go")
        feed(db)
        assert tags_of(db, away) == ["go", "online"]


def test_a_branch_sees_what_a_step_before_it_did_to_the_conversation(
    db: Database, tenant: Tenant, channel: Channel
) -> None:
    with db.transaction() as session:
        team_id = do_create_team(session, tenant.actor(), "Ventas").id
        do_set_team_members(session, tenant.actor(), team_id, [tenant.manager_id])
    is_open = conv("status", "is", "open")
    workflow_id = publish(
        db,
        tenant,
        {
            "trigger": {"type": "conversation_opened", "config": {}},
            "steps": [
                {
                    "id": "b1",
                    "type": "branch",
                    "config": {"branches": [branch("open-1", is_open)]},
                    "next": "closed-now",
                },
                {"id": "open-1", "type": "assign", "config": {"to": "team", "team_id": team_id}, "next": "b2"},
                {
                    "id": "b2",
                    "type": "branch",
                    "config": {"branches": [branch("in-team", conv("team", "is", team_id))]},
                },
                {"id": "in-team", "type": "close_conversation", "next": "b3"},
                {
                    "id": "b3",
                    "type": "branch",
                    "config": {"branches": [branch("still-open", is_open)]},
                    "next": "closed-now",
                },
                tag("still-open"),
                tag("closed-now"),
            ],
        },
    )
    contact_id = customer_writes(db, channel, "steps", "hola")
    feed(db)
    (run,) = runs(db, workflow_id)
    # Open at first; in the team once the assign step put it there; closed once the close step did.
    assert run.status == "finished", run.last_error
    assert run.state["path"] == ["b1", "open-1", "b2", "in-team", "b3", "closed-now"]
    assert tags_of(db, contact_id) == ["closed-now"]
    assert open_conversation(db, contact_id) is None


def test_the_simulator_shows_the_conversation_its_branches_read(db: Database, tenant: Tenant, channel: Channel) -> None:
    definition = {
        "trigger": {"type": "manual"},
        "steps": [
            {
                "id": "b",
                "type": "branch",
                "config": {
                    "branches": [
                        branch("mine", conv("assignee", "is", tenant.agent_id)),
                        branch("closed", conv("status", "is", "closed")),
                    ]
                },
                "next": "none",
            },
            tag("mine"),
            tag("closed"),
            tag("none"),
        ],
    }
    assigned = customer_writes(db, channel, "s-assigned", "hola")
    assign(db, tenant, assigned, tenant.agent_id)
    set_status(db, tenant.agent_id, "busy")
    closed = customer_writes(db, channel, "s-closed", "hola")
    close_conversation(db, tenant, closed)
    with db.transaction() as session:
        contact = contacts_service.do_create_contact(session, tenant.actor(), {"first_name": "Sin"})
        nobody = contact.id
    with db.transaction(write=False) as session:
        checked = service.check_definition(session, tenant.workspace_id, definition)
        results = {}
        for contact_id in (assigned, closed, nobody):
            found = session.get(Contact, contact_id)
            assert found is not None
            results[contact_id] = simulate(session, checked, found)
    assert results[assigned].path == ["b", "mine"]
    assert results[assigned].conversation == {
        "status": "open",
        "channel_id": channel.id,
        "channel_type": "fakehttp",
        "team_id": None,
        "assignee_id": tenant.agent_id,
        "assignee_status": "busy",
        "opening_source": "contact",
    }
    assert results[closed].path == ["b", "closed"]
    assert (results[closed].conversation or {}).get("status") == "closed"
    assert results[nobody].path == ["b", "none"]
    assert results[nobody].conversation is None


def test_saving_refuses_unknown_rows_and_bad_operators_by_path(
    client: TestClient, db: Database, tenant: Tenant, make_tenant: Any, channel: Channel
) -> None:
    stranger = make_tenant()
    with db.transaction() as session:
        foreign_team = do_create_team(session, stranger.actor(), "Ajeno").id
    conditions = [
        conv("channel", "is", channel.id + 1000),
        conv("team", "is_any_of", [foreign_team]),
        conv("assignee", "is", stranger.owner_id),
        conv("status", "contains", "op"),
        {"category": "assignee_status", "operator": "is", "value": "sleeping"},
    ]
    definition = {
        "trigger": {"type": "manual"},
        "steps": [
            {
                "id": "b",
                "type": "branch",
                "config": {"branches": [{"name": "x", "conditions": {"groups": [{"conditions": conditions}]}}]},
            }
        ],
    }
    response = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": "Bad", "definition": definition})
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    where = "steps[0].config.branches[0].conditions.groups[0].conditions"
    assert details == {
        f"{where}[0].value": f"no channel {channel.id + 1000} in this workspace",
        f"{where}[1].value[0]": f"no team {foreign_team} in this workspace",
        f"{where}[2].value": f"no member {stranger.owner_id} in this workspace",
        f"{where}[3].operator": "not valid here; use one of: is, is_not",
        f"{where}[4].value": "must be one of: online, away, busy, offline",
    }
    good = {**conditions[0], "value": channel.id}
    definition["steps"][0]["config"]["branches"][0]["conditions"] = {"groups": [{"conditions": [good]}]}  # type: ignore[index]
    response = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": "Good", "definition": definition})
    assert response.status_code == 201, response.text


def test_the_api_and_the_page_show_the_simulated_conversation(
    client: TestClient, db: Database, tenant: Tenant, channel: Channel
) -> None:
    definition = {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "b", "type": "branch", "config": {"branches": [branch("open", conv("status", "is", "open"))]}},
            tag("open"),
        ],
    }
    created = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": "Sim", "definition": definition})
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    writer = customer_writes(db, channel, "sim-api", "hola")
    simulated = client.post(
        f"/api/v1/workflows/{workflow_id}/simulate", headers=tenant.headers, json={"contact": f"id:{writer}"}
    )
    assert simulated.status_code == 200, simulated.text
    assert simulated.json()["path"] == ["b", "open"]
    assert simulated.json()["conversation"] == {
        "status": "open",
        "channel_id": channel.id,
        "channel_type": "fakehttp",
        "team_id": None,
        "assignee_id": None,
        "assignee_status": None,
        "opening_source": "contact",
    }
    with db.transaction() as session:
        silent = contacts_service.do_create_contact(session, tenant.actor(), {"first_name": "Sin"}).id
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    client.post("/language", data={"csrf_token": token, "language": "es"})
    page = client.post(f"/workflows/{workflow_id}/simulate", data={"csrf_token": token, "contact": f"id:{silent}"})
    assert page.status_code == 200
    shown = re.search(r'data-testid="simulation-conversation">(.*?)</p>', page.text, re.S)
    assert shown is not None
    assert "ninguna: el contacto no tiene conversación" in shown.group(1)
    page = client.post(f"/workflows/{workflow_id}/simulate", data={"csrf_token": token, "contact": f"id:{writer}"})
    shown = re.search(r'data-testid="simulation-conversation">(.*?)</p>', page.text, re.S)
    assert shown is not None
    assert "La conversación que leen sus ramas" in shown.group(1)
    assert '"status": "open"' in html.unescape(shown.group(1))
    assert '"opening_source": "contact"' in html.unescape(shown.group(1))
