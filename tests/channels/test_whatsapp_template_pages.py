"""Settings > Channels > a WhatsApp number's templates, through the real pages: the synced templates
with their status, category, quality and text; the number's quality and messaging limit from Meta's
webhooks; the "Sync templates" button (managers only), in Spanish and English."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tertulia.kit.db import Database
from tests.channels import whatsapp_samples as wa
from tests.channels import whatsapp_template_samples as samples
from tests.channels.fake_graph import TOKEN, FakeGraph, fake_graph
from tests.channels.test_whatsapp_templates import _post
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with fake_graph(samples.TEMPLATES) as server:
        yield server


def _connect(client: TestClient, csrf: str, graph: FakeGraph) -> dict[str, object]:
    body = {
        "type": "whatsapp",
        "name": "Ventas",
        "config": {
            "phone_number_id": wa.PHONE_NUMBER_ID,
            "business_account_id": wa.BUSINESS_ACCOUNT_ID,
            "api_base_url": graph.url,
        },
        "secrets": {"access_token": TOKEN, "app_secret": wa.APP_SECRET},
    }
    created = client.post("/api/v1/channels", json=body, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.text
    return dict(created.json())


def test_the_templates_page_in_both_languages(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    channel = _connect(client, csrf, graph)
    _post(client, str(channel["key"]), samples.STATUS_REJECTED)
    _post(client, str(channel["key"]), samples.QUALITY_FLAGGED)
    listing = client.get("/settings/channels")
    assert f'href="/settings/channels/{channel["id"]}/templates"' in listing.text
    english = client.get(f"/settings/channels/{channel['id']}/templates", headers={"Accept-Language": "en"})
    assert english.status_code == 200
    page = english.text
    assert page.count('data-testid="template-row"') == len(samples.TEMPLATES)
    assert "Thank you, {{first_name}}! Your order number is {{order_number}}." in page
    assert "Rejected" in page
    assert "INVALID_FORMAT · Your template has parameters placed next to each other" in page
    assert "High quality" in page  # seguimiento_pedido's quality score
    assert "Flagged: quality is low, the messaging limit may go down" in page
    assert "2,000 customers a day outside the 24-hour window" in page
    spanish = client.get(f"/settings/channels/{channel['id']}/templates", headers={"Accept-Language": "es"}).text
    assert "Sincronizar plantillas" in spanish
    assert "Rechazada" in spanish
    assert "Aprobada" in spanish
    assert "Utilidad" in spanish
    assert "Marcado: la calidad es baja" in spanish
    assert "2.000 clientes al día fuera de la ventana de 24 horas" in spanish


def test_sync_button_reads_the_templates_again(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    channel = _connect(client, csrf, graph)
    graph.templates = [samples.WELCOME]
    synced = client.post(
        f"/settings/channels/{channel['id']}/templates/sync", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert synced.status_code == 303
    page = client.get(synced.headers["location"], headers={"Accept-Language": "en"}).text
    assert "Reading the templates from WhatsApp" in page
    assert page.count('data-testid="template-row"') == 1
    graph.fail_templates = (401, wa.graph_error(190, "Error validating access token"))
    client.post(f"/settings/channels/{channel['id']}/templates/sync", data={"csrf_token": csrf})
    page = client.get(f"/settings/channels/{channel['id']}/templates", headers={"Accept-Language": "es"}).text
    assert "No se pudieron pedir las plantillas a WhatsApp: (#190) Error validating access token" in page
    client.post(f"/settings/channels/{channel['id']}/disconnect", data={"csrf_token": csrf})
    refused = client.post(
        f"/settings/channels/{channel['id']}/templates/sync",
        data={"csrf_token": csrf},
        headers={"Accept-Language": "es"},
    )
    assert refused.status_code == 422
    assert "El canal está desconectado: vuelve a conectarlo para leer sus plantillas." in refused.text


def test_agents_cannot_open_the_templates_page(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    channel = _connect(client, csrf, graph)
    client.cookies.clear()
    agent_csrf = sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.get(f"/settings/channels/{channel['id']}/templates").status_code == 403
    refused = client.post(f"/settings/channels/{channel['id']}/templates/sync", data={"csrf_token": agent_csrf})
    assert refused.status_code == 403
