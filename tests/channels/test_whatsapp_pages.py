"""Settings > Channels > a WhatsApp number, through the real pages against the local Graph API: what to
paste into Meta's dashboard, and "Test connection" showing the number's name, quality rating and
messaging limit, or Meta's error beside the button (Spanish and English)."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tertulia.channels.service import list_channels
from tertulia.kit.db import Database
from tests.channels import whatsapp_samples as wa
from tests.channels.test_whatsapp import _connected
from tests.channels.whatsapp_graph import FakeGraph, fake_graph
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with fake_graph() as running:
        yield running


def test_the_page_shows_what_to_paste_into_meta(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connected(db, tenant, api_base_url=graph.base_url, messages_per_second="120")
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get(f"/settings/channels/{channel.id}", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert f'/webhooks/{channel.key}" id="callback-url"' in page.text
    assert f'value="{channel.secrets["verify_token"]}"' in page.text
    assert channel.secrets["access_token"] not in page.text  # the token itself is never shown
    assert channel.secrets["app_secret"] not in page.text
    assert wa.PHONE_NUMBER_ID in page.text
    assert '<dd data-testid="messages-per-second">120</dd>' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert graph.received == []  # reading the page asks Meta nothing
    client.cookies.clear()
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.get(f"/settings/channels/{channel.id}").status_code == 403


def test_test_connection_shows_the_number_or_meta_s_error(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connected(db, tenant, api_base_url=graph.base_url)
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    url = f"/settings/channels/{channel.id}/whatsapp/test"
    english = client.post(url, data={"csrf_token": csrf}, headers={"Accept-Language": "en"})
    assert english.status_code == 200, english.text
    assert '<dd data-testid="verified-name">Tienda Tertulia</dd>' in english.text
    assert '<dd data-testid="display-phone-number">+1 555-078-3881</dd>' in english.text
    assert '<dd data-testid="quality-rating">High (green) · GREEN</dd>' in english.text
    assert "1,000 customers outside the service window in 24 hours · TIER_1K" in english.text
    (asked,) = graph.received
    assert asked.path == f"/v26.0/{wa.PHONE_NUMBER_ID}"
    assert asked.body["fields"] == ["verified_name", "display_phone_number", "quality_rating", "messaging_limit_tier"]

    graph.number["quality_rating"] = "YELLOW"
    spanish = client.post(url, data={"csrf_token": csrf}, headers={"Accept-Language": "es"})
    assert '<dd data-testid="quality-rating">Media (amarilla) · YELLOW</dd>' in spanish.text

    graph.fail_next("number", 400, wa.graph_error(100, "(#100) Object with ID '106540352242922' does not exist"))
    refused = client.post(url, data={"csrf_token": csrf}, headers={"Accept-Language": "es"})
    assert refused.status_code == 422
    assert "WhatsApp respondió: (#100) Object with ID &#39;106540352242922&#39; does not exist" in refused.text
    assert 'data-testid="whatsapp-number"' not in refused.text
    without_csrf = client.post(url, data={})
    assert without_csrf.status_code in (400, 403)


def test_a_manager_connects_a_number_from_settings(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    form = {
        "csrf_token": csrf,
        "phone_number_id": wa.PHONE_NUMBER_ID,
        "business_account_id": "12345x",
        "access_token": "EAAG-secret-token",
        "app_secret": wa.APP_SECRET,
        "messages_per_second": "2000",
        "api_base_url": graph.base_url,
    }
    spanish = {"Accept-Language": "es"}
    refused = client.post("/settings/channels/whatsapp", data=form, headers=spanish)
    assert refused.status_code == 422
    assert 'data-testid="connect-whatsapp"' in refused.text
    # Beside the field, in the manager's language.
    assert "debe ser el identificador numérico que muestra el panel de Meta" in refused.text
    assert "EAAG-secret-token" not in refused.text  # secrets are never put back into the page
    with db.transaction(write=False) as session:
        assert not [c for c in list_channels(session, tenant.workspace_id) if c.type == "whatsapp"]

    form["business_account_id"] = wa.BUSINESS_ACCOUNT_ID
    too_fast = client.post("/settings/channels/whatsapp", data=form, headers=spanish)
    assert too_fast.status_code == 422
    assert "debe ser un número entero del 1 al 1000" in too_fast.text
    assert f'value="{wa.BUSINESS_ACCOUNT_ID}"' in too_fast.text  # what was typed stays

    form |= {"messages_per_second": "", "name": ""}
    connected = client.post("/settings/channels/whatsapp", data=form, follow_redirects=False)
    assert connected.status_code == 303, connected.text
    with db.transaction(write=False) as session:
        (channel,) = [c for c in list_channels(session, tenant.workspace_id) if c.type == "whatsapp"]
        assert channel.name == "WhatsApp"
        assert channel.config["phone_number_id"] == wa.PHONE_NUMBER_ID
        assert channel.secrets["access_token"] == "EAAG-secret-token"
        assert channel.secrets["verify_token"]
    assert connected.headers["location"] == f"/settings/channels/{channel.id}"
    page = client.get(connected.headers["location"], headers={"Accept-Language": "en"})
    assert f'value="{channel.secrets["verify_token"]}"' in page.text
    assert "EAAG-secret-token" not in page.text
