"""Behind https: HSTS, and every cookie Secure, the one-minute flash cookie included; on every
deployment: a Permissions-Policy that turns off browser features the app does not use."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tertulia.app import create_app
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as


@pytest.fixture
def https_client(db: Database) -> Iterator[TestClient]:
    app = create_app(Settings(base_url="https://crm.example.com", api_rate_limit_per_minute=100_000), db)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        yield client


def _sign_out_cookies(client: TestClient, db: Database, tenant: Tenant) -> list[str]:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    response = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    return response.headers.get_list("set-cookie")


def test_https_deployment_sends_hsts_and_only_secure_cookies(
    https_client: TestClient, db: Database, tenant: Tenant
) -> None:
    login = https_client.get("/login")
    assert login.headers["strict-transport-security"] == "max-age=31536000"
    assert "camera=()" in login.headers["permissions-policy"]
    cookies = _sign_out_cookies(https_client, db, tenant)
    flash = [c for c in cookies if c.startswith("tertulia_flash=")]
    assert flash, cookies
    assert all("secure" in cookie.lower() for cookie in cookies)


def test_plain_http_deployment_has_no_hsts(client: TestClient, db: Database, tenant: Tenant) -> None:
    login = client.get("/login")
    assert "strict-transport-security" not in login.headers
    assert "camera=()" in login.headers["permissions-policy"]
    cookies = _sign_out_cookies(client, db, tenant)
    assert not any("secure" in cookie.lower() for cookie in cookies)
