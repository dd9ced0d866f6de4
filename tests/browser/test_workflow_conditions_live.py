"""The builder's conditions editor in a real browser, in Spanish: a manager opens the trigger's
conditions in the dialog (the segments' filter panel), watches the live count of matching contacts
follow the conditions, finds no "Me" among the assignees, picks a tag condition, sees the error
beside it while no tag is chosen, applies, saves, and finds the conditions in the saved definition
(no script error, no CSP violation); and adds a branch whose condition is the conversation's status,
picked from the "Conversación" categories. SQLite only, like the other browser tests."""

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tertulia.contacts.service import do_add_tags, do_create_contact, do_create_tag
from tertulia.kit.db import Database
from tests.browser.conftest import (
    create_workflow_draft,
    require_chromium,
    saved_definition,
    seed_workspace,
    shot,
    watch,
)
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

MANAGER = ("nora@condiciones.example.com", "nora-password")
VIP_ONLY = {"match": "all", "groups": [{"match": "all", "conditions": [
    {"category": "tag", "operator": "has_any_of", "value": ["vip"]},
]}]}  # fmt: skip


@dataclass
class Setup:
    url: str
    database: Database


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("conditions"))
    with database.transaction() as session:
        owner = seed_workspace(
            session, "Tienda Condiciones", "owner@cond.example.com", MANAGER, first_name="Nora"
        ).owner
        do_create_tag(session, owner, "vip")
        do_create_tag(session, owner, "nuevo")
        for name, tags in (("Ana", ["vip"]), ("Luis", ["vip"]), ("Eva", ["nuevo"])):
            do_add_tags(session, owner, do_create_contact(session, owner, {"first_name": name}), tags)
    with serve_tertulia(database) as url:
        yield Setup(url, database)
    database.dispose()


def test_trigger_conditions_are_edited_in_the_filter_panel(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES", viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    watch(page, problems)
    workflow_id = create_workflow_draft(page, setup.url, MANAGER, "Clientes VIP")

    page.get_by_test_id("trigger-card").get_by_role("button").first.click()
    panel = page.get_by_test_id("builder-panel")
    conditions = panel.locator('[data-field="conditions"]')
    expect(conditions.get_by_test_id("conditions-summary")).to_have_text("Sin condiciones: se aplica siempre.")
    # The raw JSON is still there, folded under "Avanzado".
    expect(conditions.locator("textarea")).to_be_hidden()
    conditions.get_by_role("button", name="Editar condiciones").click()

    dialog = page.get_by_test_id("condition-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#filter-title")).to_have_text("Condiciones del disparador")
    # The live count, as on the contacts page: every contact while there is no condition.
    count = dialog.get_by_test_id("filter-count")
    expect(count).to_have_attribute("data-count", "3")
    expect(count).to_contain_text("contactos coinciden")
    dialog.get_by_test_id("add-group").click()
    expect(dialog.get_by_test_id("condition")).to_have_count(1)
    # The assignee: the workspace's people, no "Me" (nobody is looking when a workflow runs).
    dialog.get_by_test_id("category").select_option("field:assignee")
    expect(dialog.get_by_test_id("operator").locator("option")).to_have_count(4)  # the assignee's operators
    dialog.get_by_test_id("operator").select_option("is")
    assignee = dialog.locator('select[name="g0.c0.value"]')
    expect(assignee).to_be_visible()
    expect(assignee.locator('option[value="me"]')).to_have_count(0)
    expect(assignee.locator("option")).to_contain_text(["Nora"])
    # Typing a name counts again as it goes.
    dialog.get_by_test_id("category").select_option("field:first_name")
    expect(assignee).to_have_count(0)
    dialog.locator('input[name="g0.c0.value"]').fill("Ana")
    expect(count).to_have_attribute("data-count", "1")
    expect(count).to_contain_text("contacto coincide")
    # Tags: the server re-renders the panel with the tag operators, then the workspace's tags.
    dialog.get_by_test_id("category").select_option("tag")
    expect(dialog.get_by_test_id("operator").locator("option")).to_have_count(5)  # a tag's operators
    dialog.get_by_test_id("operator").select_option("has_any_of")
    expect(dialog.locator('select[name="g0.c0.values"]')).to_be_visible()

    # Applying with no tag chosen: the server's message beside the condition, the dialog stays open.
    # The panel already shows that message (the live count's), so wait for Apply's own answer: it
    # re-renders the panel, and a choice made before it arrives would be drawn over.
    with page.expect_response(lambda answer: answer.url.endswith("/workflows/conditions/apply")) as applied:
        dialog.get_by_test_id("apply-conditions").click()
    assert applied.value.status == 422
    # The re-rendered panel puts the focus on the condition in error.
    expect(dialog.get_by_test_id("category")).to_be_focused()
    expect(dialog.locator("#err-g0-c0")).to_have_text("falta un valor")
    expect(dialog).to_be_visible()
    expect(count).to_have_attribute("data-count", "")
    shot(page, "88-workflow-conditions-dialog.png")

    dialog.locator('select[name="g0.c0.values"]').select_option("vip")
    expect(count).to_have_attribute("data-count", "2")
    expect(dialog.locator("#err-g0-c0")).to_have_text("")
    dialog.get_by_test_id("apply-conditions").click()
    expect(dialog).to_be_hidden()
    expect(conditions.get_by_test_id("conditions-summary")).to_have_text("Condiciones definidas: 1")
    conditions.get_by_test_id("conditions-advanced").locator("summary").click()
    assert json.loads(conditions.locator("textarea").input_value()) == VIP_ONLY

    page.get_by_test_id("save-definition").click()
    expect(page.locator(".flash").first).to_contain_text("Tus cambios se han guardado")
    expect(page.get_by_test_id("definition-problems")).to_have_count(0)
    saved = saved_definition(setup.database, workflow_id)
    assert saved["trigger"]["conditions"] == VIP_ONLY
    # The saved page opens the dialog on the saved conditions.
    page.get_by_test_id("trigger-card").get_by_role("button").first.click()
    page.get_by_test_id("builder-panel").get_by_role("button", name="Editar condiciones").click()
    expect(dialog.locator('select[name="g0.c0.values"] option:checked')).to_have_text("vip")
    dialog.get_by_role("button", name="Cancelar").click()
    expect(dialog).to_be_hidden()
    context.close()
    assert problems == []


CLOSED_ONLY = {"match": "all", "groups": [{"match": "all", "conditions": [
    {"category": "conversation", "field": "status", "operator": "is", "value": "closed"},
]}]}  # fmt: skip


def _panel_field(page: Page, path: str, control: str = "input") -> Locator:
    return page.get_by_test_id("builder-panel").locator(f'[data-field="{path}"] {control}').first


def test_a_branch_condition_on_the_conversation_status(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES", viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    watch(page, problems)
    workflow_id = create_workflow_draft(page, setup.url, MANAGER, "Rama por estado")
    page.get_by_test_id("new-step-type").select_option("branch")
    page.get_by_test_id("add-step").click()
    _panel_field(page, "id").fill("estado")
    _panel_field(page, "config.branches[0].name").fill("Cerrada")
    conditions = page.get_by_test_id("builder-panel").locator('[data-field="config.branches[0].conditions"]')
    conditions.get_by_role("button", name="Editar condiciones").click()
    dialog = page.get_by_test_id("condition-dialog")
    expect(dialog.locator("#filter-title")).to_have_text("Condiciones de la rama")
    dialog.get_by_test_id("add-group").click()
    category = dialog.get_by_test_id("category")
    # The conversation's categories, in Spanish, under their own heading.
    expect(category.locator('optgroup[label="Conversación"] option')).to_have_text(
        [
            "Estado de la conversación",
            "Canal de la conversación",
            "Tipo de canal de la conversación",
            "Equipo de la conversación",
            "Persona asignada a la conversación",
            "Conversación abierta por",
            "Estado de la persona asignada",
        ]
    )
    category.select_option("conversation:status")
    expect(dialog.get_by_test_id("operator").locator("option")).to_have_text(["es", "no es"])
    value = dialog.locator('select[name="g0.c0.value"]')
    expect(value.locator("option")).to_have_text(["—", "abierta", "cerrada"])
    value.select_option(label="cerrada")
    # A run's conversation is not a contact's: no count of matching contacts.
    expect(dialog.get_by_test_id("filter-count")).to_contain_text(
        "Las condiciones sobre la conversación dependen de cada ejecución"
    )
    dialog.get_by_test_id("apply-conditions").click()
    expect(dialog).to_be_hidden()
    expect(conditions.get_by_test_id("conditions-summary")).to_have_text("Condiciones definidas: 1")
    conditions.locator("summary").click()
    assert json.loads(conditions.locator("textarea").input_value()) == CLOSED_ONLY

    page.get_by_test_id("save-definition").click()
    expect(page.locator(".flash").first).to_contain_text("Tus cambios se han guardado")
    expect(page.get_by_test_id("definition-problems")).to_have_count(0)
    saved = saved_definition(setup.database, workflow_id)
    (branch,) = [step for step in saved["steps"] if step["id"] == "estado"]
    assert branch["config"]["branches"][0]["conditions"] == CLOSED_ONLY
    # Opened again, the dialog shows the saved condition.
    page.get_by_test_id("step-card").filter(has_text="estado").get_by_role("button", name="Configurar").first.click()
    page.get_by_test_id("builder-panel").locator('[data-field="config.branches[0].conditions"]').get_by_role(
        "button", name="Editar condiciones"
    ).click()
    expect(dialog.get_by_test_id("category")).to_have_value("conversation:status")
    expect(dialog.locator('select[name="g0.c0.value"]')).to_have_value("closed")
    dialog.get_by_role("button", name="Cancelar").click()
    context.close()
    assert problems == []
