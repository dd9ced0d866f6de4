"""Settings pages: who may open them, what they change, errors beside the field, escaping."""

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.app import SETTINGS_SECTIONS
from tertulia.contacts.models import ContactTag, CustomField, FieldType, Tag
from tertulia.contacts.service import do_add_tags, do_create_contact, do_create_custom_field
from tertulia.contacts.settings_views import FIELDS, TAGS
from tertulia.kit.db import Database
from tertulia.segments.service import do_create_segment
from tertulia.users.models import ApiToken, Invitation, Membership, Role, Team
from tertulia.web.sections import install_sections
from tertulia.workspaces.models import Workspace
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as

PAGES = ("general", "users", "teams", "fields", "tags", "tokens")


def _owner(client: TestClient, db: Database, tenant: Tenant) -> str:
    return sign_in_as(client, db, tenant.owner_id, "owner-password")


def test_an_agent_is_refused_every_settings_page_and_sees_no_settings_link(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert 'href="/settings"' not in client.get("/contacts").text
    assert client.get("/settings").status_code == 403
    for page in PAGES:
        response = client.get(f"/settings/{page}")
        assert response.status_code == 403, page
        assert "You do not have access to this page" in response.text
    refused = client.post("/settings/teams", data={"name": "Sneaky", "csrf_token": token})
    assert refused.status_code == 403
    with db.transaction(write=False) as session:
        assert session.scalar(select(Team.id)) is None


@pytest.mark.parametrize("role", [Role.OWNER, Role.MANAGER])
def test_owners_and_managers_open_every_page_with_the_sub_navigation(
    client: TestClient, db: Database, tenant: Tenant, role: Role
) -> None:
    user_id, password = {
        Role.OWNER: (tenant.owner_id, "owner-password"),
        Role.MANAGER: (tenant.manager_id, "manager-password"),
    }[role]
    sign_in_as(client, db, user_id, password)
    assert client.get("/settings", follow_redirects=False).headers["location"] == "/settings/general"
    for page in PAGES:
        response = client.get(f"/settings/{page}")
        assert response.status_code == 200, page
        for other in PAGES:
            assert f'href="/settings/{other}"' in response.text


def test_general_settings_save_and_errors_keep_what_was_typed(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _owner(client, db, tenant)
    bad = client.post(
        "/settings/general",
        data={
            "name": "<b>Acme</b>",
            "default_country": "ZZ",
            "timezone": "Mars/Base",
            "default_language": "es",
            "csrf_token": token,
        },
    )
    assert bad.status_code == 422
    assert 'value="&lt;b&gt;Acme&lt;/b&gt;"' in bad.text
    assert 'value="ZZ"' in bad.text
    assert "unknown ISO 3166-1 alpha-2 country code" in bad.text
    assert "unknown time zone" in bad.text
    with db.transaction(write=False) as session:
        assert session.get(Workspace, tenant.workspace_id).name == tenant.name  # type: ignore[union-attr]

    good = client.post(
        "/settings/general",
        data={
            "name": "Acme <Norte>",
            "default_country": "es",
            "timezone": "Europe/Madrid",
            "default_language": "es",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert good.status_code == 303
    with db.transaction(write=False) as session:
        workspace = session.get(Workspace, tenant.workspace_id)
        assert workspace is not None
        assert (workspace.name, workspace.default_country, workspace.timezone, workspace.default_language) == (
            "Acme <Norte>",
            "ES",
            "Europe/Madrid",
            "es",
        )
        # The box was not ticked in that form: agents no longer see unassigned conversations.
        assert workspace.agents_see_unassigned is False
    page = client.get("/settings/general")
    assert "Acme &lt;Norte&gt;" in page.text
    assert "<Norte>" not in page.text
    assert 'data-testid="agents-see-unassigned" checked' not in page.text
    again = client.post(
        "/settings/general",
        data={
            "name": "Acme <Norte>",
            "timezone": "Europe/Madrid",
            "default_language": "es",
            "agents_see_unassigned": "1",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert again.status_code == 303
    assert 'data-testid="agents-see-unassigned" checked' in client.get("/settings/general").text


def test_users_invite_change_role_deactivate_and_revoke(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _owner(client, db, tenant)
    bad = client.post("/settings/users/invite", data={"email": "not-an-email", "role": "agent", "csrf_token": token})
    assert bad.status_code == 422
    assert 'value="not-an-email"' in bad.text
    assert "field-error" in bad.text

    sent = client.post(
        "/settings/users/invite", data={"email": "new@example.com", "role": "manager", "csrf_token": token}
    )
    assert sent.status_code == 200  # followed the redirect
    assert "new@example.com" in sent.text
    with db.transaction(write=False) as session:
        invitation = session.scalar(select(Invitation).where(Invitation.email == "new@example.com"))
        assert invitation is not None
        assert invitation.role == Role.MANAGER
        invitation_id = invitation.id

    client.post(f"/settings/users/{tenant.agent_id}/role", data={"role": "manager", "csrf_token": token})
    client.post(f"/settings/users/{tenant.manager_id}/deactivate", data={"csrf_token": token})
    with db.transaction(write=False) as session:
        memberships = {m.user_id: m for m in session.scalars(select(Membership))}
        assert memberships[tenant.agent_id].role == Role.MANAGER
        assert memberships[tenant.manager_id].active is False
    client.post(f"/settings/users/{tenant.manager_id}/reactivate", data={"csrf_token": token})
    client.post(f"/settings/invitations/{invitation_id}/revoke", data={"csrf_token": token})
    with db.transaction(write=False) as session:
        assert session.scalar(select(Membership.active).where(Membership.user_id == tenant.manager_id)) is True
        assert session.get(Invitation, invitation_id).revoked_at is not None  # type: ignore[union-attr]
    assert "new@example.com" not in client.get("/settings/users").text


def test_a_manager_cannot_invite_an_owner(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    page = client.get("/settings/users")
    assert '<option value="owner"' not in page.text.split("Invite someone")[1].split("</form>")[0]
    refused = client.post(
        "/settings/users/invite", data={"email": "boss@example.com", "role": "owner", "csrf_token": token}
    )
    assert refused.status_code == 422
    assert 'value="boss@example.com"' in refused.text


def test_teams_create_rename_members_delete(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _owner(client, db, tenant)
    client.post("/settings/teams", data={"name": "Ventas <1>", "csrf_token": token})
    duplicate = client.post("/settings/teams", data={"name": "ventas <1>", "csrf_token": token})
    assert duplicate.status_code == 422
    assert 'value="ventas &lt;1&gt;"' in duplicate.text
    with db.transaction(write=False) as session:
        team = session.scalar(select(Team))
        assert team is not None
        team_id = team.id
    client.post(f"/settings/teams/{team_id}/rename", data={"name": "Soporte", "csrf_token": token})
    client.post(
        f"/settings/teams/{team_id}/members",
        data={"members": [str(tenant.agent_id), str(tenant.manager_id)], "csrf_token": token},
    )
    page = client.get("/settings/teams")
    assert 'value="Soporte"' in page.text
    assert page.text.count(" checked") == 2
    client.post(f"/settings/teams/{team_id}/delete", data={"csrf_token": token})
    with db.transaction(write=False) as session:
        assert session.scalar(select(Team.id)) is None


def test_custom_fields_create_rename_reorder_and_delete_warns_about_segments(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _owner(client, db, tenant)
    bad = client.post(
        "/settings/fields",
        data={"key": "Bad Key", "label": "<i>Plan</i>", "type": "list", "options": "", "csrf_token": token},
    )
    assert bad.status_code == 422
    assert 'value="Bad Key"' in bad.text
    assert "&lt;i&gt;Plan&lt;/i&gt;" in bad.text
    for key, label, kind, options in (("plan", "Plan", "list", "Free\nPro"), ("city", "City", "text", "")):
        created = client.post(
            "/settings/fields",
            data={"key": key, "label": label, "type": kind, "options": options, "csrf_token": token},
            follow_redirects=False,
        )
        assert created.status_code == 303
    client.post("/settings/fields/plan/rename", data={"label": "Subscription", "csrf_token": token})
    client.post("/settings/fields/city/move", data={"direction": "up", "csrf_token": token})
    with db.transaction(write=False) as session:
        fields = list(session.scalars(select(CustomField).order_by(CustomField.position)))
        assert [(f.key, f.label) for f in fields] == [("city", "City"), ("plan", "Subscription")]
        assert fields[1].options == ["Free", "Pro"]
    with db.transaction() as session:
        do_create_segment(
            session,
            tenant.actor(),
            "Paying <customers>",
            {
                "groups": [
                    {"conditions": [{"category": "contact_field", "field": "plan", "operator": "is", "value": "Pro"}]}
                ]
            },
        )
    warning = client.get("/settings/fields/plan/delete")
    assert "Paying &lt;customers&gt;" in warning.text
    assert "permanently" in warning.text
    assert "Paying" not in client.get("/settings/fields/city/delete").text
    client.post("/settings/fields/plan/delete", data={"csrf_token": token})
    with db.transaction(write=False) as session:
        assert [f.key for f in session.scalars(select(CustomField))] == ["city"]


def test_tags_list_usage_rename_and_delete(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        actor = tenant.actor()
        for n in range(3):
            contact = do_create_contact(session, actor, {"email": f"c{n}@example.com"})
            do_add_tags(session, actor, contact, ["<vip>"] + (["old"] if n == 0 else []))
    token = _owner(client, db, tenant)
    page = client.get("/settings/tags")
    assert 'value="&lt;vip&gt;"' in page.text
    assert "<vip>" not in page.text
    with db.transaction(write=False) as session:
        tags = {t.name: t.id for t in session.scalars(select(Tag))}
    clash = client.post(f"/settings/tags/{tags['old']}/rename", data={"name": "<VIP>", "csrf_token": token})
    assert clash.status_code == 422
    assert "Another tag already has this name." in clash.text
    client.post(f"/settings/tags/{tags['old']}/rename", data={"name": "Former", "csrf_token": token})
    client.post(f"/settings/tags/{tags['<vip>']}/delete", data={"csrf_token": token})
    with db.transaction(write=False) as session:
        assert [t.name for t in session.scalars(select(Tag))] == ["Former"]
        assert len(list(session.scalars(select(ContactTag)))) == 1


def test_api_token_shown_once_then_listed_by_prefix_and_revoked(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _owner(client, db, tenant)
    created = client.post("/settings/tokens", data={"name": "Web <form>", "scopes": "admin", "csrf_token": token})
    assert created.status_code == 200
    assert created.headers["cache-control"] == "no-store"
    with db.transaction(write=False) as session:
        api_token = session.scalar(select(ApiToken).where(ApiToken.name == "Web <form>"))
        assert api_token is not None
    assert 'data-testid="new-token"' in created.text
    assert api_token.prefix in created.text
    listing = client.get("/settings/tokens")
    assert 'data-testid="new-token"' not in listing.text
    assert "Web &lt;form&gt;" in listing.text
    too_long = client.post("/settings/tokens", data={"name": "x" * 200, "scopes": "admin", "csrf_token": token})
    assert too_long.status_code == 422
    client.post(f"/settings/tokens/{api_token.id}/revoke", data={"csrf_token": token})
    assert "Web &lt;form&gt;" not in client.get("/settings/tokens").text


def test_settings_pages_speak_spanish(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        do_create_custom_field(session, tenant.actor(), "plan", "Plan", FieldType.TEXT)
    _owner(client, db, tenant)
    client.cookies.set("tertulia_lang", "es")
    page = client.get("/settings/fields", headers={"Accept-Language": "es"})
    assert "Campos personalizados" in page.text
    assert "Custom fields" not in page.text


def _navigation(html: str) -> list[str]:
    return re.findall(r'data-testid="settings-([a-z-]+)"', html)


def test_the_navigation_lists_the_installed_sections_in_their_order(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    _owner(client, db, tenant)
    assert _navigation(client.get("/settings/general").text) == [section.key for section in SETTINGS_SECTIONS]
    # Only what the app installed is listed and opened first; the pages of the others still check
    # their own permission.
    assert isinstance(client.app, FastAPI)
    install_sections(client.app, (TAGS, FIELDS))
    assert _navigation(client.get("/settings/fields").text) == ["tags", "fields"]
    assert client.get("/settings", follow_redirects=False).headers["location"] == "/settings/tags"


def test_settings_sections_need_distinct_keys() -> None:
    with pytest.raises(ValueError, match="distinct keys"):
        install_sections(FastAPI(), (TAGS, FIELDS, TAGS))
