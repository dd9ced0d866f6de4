"""The Run shortcut menu on a contact's page in a real browser: the htmx fragment loads under the
CSP, a refused answer shows its message beside the field, and a valid form starts the run. SQLite
only, like the other browser tests."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from tertulia.contacts import service as contacts_service
from tertulia.contacts.models import FieldType
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.workflows import service as workflows_service
from tertulia.workflows.models import WorkflowRun
from tests.browser.conftest import require_chromium, sign_in_at
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@shortcut.example.com", "owner-password")
FLOW = {
    "trigger": {"type": "shortcut", "config": {"form": [{"name": "reason", "label": "Reason", "required": True}]}},
    "steps": [{"id": "note", "type": "update_field", "config": {"field": "note", "value": "{{trigger.reason}}"}}],
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Database, int]]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("shortcut"))
    with database.transaction() as session:
        created = do_create_workspace_with_owner(session, "Tienda Co", OWNER[0], OWNER[1])
        owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        contacts_service.do_create_custom_field(session, owner, "note", "Note", FieldType.TEXT)
        contact = contacts_service.do_create_contact(session, owner, {"email": "ana@example.com"})
        workflow = workflows_service.do_create_workflow(session, owner, "Call back", FLOW)
        workflows_service.do_publish(session, owner, workflow)
        contact_id = contact.id
    with serve_tertulia(database) as url:
        yield url, database, contact_id
    database.dispose()


def test_run_a_shortcut_from_the_contact_page(page: Page, shop: tuple[str, Database, int]) -> None:
    base_url, database, contact_id = shop
    sign_in_at(page, base_url, f"/contacts/{contact_id}", *OWNER)
    page.get_by_test_id("run-shortcut").click()
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator('[id="answers.reason-error"]')).to_have_text("this field is required", timeout=15_000)
    page.get_by_label("Reason").fill("Llamar mañana")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_test_id("shortcut-done")).to_have_text("The shortcut started.", timeout=15_000)
    with database.transaction(write=False) as session:
        assert list(session.scalars(select(WorkflowRun.contact_id))) == [contact_id]
