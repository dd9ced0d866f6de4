import time
from collections.abc import Callable

from fastapi.testclient import TestClient

from tertulia.app import create_app
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.users.service import do_create_api_token, do_deactivate_member
from tertulia.users.teams import do_create_team, do_set_team_members
from tests.conftest import Tenant


def test_list_users(client: TestClient, db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]) -> None:
    make_tenant()  # another workspace's people never show up
    with db.transaction() as session:
        do_deactivate_member(session, tenant.actor(), tenant.agent_id)
    response = client.get("/api/v1/users", headers=tenant.headers)
    assert response.status_code == 200, response.text
    items = {item["id"]: item for item in response.json()["items"]}
    assert {i: (item["role"], item["active"]) for i, item in items.items()} == {
        tenant.owner_id: ("owner", True),
        tenant.manager_id: ("manager", True),
        tenant.agent_id: ("agent", False),
    }
    assert items[tenant.owner_id]["activity_status"] == "offline"
    assert "password_hash" not in items[tenant.owner_id]
    active = client.get("/api/v1/users?active=true", headers=tenant.headers).json()["items"]
    assert {item["id"] for item in active} == {tenant.owner_id, tenant.manager_id}
    inactive = client.get("/api/v1/users?active=false", headers=tenant.headers).json()["items"]
    assert [item["id"] for item in inactive] == [tenant.agent_id]


def test_list_teams(client: TestClient, db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]) -> None:
    other = make_tenant()
    with db.transaction() as session:
        team = do_create_team(session, tenant.actor(), "Soporte")
        do_set_team_members(session, tenant.actor(), team.id, [tenant.agent_id, tenant.owner_id])
        do_create_team(session, other.actor(), "Theirs")
    response = client.get("/api/v1/teams", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "items": [{"id": team.id, "name": "Soporte", "member_ids": sorted([tenant.agent_id, tenant.owner_id])}]
    }


def test_users_api_needs_a_token(client: TestClient, tenant: Tenant) -> None:
    for path in ("/api/v1/users", "/api/v1/teams"):
        missing = client.get(path)
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthorized"
        wrong = client.get(path, headers={"Authorization": "Bearer tt_nope"})
        assert wrong.status_code == 401


def test_token_over_its_rate_limit_gets_429(db: Database, tenant: Tenant) -> None:
    # A fixed one-minute window: do not start right before it rolls over.
    seconds_left = 60 - time.time() % 60
    if seconds_left < 3:
        time.sleep(seconds_left + 0.1)
    app = create_app(Settings(api_rate_limit_per_minute=3), db)
    with TestClient(app, raise_server_exceptions=False) as client:
        for _ in range(3):
            assert client.get("/api/v1/users", headers=tenant.headers).status_code == 200
        limited = client.get("/api/v1/teams", headers=tenant.headers)
        assert limited.status_code == 429
        retry_after = int(limited.headers["Retry-After"])
        assert 0 < retry_after <= 60
        assert limited.json() == {
            "error": {
                "code": "rate_limited",
                "message": "Rate limit of 3 requests a minute exceeded.",
                "details": {"retry_after": retry_after},
            }
        }
        # The limit is per token: another token of the same workspace is unaffected.
        with db.transaction() as session:
            fresh = do_create_api_token(session, tenant.workspace_id, "fresh").secret
        assert client.get("/api/v1/users", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
