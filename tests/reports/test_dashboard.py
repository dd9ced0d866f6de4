"""The Dashboard against a hand-built scenario, on both databases: the numbers, who sees what, the
getting-started checklist, and that one workspace never sees another's."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tertulia.broadcasts.models import Audience, Broadcast, BroadcastStatus, ChannelMode, OverLimit
from tertulia.channels.health import record_error
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.segments.service import do_create_segment
from tertulia.users.invitations import do_invite
from tertulia.users.models import ActivityStatus, Role, User
from tertulia.users.permissions import Actor
from tertulia.users.service import do_set_activity_status
from tertulia.workflows.models import Workflow, WorkflowStatus
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider
from tests.reports.support import Shop, at, feed, make_shop
from tests.web.helpers import sign_in_as

DAY = "2026-11-02"


def _board(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.get("/api/v1/dashboard", headers=headers or {})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _scenario(db: Database, tenant: Tenant, url: str) -> dict[str, int]:
    """At 10:00 local on DAY: five conversations opened today and one the day before.
    a: agent's, answered; b: agent's, waiting since 09:00; c: unassigned, waiting since 08:00;
    d: manager's, answered and closed today; e: answered and closed yesterday, reopened at 09:30:
    waiting again, its earlier reply was before the reopening; f: opened yesterday, unassigned, waiting."""
    shop = make_shop(db, tenant, url)
    with at("2026-11-01 18:00"):
        f = shop.customer_writes("+5215550000006")
        e = shop.customer_writes("+5215550000005")
        shop.reply(e, tenant.actor())
        shop.close(e)
    with at(f"{DAY} 08:00"):
        c = shop.customer_writes("+5215550000003")
    with at(f"{DAY} 08:30"):
        a = shop.customer_writes("+5215550000001")
        shop.assign(a, tenant.agent_id)
        shop.reply(a, tenant.actor(Role.AGENT))
        d = shop.customer_writes("+5215550000004")
        shop.assign(d, tenant.manager_id)
        shop.reply(d, tenant.actor(Role.MANAGER))
        shop.close(d)
    with at(f"{DAY} 09:00"):
        b = shop.customer_writes("+5215550000002")
        shop.assign(b, tenant.agent_id)
    with at(f"{DAY} 09:30"):
        shop.reopen(e)
    feed(db)
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f, "channel_id": shop.channel_id}


def test_numbers_for_a_manager_match_the_scenario(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter, make_tenant: Any
) -> None:
    with fake_provider() as provider:
        ids = _scenario(db, tenant, provider.url)
        with db.transaction() as session:
            manager = session.get(User, tenant.manager_id)
            assert manager is not None
            do_set_activity_status(session, manager, ActivityStatus.BUSY)
            session.add(
                Broadcast(
                    workspace_id=tenant.workspace_id,
                    name="Rebajas de invierno",
                    status=BroadcastStatus.SCHEDULED,
                    audience=Audience.ALL,
                    channel_mode=ChannelMode.LAST_INTERACTED,
                    over_limit=OverLimit.REFUSE,
                    scheduled_at=datetime(2026, 11, 5, 15, 0, tzinfo=UTC),
                )
            )
            record_error(session, ids["channel_id"], "token revoked", datetime(2026, 11, 2, 15, 50, tzinfo=UTC))
        # Another workspace, busy too, changes nothing here.
        other = make_tenant(timezone="America/Mexico_City")
        with at(f"{DAY} 09:45"):
            make_shop(db, other, provider.url, "Otra").customer_writes("+5215550000009")
        feed(db)

    with at(f"{DAY} 10:00"):
        board = _board(client, tenant.headers)
    assert board["scope"] == "workspace"
    assert board["timezone"] == "America/Mexico_City"
    assert board["open"] == 5  # a, b, c, e, f
    assert board["unassigned"] == 3  # c, e, f
    assert board["today"] == {"opened": 4, "closed": 1}  # a, b, c, d opened; d closed; e reopened is not an opening
    waiting = board["waiting"]
    assert waiting["count"] == 4  # b, c, e, f
    assert [w["conversation_id"] for w in waiting["oldest"]] == [ids["f"], ids["c"], ids["b"], ids["e"]]
    # f since 18:00 the day before, c since 08:00, b since 09:00, e since its reopening at 09:30
    # (the travelling clock moves on while the test runs, while a message is written as while the
    # board is read, so a wait can come out a little longer or shorter: a few seconds of slack).
    expected = [16 * 3600, 2 * 3600, 3600, 1800]
    got = [w["waiting_seconds"] for w in waiting["oldest"]]
    assert all(abs(g - e) <= 5 for g, e in zip(got, expected, strict=True)), got
    team = {person["user_id"]: person for person in board["team"]}
    assert set(team) == {tenant.owner_id, tenant.manager_id, tenant.agent_id}
    assert (team[tenant.agent_id]["open"], team[tenant.manager_id]["open"], team[tenant.owner_id]["open"]) == (2, 0, 0)
    assert team[tenant.manager_id]["status"] == "busy"
    assert [b["name"] for b in board["upcoming_broadcasts"]] == ["Rebajas de invierno"]
    assert [(c["channel_id"], c["error"]) for c in board["channels_in_error"]] == [(ids["channel_id"], "token revoked")]

    with at(f"{DAY} 10:00"):
        theirs = _board(client, other.headers)
    assert (theirs["open"], theirs["unassigned"], theirs["waiting"]["count"]) == (1, 1, 1)
    assert theirs["today"] == {"opened": 1, "closed": 0}
    assert theirs["channels_in_error"] == []
    assert theirs["upcoming_broadcasts"] == []
    assert {p["user_id"] for p in theirs["team"]}.isdisjoint(team)


def test_an_agent_sees_only_their_own_conversations(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        ids = _scenario(db, tenant, provider.url)
        shop = Shop(db, tenant, ids["channel_id"])
        with at(f"{DAY} 09:50"):
            shop.close(ids["a"])
        feed(db)
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    with at(f"{DAY} 10:00"):
        board = _board(client)
        page = client.get("/dashboard")
    assert board["scope"] == "own"
    assert board["open"] == 1  # b
    assert board["waiting"]["count"] == 1
    assert [w["conversation_id"] for w in board["waiting"]["oldest"]] == [ids["b"]]
    # As in the reports filtered on them: a closing counts for the assignee at the time, an
    # opening for the assignee when it opened (nobody, for conversations assigned afterwards).
    assert board["today"] == {"opened": 0, "closed": 1}
    for part in (
        "unassigned",
        "team",
        "upcoming_broadcasts",
        "channels_in_error",
        "workflows_in_error",
        "getting_started",
    ):
        assert board[part] is None
    assert page.status_code == 200
    assert 'data-testid="stat-unassigned"' not in page.text
    assert 'data-testid="team-list"' not in page.text
    assert f'href="/messages/{ids["b"]}"' in page.text
    assert f'href="/messages/{ids["c"]}"' not in page.text


def test_the_checklist_shows_what_is_left_and_disappears_once_done(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    def steps() -> dict[str, bool] | None:
        found = _board(client, tenant.headers)["getting_started"]
        return None if found is None else {s["step"]: s["done"] for s in found}

    # The tenant already has a manager and an agent: teammates are there.
    assert steps() == {
        "connect_channel": False,
        "invite_teammates": True,
        "answer_message": False,
        "create_segment": False,
    }
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        conversation = shop.customer_writes("+5215550000001")
        assert steps() == {
            "connect_channel": True,
            "invite_teammates": True,
            "answer_message": False,
            "create_segment": False,
        }
        shop.reply(conversation, tenant.actor())
    with db.transaction() as session:
        do_create_segment(
            session,
            tenant.actor(),
            "VIP",
            {"groups": [{"conditions": [{"category": "tag", "operator": "has_any_of", "value": ["vip"]}]}]},
        )
    assert steps() is None
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert 'data-testid="getting-started"' not in page.text


def test_a_new_workspace_alone_has_to_invite_and_an_invitation_counts(db: Database, client: TestClient) -> None:
    with db.transaction() as session:
        created = do_create_workspace_with_owner(session, "Sola", "sola@example.com", "owner-password")
        owner_id, ws = created.owner.id, created.workspace.id
    sign_in_as(client, db, owner_id, "owner-password")
    landing = client.get("/", follow_redirects=False)
    assert landing.headers["location"] == "/dashboard"
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert 'data-testid="step-invite_teammates" data-done="false"' in page.text
    assert 'hx-get="/dashboard/live"' in page.text
    with db.transaction() as session:
        owner = Actor(workspace_id=ws, kind="user", user_id=owner_id, role=Role.OWNER)
        do_invite(session, owner, "ana@example.com", Role.AGENT)
    live = client.get("/dashboard/live", headers={"HX-Request": "true"})
    assert live.status_code == 200
    assert 'id="dashboard-live"' in live.text
    assert 'data-testid="step-invite_teammates" data-done="true"' in live.text
    assert "<html" not in live.text


def test_the_dashboard_speaks_spanish(db: Database, tenant: Tenant, client: TestClient) -> None:
    with db.transaction() as session:
        owner = session.get(User, tenant.owner_id)
        assert owner is not None
        owner.language = "es"
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get("/dashboard")
    assert "Esperando una primera respuesta" in page.text
    assert "Primeros pasos" in page.text
    assert "Waiting for a first response" not in page.text


def test_published_workflows_that_failed_lately_are_listed(
    db: Database, tenant: Tenant, client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    other = make_tenant()
    now = utcnow()

    def workflow(workspace_id: int, name: str, status: str, failed_ago: timedelta | None) -> int:
        with db.transaction() as session:
            row = Workflow(
                workspace_id=workspace_id,
                name=name,
                status=status,
                last_error="HTTP request: 502 from the CRM" if failed_ago else None,
                last_error_at=now - failed_ago if failed_ago else None,
            )
            session.add(row)
            session.flush()
            return row.id

    failing = workflow(tenant.workspace_id, "Alta en el CRM", WorkflowStatus.PUBLISHED, timedelta(hours=2))
    workflow(tenant.workspace_id, "Fallo antiguo", WorkflowStatus.PUBLISHED, timedelta(days=8))
    workflow(tenant.workspace_id, "Parado", WorkflowStatus.STOPPED, timedelta(hours=1))
    workflow(tenant.workspace_id, "Sano", WorkflowStatus.PUBLISHED, None)
    workflow(other.workspace_id, "De otros", WorkflowStatus.PUBLISHED, timedelta(hours=1))
    board = _board(client, tenant.headers)
    assert [(w["workflow_id"], w["error"]) for w in board["workflows_in_error"]] == [
        (failing, "HTTP request: 502 from the CRM")
    ]
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get("/dashboard")
    assert f'href="/workflows/{failing}"' in page.text
    assert "Fallo antiguo" not in page.text
