"""Settings > Channels for Messenger, through the real pages against the local fake Graph API:
connecting a Page (Meta's refusal beside the field, in Spanish and English), the verify token shown
once, the chat menu (pushed to Meta, its answer shown, errors beside the field)."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tertulia.channels.adapters.messenger import PROFILES
from tertulia.kit.db import Database
from tests.channels import meta_samples as meta
from tests.channels.fake_meta_graph import FakeGraph, fake_graph, graph_error
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    PROFILES.clear()
    with fake_graph(meta.PAGE_TOKEN) as server:
        server.pages[meta.PAGE_ID] = "Café La Tertulia"
        yield server


def _form(graph: FakeGraph, csrf: str, token: str = meta.PAGE_TOKEN) -> dict[str, str]:
    return {
        "page_id": meta.PAGE_ID,
        "page_access_token": token,
        "app_secret": meta.APP_SECRET,
        "name": "",
        "api_base_url": graph.url,
        "csrf_token": csrf,
    }


def test_connecting_a_page_shows_the_verify_token_once(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    assert 'data-testid="connect-messenger"' in client.get("/settings/channels").text
    refused = client.post(
        "/settings/channels/messenger", data=_form(graph, csrf, "EAA-wrong"), headers={"Accept-Language": "es"}
    )
    assert refused.status_code == 422
    assert "Messenger rechazó el token" in refused.text
    assert "Invalid OAuth access token" in refused.text
    assert "EAA-wrong" not in refused.text  # a secret is never put back into the page
    done = client.post("/settings/channels/messenger", data=_form(graph, csrf))
    assert done.status_code == 200
    assert done.headers["cache-control"] == "no-store"
    assert "Café La Tertulia" in done.text
    assert 'data-testid="verify-token"' in done.text
    assert "/webhooks/" in done.text
    assert meta.PAGE_TOKEN not in done.text
    channel_url = done.text.split('action="/settings/channels/')[1].split("/")[0]
    again = client.get(f"/settings/channels/{channel_url}")
    assert again.status_code == 200
    assert 'data-testid="verify-token"' not in again.text  # shown once
    assert (
        'data-testid="verify-token"'
        in client.post(f"/settings/channels/{channel_url}/verify-token", data={"csrf_token": csrf}).text
    )


def test_the_persistent_menu_is_pushed_and_meta_s_answer_shown(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    done = client.post("/settings/channels/messenger", data=_form(graph, csrf))
    channel_id = done.text.split('action="/settings/channels/')[1].split("/")[0]
    page = client.get(f"/settings/channels/{channel_id}/menu")
    assert page.status_code == 200
    assert "Ver precios | PRICES" in page.text  # the placeholder shows the format
    saved = client.post(
        f"/settings/channels/{channel_id}/menu",
        data={"menu": "Ver precios | PRICES\nNuestra web | https://cafe.example", "csrf_token": csrf},
        headers={"Accept-Language": "es"},
    )
    assert saved.status_code == 200
    assert "Messenger aceptó el menú" in saved.text
    assert "success" in saved.text
    assert graph.messenger_profile["persistent_menu"][0]["call_to_actions"][1] == {
        "type": "web_url",
        "title": "Nuestra web",
        "url": "https://cafe.example",
    }
    too_long = client.post(
        f"/settings/channels/{channel_id}/menu",
        data={"menu": f"{'x' * 31} | LONG", "csrf_token": csrf},
        headers={"Accept-Language": "en"},
    )
    assert too_long.status_code == 422
    assert "Line 1" in too_long.text
    graph.fail_next("/messenger_profile", 400, graph_error(100, "(#100) Invalid keys"))
    refused = client.post(
        f"/settings/channels/{channel_id}/menu",
        data={"menu": "Otra | OTHER", "csrf_token": csrf},
        headers={"Accept-Language": "en"},
    )
    assert refused.status_code == 422
    assert "Messenger refused the menu" in refused.text
    assert "Invalid keys" in refused.text


def test_connecting_an_instagram_account_and_its_ice_breakers(client: TestClient, db: Database, tenant: Tenant) -> None:
    PROFILES.clear()
    with fake_graph("IGQVJ-page-test") as graph:
        graph.accounts[meta.IG_ID] = "cafe.tertulia"
        csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
        assert 'data-testid="connect-instagram"' in client.get("/settings/channels").text
        form = {"login": "instagram", "app_secret": meta.APP_SECRET, "api_base_url": graph.url, "csrf_token": csrf}
        missing = client.post("/settings/channels/instagram", data=form, headers={"Accept-Language": "en"})
        assert missing.status_code == 422
        assert "is required" in missing.text
        done = client.post("/settings/channels/instagram", data={**form, "access_token": "IGQVJ-page-test"})
        assert done.status_code == 200
        assert "@cafe.tertulia" in done.text
        assert 'data-testid="verify-token"' in done.text
        channel_id = done.text.split('action="/settings/channels/')[1].split("/")[0]
        saved = client.post(
            f"/settings/channels/{channel_id}/menu",
            data={"menu": "¿Horarios? | HOURS\n¿Envíos? | SHIPPING", "csrf_token": csrf},
            headers={"Accept-Language": "es"},
        )
        assert saved.status_code == 200
        assert "Instagram aceptó el menú" in saved.text
        assert [a["question"] for a in graph.messenger_profile["ice_breakers"][0]["call_to_actions"]] == [
            "¿Horarios?",
            "¿Envíos?",
        ]
        link = client.post(
            f"/settings/channels/{channel_id}/menu",
            data={"menu": "Web | https://cafe.example", "csrf_token": csrf},
            headers={"Accept-Language": "en"},
        )
        assert link.status_code == 422
        assert "this menu takes no links" in link.text
