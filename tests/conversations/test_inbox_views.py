"""The Messages pages, the widget script and Settings > Channels, through the real app (no browser)."""

import json
import re

import pytest
from fastapi.testclient import TestClient

from tertulia.channels.models import Channel
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.users.models import Role
from tests.conftest import Tenant
from tests.conversations.support import SHOP, make_webchat, new_visitor, sign_in

pytestmark = pytest.mark.usefixtures("immediate_queue")


def _inbox_data(html: str) -> dict[str, object]:
    found = re.search(r'<script type="application/json" id="inbox-data">(.*?)</script>', html, re.S)
    assert found is not None
    data: dict[str, object] = json.loads(found.group(1))
    return data


def test_inbox_page_lists_people_and_categories_and_escapes_them(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    owner = sign_in(db, tenant, Role.OWNER)
    made = client.post("/api/v1/closing-categories", headers=owner.headers, json={"name": "</script><b>Sold</b>"})
    assert made.status_code == 201, made.text
    manager = sign_in(db, tenant, Role.MANAGER)
    response = client.get("/messages", headers={"Cookie": manager.headers["Cookie"]})
    assert response.status_code == 200
    assert "</script><b>" not in response.text
    data = _inbox_data(response.text)
    assert data["user_id"] == manager.user_id
    assert data["see_all"] is True
    assert [c["name"] for c in data["categories"]] == ["</script><b>Sold</b>"]  # type: ignore[attr-defined]
    assert "/static/js/inbox.js?v=" in response.text
    assert 'aria-current="page"' in response.text


def test_agent_is_offered_only_herself_to_assign(client: TestClient, db: Database, tenant: Tenant) -> None:
    agent = sign_in(db, tenant, Role.AGENT)
    data = _inbox_data(client.get("/messages", headers={"Cookie": agent.headers["Cookie"]}).text)
    assert [m["id"] for m in data["members"]] == [agent.user_id]  # type: ignore[attr-defined]
    assert data["see_all"] is False


def test_conversation_link_and_contact_panel(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    visitor = new_visitor(client, channel, name="Ana <img src=x>", email="ana@example.com")
    visitor.say("hola")
    conversation_id = _only_conversation(client, tenant)
    manager = sign_in(db, tenant, Role.MANAGER)
    cookie = {"Cookie": manager.headers["Cookie"]}
    page = client.get(f"/messages/{conversation_id}", headers=cookie)
    assert page.status_code == 200
    assert _inbox_data(page.text)["conversation_id"] == conversation_id
    contact_id = client.get(f"/api/v1/conversations/{conversation_id}", headers=tenant.headers).json()["contact_id"]
    panel = client.get(f"/messages/contacts/{contact_id}/panel?conversation_id={conversation_id}", headers=cookie)
    assert panel.status_code == 200
    assert "ana@example.com" in panel.text
    assert "Ana &lt;img src=x&gt;" in panel.text
    # The workflows' Run shortcut menu is loaded into the panel, told the conversation it is run from.
    assert f"/workflows/shortcuts/menu?contact_id={contact_id}&amp;conversation_id={conversation_id}" in panel.text
    wrong = client.get(f"/messages/contacts/{contact_id + 999}/panel?conversation_id={conversation_id}", headers=cookie)
    assert wrong.status_code == 404

    # An agent who may not see the conversation (a colleague's) gets a 404 page, not the conversation.
    client.post(
        f"/api/v1/conversations/{conversation_id}/assign", headers=tenant.headers, json={"user_id": tenant.manager_id}
    )
    agent = sign_in(db, tenant, Role.AGENT)
    hidden = client.get(f"/messages/{conversation_id}", headers={"Cookie": agent.headers["Cookie"]})
    assert hidden.status_code == 404


def _only_conversation(client: TestClient, tenant: Tenant) -> int:
    items = client.get("/api/v1/conversations", headers=tenant.headers).json()["items"]
    assert len(items) == 1
    conversation_id: int = items[0]["id"]
    return conversation_id


def test_signed_out_people_are_sent_to_sign_in(client: TestClient) -> None:
    response = client.get("/messages", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=/messages")


def test_widget_script_is_served_for_embedding(client: TestClient) -> None:
    response = client.get("/widget/abc_DEF-123.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert "attachShadow" in response.text
    # Nothing is parsed as HTML (message text never; the launcher's icon is built node by node, so
    # sites that require Trusted Types can host the widget).
    assert ".innerHTML =" not in response.text
    assert "createElementNS" in response.text


def test_channel_settings_create_edit_and_snippet(
    client: TestClient, db: Database, tenant: Tenant, settings: Settings
) -> None:
    manager = sign_in(db, tenant, Role.MANAGER)
    headers = manager.headers
    page = client.get("/settings/channels", headers=headers)
    assert page.status_code == 200
    bad = client.post(
        "/settings/channels",
        headers=headers,
        data={"name": "Shop", "allowed_origins": "not a url", "color": "#2563eb", "position": "right"},
    )
    assert bad.status_code == 422
    assert "must be an origin" in bad.text
    assert 'value="Shop"' in bad.text
    created = client.post(
        "/settings/channels",
        headers=headers,
        data={
            "name": "Shop",
            "allowed_origins": f"{SHOP}\nhttps://www.shop.example",
            "color": "#FF0000",
            "greeting": "¡Hola! <b>",
            "position": "left",
            "ask_name": "true",
        },
        follow_redirects=False,
    )
    assert created.status_code == 303, created.text
    with db.transaction() as session:
        channel = session.query(Channel).filter_by(workspace_id=tenant.workspace_id).one()
        assert channel.config["allowed_origins"] == ["https://shop.example", "https://www.shop.example"]
        assert channel.config["theme"]["color"] == "#ff0000"
        assert channel.config["theme"]["position"] == "left"
        assert channel.config["ask_name"] is True
        assert channel.config["ask_email"] is False
        key, channel_id = channel.key, channel.id
    assert created.headers["location"] == f"/settings/channels/{channel_id}"
    detail = client.get(f"/settings/channels/{channel_id}", headers=headers)
    base = str(settings.base_url).rstrip("/")
    assert f"&lt;script src=&#34;{base}/widget/{key}.js&#34; async&gt;&lt;/script&gt;" in detail.text
    assert "¡Hola! &lt;b&gt;" in detail.text
    for platform in ("WordPress", "Shopify", "Wix", "Squarespace"):
        assert platform in detail.text
    saved = client.post(
        f"/settings/channels/{channel_id}",
        headers=headers,
        data={"allowed_origins": SHOP, "color": "#00aa00", "position": "right", "ask_email": "true"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    config = client.get(f"/widget/{key}/config", headers={"Origin": SHOP}).json()
    assert config["theme"]["color"] == "#00aa00"
    assert config["ask_email"] is True
    assert config["ask_name"] is False

    agent = sign_in(db, tenant, Role.AGENT)
    assert client.get("/settings/channels", headers=agent.headers).status_code == 403


def test_an_agent_posting_the_channel_form_is_refused_without_seeing_the_channels(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    """The POST used to catch the permission refusal with the form's errors and draw the channel list
    (names and allowed origins) for the Agent."""
    make_webchat(db, tenant)
    agent = sign_in(db, tenant, Role.AGENT)
    refused = client.post(
        "/settings/channels",
        headers=agent.headers,
        data={"name": "x", "allowed_origins": SHOP, "color": "#2563eb", "position": "right"},
    )
    assert refused.status_code == 403
    assert SHOP not in refused.text
    assert "Web chat" not in refused.text
    with db.transaction(write=False) as session:
        assert session.query(Channel).filter_by(workspace_id=tenant.workspace_id).count() == 1
