"""Every page and form of the settings, broadcasts and workflows, present and future, refuses an
agent with 403 and writes nothing: the routes are taken from the app, so a new one is checked as
soon as it is mounted. A form is sent with valid values for its required fields, so the refusal
comes from the permission check and not from a missing field (a refusal of the person must never
show the page again with its data, as a channel form once did with the channels list)."""

from fastapi import routing
from fastapi.testclient import TestClient

from tertulia.kit.db import Database
from tertulia.kit.http import is_page_path
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as
from tests.web.test_form_text_everywhere import VALID, _counts, _url, _world, page_forms

# Agents hold none of the permissions these pages need (users.permissions: view, edit and merge
# contacts only). Reports are not here: an agent sees their own numbers.
MANAGED = ("/settings", "/broadcasts", "/workflows")
# Shortcuts are run by agents too (edit_contacts), from the inbox and the contact page.
FOR_AGENTS = ("/workflows/shortcuts/menu", "/workflows/{workflow_id}/shortcut/{contact_id}")


def test_an_agent_is_refused_every_managed_page_and_form(client: TestClient, db: Database, tenant: Tenant) -> None:
    # Objects no form of the world needs: an id is enough, the permission is checked before the row.
    world = {"token_id": "1", "run_id": "1", "notification_id": "1", "export_id": "1", **_world(client, db, tenant)}
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    required = {form.path: form.required for form in page_forms(client.app)}
    before = _counts(db)
    answered: dict[str, int] = {}
    for context in routing.iter_route_contexts(client.app.routes):
        route = context.original_route
        if not isinstance(route, routing.APIRoute) or not is_page_path(context.path):
            continue
        if not context.path.startswith(MANAGED) or context.path in FOR_AGENTS:
            continue
        url = _url(context.path, "", world)
        if "GET" in route.methods:
            answered[f"GET {context.path}"] = client.get(url, follow_redirects=False).status_code
        if "POST" in route.methods:
            data = {name: VALID.get(name, "x") for name in required.get(context.path, [])}
            response = client.post(url, data={**data, "csrf_token": token}, follow_redirects=False)
            answered[f"POST {context.path}"] = response.status_code
    assert len(answered) > 100  # the routes were found
    assert {request: status for request, status in answered.items() if status != 403} == {}
    assert _counts(db) == before
