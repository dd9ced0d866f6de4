"""The workflow builder in a real browser, in Spanish: a manager builds a flow with a question, a
branch and a wait from cards, sees the server's error beside the field at fault, fixes it, simulates
the flow on a contact, publishes it, and watches it run on a web-chat conversation (no script error,
no CSP violation). A branch's paths and a jump are joined to their target cards by lines that follow
edits, zoom and resizes; a manager whose language is English builds and saves in English; and a
WhatsApp template with named parameters is filled in by name, and the header file's field shows for
a template whose header is an image (only for it); a step duplicated goes below its original and a
step deleted joins its neighbours, as saved. SQLite only, like the other browser tests."""

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from babel.messages.pofile import read_po
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect
from sqlalchemy import select

from tertulia.channels.message_templates import do_store_templates
from tertulia.channels.protocol import ProviderTemplate
from tertulia.channels.service import do_create_channel
from tertulia.contacts.service import do_create_contact
from tertulia.conversations import outbox as _outbox  # noqa: F401  (registers the queue tasks)
from tertulia.conversations.models import Conversation
from tertulia.events import tasks as events_tasks
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tertulia.users.service import do_add_member, do_create_user
from tertulia.workflows import tasks as workflows_tasks
from tertulia.workflows.service import do_create_workflow
from tests.browser.conftest import (
    create_workflow_draft,
    require_chromium,
    saved_definition,
    seed_workspace,
    shot,
    sign_in_at,
    watch,
)
from tests.channels import whatsapp_samples as wa
from tests.channels import whatsapp_template_samples as template_samples
from tests.channels.whatsapp_template_samples import PROMO_PHOTO
from tests.live_server import fresh_sqlite_database, serve_tertulia
from tests.workflows.support import feed, runs

pytestmark = pytest.mark.browser

MANAGER = ("marta@flujos.example.com", "marta-password")
ENGLISH_MANAGER = ("ellen@flujos.example.com", "ellen-password")
SPANISH_CATALOGUE = Path(__file__).parents[2] / "src/tertulia/web/translations/es/LC_MESSAGES/messages.po"
SHOP = "https://tienda.example"
QUESTION = "¿Buscas ventas o soporte?"
THANKS = "Gracias por esperar, ya te atendemos."
CONDITION = {
    "groups": [{"conditions": [{"category": "variable", "field": "area", "operator": "is", "value": "ventas"}]}]
}


VIP_TAG = {"groups": [{"conditions": [{"category": "tag", "operator": "has_any_of", "value": ["vip"]}]}]}
LINKED = {
    "trigger": {"type": "conversation_opened", "config": {}},
    "steps": [
        {"id": "hola", "type": "send_message", "config": {"text": "Hola"}, "next": "rama"},
        {
            "id": "rama",
            "type": "branch",
            "config": {"branches": [{"name": "VIP", "conditions": VIP_TAG, "next": "vip"}]},
            "next": "resto",
        },
        {"id": "vip", "type": "send_message", "config": {"text": "Bienvenido"}, "next": "otra-vez"},
        {"id": "resto", "type": "send_message", "config": {"text": "Un momento"}, "next": "otra-vez"},
        {"id": "otra-vez", "type": "jump_to", "config": {"target": "rama", "max_jumps": 2, "when_exhausted": "exit"}},
    ],
}


@dataclass
class Setup:
    url: str
    database: Database
    channel_key: str
    contact_id: int
    linked_id: int


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("builder"))
    with database.transaction() as session:
        seeded = seed_workspace(session, "Tienda Flujos", "owner@flujos.example.com", MANAGER, first_name="Marta")
        english = do_create_user(session, ENGLISH_MANAGER[0], ENGLISH_MANAGER[1], first_name="Ellen", language="en")
        do_add_member(session, seeded.workspace_id, english.id, Role.MANAGER)
        owner = seeded.owner
        channel = do_create_channel(session, owner, "webchat", "Tienda", {"allowed_origins": [SHOP]})
        number = do_create_channel(
            session,
            owner,
            "whatsapp",
            "WhatsApp Tienda",
            {"phone_number_id": wa.PHONE_NUMBER_ID, "business_account_id": wa.BUSINESS_ACCOUNT_ID},
            {"access_token": "EAAG-test-token", "app_secret": wa.APP_SECRET},
        )
        do_store_templates(
            session,
            number,
            [
                ProviderTemplate(
                    sample["id"],
                    sample["name"],
                    sample["language"],
                    sample["category"],
                    sample["status"],
                    sample.get("parameter_format", "POSITIONAL"),
                    sample["components"],
                )
                for sample in (template_samples.SPRING_SALE, PROMO_PHOTO, template_samples.ORDER_DELIVERY_UPDATE)
            ],
        )
        contact = do_create_contact(session, owner, {"first_name": "Ana", "email": "ana@x.example"})
        linked = do_create_workflow(session, owner, "Con ramas", LINKED)
        key, contact_id, linked_id = channel.key, contact.id, linked.id
    queue.huey.immediate = True
    queue.use_database(database)
    with serve_tertulia(database) as url:
        yield Setup(url, database, key, contact_id, linked_id)
    queue.huey.immediate = False
    queue.use_database(None)
    database.dispose()


def _shot(page: Page, name: str) -> None:
    folder = os.environ.get("TERTULIA_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def _card(page: Page, step_id: str) -> Locator:
    return page.locator(f'[data-testid=step-card][data-step-id="{step_id}"]')


def _field(page: Page, path: str, control: str = "input") -> Locator:
    return page.get_by_test_id("builder-panel").locator(f'[data-field="{path}"] {control}').first


def _add(page: Page, step_type: str, step_id: str) -> None:
    page.get_by_test_id("new-step-type").select_option(step_type)
    page.get_by_test_id("add-step").click()
    _field(page, "id").fill(step_id)
    expect(_card(page, step_id)).to_have_class(re.compile("is-selected"))


def test_a_manager_builds_simulates_publishes_and_sees_it_run(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES", viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    watch(page, problems)
    workflow_id = create_workflow_draft(page, setup.url, MANAGER, "Atención web")
    expect(page.get_by_test_id("builder")).to_be_visible()
    expect(page.locator("#f-definition")).to_be_hidden()
    expect(page.get_by_test_id("trigger-card")).to_contain_text("Conversación abierta")

    # The question, after the welcome message; its text is left empty on purpose.
    _card(page, "welcome").get_by_role("button", name=re.compile("^Configurar")).click()
    _add(page, "ask_question", "pregunta")
    _field(page, "config.kind", "select").select_option("choice")
    _field(page, "config.options", "textarea").fill("ventas\nsoporte")
    page.get_by_test_id("builder-panel").locator('[data-testid="object-save_to"] input[type=checkbox]').first.check()
    _field(page, "config.save_to.kind", "select").select_option("variable")
    _field(page, "config.save_to.name").fill("area")

    # A branch: "Ventas" goes to its own message, else a wait that ends when the contact writes.
    _add(page, "branch", "rama")
    _field(page, "config.branches[0].name").fill("Ventas")
    # The raw JSON of the conditions is folded under "Advanced"; the dialog opens on what it holds,
    # with the variable the question declares offered as a category.
    branch_conditions = page.get_by_test_id("builder-panel").locator('[data-field="config.branches[0].conditions"]')
    branch_conditions.locator("summary").click()
    _field(page, "config.branches[0].conditions", "textarea").fill(json.dumps(CONDITION))
    branch_conditions.get_by_role("button", name="Editar condiciones").click()
    dialog = page.get_by_test_id("condition-dialog")
    expect(dialog.locator("#filter-title")).to_have_text("Condiciones de la rama")
    expect(dialog.get_by_test_id("category")).to_have_value("var:area")
    expect(dialog.locator('input[name="g0.c0.value"]')).to_have_value("ventas")
    dialog.get_by_role("button", name="Cancelar").click()
    expect(dialog).to_be_hidden()
    _add(page, "send_message", "ventas")
    _field(page, "config.text", "textarea").fill("Te paso con el equipo de ventas.")
    _add(page, "wait", "espera")
    _field(page, "config.duration.amount").fill("10")
    _field(page, "config.until_contact_writes").check()
    _add(page, "send_message", "gracias")
    _field(page, "config.text", "textarea").fill(THANKS)
    # Connect the outcomes: the sales message ends the run; the branch goes to it, else to the wait.
    _card(page, "ventas").get_by_role("button", name=re.compile("^Configurar")).click()
    _field(page, "next", "select").select_option("")
    _card(page, "rama").get_by_role("button", name=re.compile("^Configurar")).click()
    _field(page, "config.branches[0].next", "select").select_option("ventas")
    _field(page, "next", "select").select_option("espera")
    # The branches side by side under the card; a path's target selects that step.
    fork = page.locator('[data-testid=branch-fork][data-step-id="rama"]')
    expect(fork.get_by_test_id("branch-column")).to_have_text(
        [re.compile("Ventas.*→ ventas"), re.compile("Si no.*→ espera")]
    )
    fork.get_by_role("button", name="Va a: ventas").click()
    expect(_card(page, "ventas")).to_have_class(re.compile("is-selected"))
    # References are pickers of the workspace's names: the sales message goes out on "Tienda".
    _field(page, "config.channel", "select").select_option(label="Tienda")

    # Keyboard: move the thanks card up and back down; zoom out and back.
    move_up = _card(page, "gracias").get_by_role("button", name="Subir: gracias")
    move_up.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("step-card").nth(4)).to_have_attribute("data-step-id", "gracias")
    page.keyboard.press("Tab")  # from "Subir" to "Bajar" on the same card, which kept the focus
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("step-card").nth(5)).to_have_attribute("data-step-id", "gracias")
    canvas = page.get_by_test_id("builder-canvas")
    canvas.focus()
    page.keyboard.press("-")
    expect(page.locator("[data-zoom-level]")).to_have_text("83%")
    page.keyboard.press("0")
    expect(page.locator("[data-zoom-level]")).to_have_text("100%")

    # Saving with the question's text empty: the server's error comes back beside that field.
    page.get_by_test_id("save-definition").click()
    expect(_card(page, "pregunta").get_by_test_id("card-error")).to_be_visible()
    text_error = page.get_by_test_id("builder-panel").locator('[data-field="config.text"] [data-testid=field-error]')
    expect(text_error).not_to_be_empty()
    expect(_field(page, "config.text", "textarea")).to_have_attribute("aria-invalid", "true")
    _shot(page, "85-workflow-builder-error.png")
    _field(page, "config.text", "textarea").fill(QUESTION)
    expect(text_error).to_be_empty()
    page.get_by_test_id("save-definition").click()
    expect(page.locator(".flash").first).to_contain_text("Tus cambios se han guardado")
    expect(page.get_by_test_id("card-error")).to_have_count(0)
    expect(page.get_by_test_id("definition-problems")).to_have_count(0)
    page.get_by_test_id("zoom-out").click()
    page.get_by_test_id("zoom-out").click()
    _card(page, "rama").get_by_role("button", name=re.compile("^Configurar")).click()
    _shot(page, "86-workflow-builder.png")

    # The advanced JSON editor holds the same definition.
    page.get_by_test_id("builder-toggle").click()
    saved = json.loads(page.locator("#f-definition").input_value())
    assert [s["id"] for s in saved["steps"]] == ["welcome", "pregunta", "rama", "ventas", "espera", "gracias"]
    assert saved["steps"][2]["next"] == "espera"
    assert "next" not in saved["steps"][3]
    assert isinstance(saved["steps"][3]["config"]["channel"], int)
    page.get_by_test_id("builder-toggle").click()
    expect(page.get_by_test_id("builder")).to_be_visible()

    page.fill("#f-contact", f"id:{setup.contact_id}")
    page.fill("#f-answers", "soporte")
    page.get_by_role("button", name="Simular").click()
    expect(page.get_by_test_id("simulation-result")).to_contain_text("welcome → pregunta → rama → espera → gracias")
    page.get_by_test_id("publish").click()
    expect(page.get_by_test_id("workflow-status")).to_have_text("Publicado")

    # A visitor writes on the web chat: the flow asks, branches to the wait, and thanks them when
    # they write again. The consumer and the runner are fed by hand, so nothing races the test.
    with events_tasks.nudges_paused(), workflows_tasks.nudges_paused():
        widget = f"{setup.url}/widget/{setup.channel_key}"
        token = httpx.post(f"{widget}/session", headers={"Origin": SHOP}, json={"name": "Luis"}).json()["access_token"]
        headers = {"Origin": SHOP, "Authorization": f"Bearer {token}"}
        for number, text in enumerate(["hola", "soporte", "sigo aquí"]):
            said = httpx.post(
                f"{widget}/messages", headers=headers, json={"text": text, "client_msg_id": f"builder-{number:04d}"}
            )
            assert said.status_code == 201, said.text
            feed(setup.database)
        history = httpx.get(f"{widget}/messages", headers=headers).json()
    texts = [item.get("text") for item in history["items"]]
    assert QUESTION in " ".join(t or "" for t in texts)
    assert THANKS in texts
    assert [run.status for run in runs(setup.database, workflow_id)] == ["finished"]

    with setup.database.transaction(write=False) as session:
        conversation_id = session.scalars(select(Conversation.id)).one()
    page.goto(f"{setup.url}/messages/{conversation_id}")
    expect(page.get_by_text(QUESTION).first).to_be_visible()
    expect(page.get_by_text(THANKS).first).to_be_visible()
    page.goto(f"{setup.url}/workflows/{workflow_id}")
    expect(page.get_by_test_id("run-row")).to_contain_text("Terminada")
    _shot(page, "87-workflow-run.png")
    context.close()
    assert problems == []


# Where a connector starts and ends on the screen, from its path's own geometry.
LINK_ENDS = """link => {
    const matrix = link.getScreenCTM();
    const start = link.getPointAtLength(0).matrixTransform(matrix);
    const end = link.getPointAtLength(link.getTotalLength()).matrixTransform(matrix);
    return [[start.x, start.y], [end.x, end.y]];
}"""


def _on_border(point: list[float], box: dict[str, float] | None, room: float = 1.5) -> bool:
    """Whether a point lies on a box's outline (within `room` pixels)."""
    assert box is not None
    x, y = point
    left, top, right, bottom = box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]
    inside = left - room <= x <= right + room and top - room <= y <= bottom + room
    near_edge = min(abs(x - left), abs(x - right), abs(y - top), abs(y - bottom)) <= room
    return inside and near_edge


def _link(page: Page, source: str, target: str, kind: str = "") -> Locator:
    of_kind = f'[data-kind="{kind}"]' if kind else ""
    return page.locator(f'[data-testid=builder-link][data-from="{source}"][data-to="{target}"]{of_kind}')


def _check_link(page: Page, source: str, target: str, source_box: Locator, kind: str = "") -> None:
    """The connector starts on the source's box and ends on the target card's; lines are redrawn
    on the next frame after a resize, so this waits a little for them."""
    link = _link(page, source, target, kind)
    expect(link).to_have_count(1)
    deadline = time.monotonic() + 5
    while True:
        start, end = link.evaluate(LINK_ENDS)
        source_on, target_on = source_box.bounding_box(), _card(page, target).bounding_box()
        if _on_border(start, source_on) and _on_border(end, target_on):
            return
        assert time.monotonic() < deadline, (source, target, start, source_on, end, target_on)
        page.wait_for_timeout(100)


def test_branches_and_jumps_are_joined_to_their_target_cards(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES", viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    watch(page, problems)
    sign_in_at(page, setup.url, f"/workflows/{setup.linked_id}", *MANAGER)
    fork = page.locator('[data-testid=branch-fork][data-step-id="rama"]')
    vip_column = fork.get_by_test_id("branch-column").nth(0).locator(".wfb-fork-box")
    else_column = fork.get_by_test_id("branch-column").nth(1).locator(".wfb-fork-box")

    # One line per path that goes to a card: the branch, its else, the jump back, the "→ step" chip.
    links = page.get_by_test_id("builder-link")
    expect(links).to_have_count(4)
    assert page.get_by_test_id("builder-links").get_attribute("aria-hidden") == "true"
    expect(_link(page, "rama", "vip")).to_have_attribute("data-kind", "branch")
    expect(_link(page, "rama", "resto")).to_have_attribute("data-kind", "else")
    expect(_link(page, "otra-vez", "rama")).to_have_attribute("data-kind", "jump")
    _check_link(page, "rama", "vip", vip_column)
    _check_link(page, "rama", "resto", else_column)
    _check_link(page, "otra-vez", "rama", _card(page, "otra-vez"))
    expect(_link(page, "vip", "otra-vez")).to_have_attribute("data-kind", "next")
    _check_link(page, "vip", "otra-vez", page.locator(".wfb-jump").filter(has_text="otra-vez"))
    # The jump's target is still said in words, and selects its card.
    _card(page, "otra-vez").get_by_role("button", name="Va a: rama").click()
    expect(_card(page, "rama")).to_have_class(re.compile("is-selected"))
    page.get_by_test_id("zoom-out").click()
    page.get_by_test_id("zoom-out").click()
    page.get_by_test_id("builder-canvas").focus()
    for _ in range(4):
        page.keyboard.press("ArrowDown")
    _check_link(page, "otra-vez", "rama", _card(page, "otra-vez"))
    shot(page, "89-workflow-builder-links.png")
    page.get_by_test_id("zoom-reset").click()

    # An edit redraws: the else now goes to the VIP message.
    _field(page, "next", "select").select_option("vip")
    expect(_link(page, "rama", "resto")).to_have_count(0)
    _check_link(page, "rama", "vip", else_column, "else")
    _check_link(page, "rama", "vip", vip_column, "branch")
    # Zooming and a narrower window (the side panel goes under the canvas) keep the ends on the cards.
    page.get_by_test_id("zoom-out").click()
    _check_link(page, "otra-vez", "rama", _card(page, "otra-vez"))
    page.set_viewport_size({"width": 1000, "height": 900})
    _check_link(page, "otra-vez", "rama", _card(page, "otra-vez"))
    page.get_by_test_id("zoom-reset").click()
    _check_link(page, "otra-vez", "rama", _card(page, "otra-vez"))
    context.close()
    assert problems == []


def _spanish_words() -> set[str]:
    """Every Spanish translation that differs from its English original (names like "Email" that
    are the same in both languages prove nothing)."""
    with SPANISH_CATALOGUE.open("rb") as file:
        catalogue = read_po(file)
    words: set[str] = set()
    for message in catalogue:
        pairs = (
            zip(message.id, message.string, strict=False)
            if isinstance(message.id, tuple)
            else [(message.id, message.string)]
        )
        words.update(str(translated) for original, translated in pairs if translated and translated != original)
    return words


def _no_spanish(texts: list[str], spanish: set[str]) -> None:
    found = [text for text in texts if text.strip() and text.strip() in spanish]
    assert found == [], found


def test_a_manager_whose_language_is_english_builds_in_english(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    spanish = _spanish_words()
    # The browser asks for Spanish; the manager's own language wins.
    context = browser.new_context(locale="es-ES", viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    watch(page, problems)
    workflow_id = create_workflow_draft(page, setup.url, ENGLISH_MANAGER, "Web care", "Create draft")
    expect(page.get_by_test_id("trigger-card")).to_contain_text("Conversation opened")

    # The step palette: every type by its English name.
    palette = page.get_by_test_id("new-step-type").locator("option").all_inner_texts()
    assert "Send a message" in palette
    assert "Wait" in palette
    _no_spanish(palette, spanish)
    expect(page.get_by_test_id("add-step")).to_have_text("Add step")

    # A step's form: its labels, options and outcomes in English.
    _card(page, "welcome").get_by_role("button", name=re.compile("^Configure")).click()
    _add(page, "wait", "pause")
    panel = page.get_by_test_id("builder-panel")
    expect(panel.locator(".wfb-panel-title")).to_have_text("Wait")
    form_words = panel.locator("label, legend, option, h3").all_inner_texts()
    _no_spanish(form_words, spanish)
    canvas_words = (
        page.get_by_test_id("builder-canvas").locator(".wfb-kind, .wfb-target, .wfb-column-name").all_inner_texts()
    )
    _no_spanish(canvas_words, spanish)

    # An error from the server, beside its field, in English.
    _field(page, "config.duration.amount").fill("0")
    page.get_by_test_id("save-definition").click()
    amount_error = panel.locator('[data-field="config.duration.amount"] [data-testid=field-error]')
    expect(amount_error).to_have_text("Must be 1 or more")
    expect(_card(page, "pause").get_by_test_id("card-error")).to_have_text("Must be 1 or more")

    # Fixed and saved: the flash and the saved definition.
    _field(page, "config.duration.amount").fill("15")
    _field(page, "config.duration.unit", "select").select_option("minutes")
    page.get_by_test_id("save-definition").click()
    expect(page.locator(".flash").first).to_contain_text("Your changes have been saved")
    expect(page.get_by_test_id("card-error")).to_have_count(0)
    expect(_card(page, "pause")).to_contain_text("15 minutes")
    saved = saved_definition(setup.database, workflow_id)
    assert [step["id"] for step in saved["steps"]] == ["welcome", "pause"]
    assert saved["steps"][1]["config"]["duration"] == {"amount": 15, "unit": "minutes"}
    _no_spanish(page.locator("main").inner_text().splitlines(), spanish)
    context.close()
    assert problems == []


TEMPLATE_FIELD = "config.variants[0].template"


def _whatsapp_template_variant(
    browser: Browser, setup: Setup, problems: list[str], title: str
) -> tuple[BrowserContext, Page, int]:
    """A new draft titled `title` open in the builder (Spanish) as the manager, its first step with
    a WhatsApp variant that sends a template (TEMPLATE_FIELD); the context, the page and the id."""
    context = browser.new_context(locale="es-ES", viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    watch(page, problems)
    workflow_id = create_workflow_draft(page, setup.url, MANAGER, title)
    _card(page, "welcome").get_by_role("button", name=re.compile("^Configurar")).click()
    panel = page.get_by_test_id("builder-panel")
    panel.get_by_test_id("add-variants").click()
    _field(page, "config.variants[0].channel_type", "select").select_option("whatsapp")
    panel.locator(f'[data-field="{TEMPLATE_FIELD}"] input[type=checkbox]').first.check()
    return context, page, workflow_id


def test_a_named_whatsapp_template_is_filled_in_by_name(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context, page, workflow_id = _whatsapp_template_variant(browser, setup, problems, "Rebajas por WhatsApp")
    panel = page.get_by_test_id("builder-panel")
    template = TEMPLATE_FIELD
    # The number's approved templates and their parameters' names are offered as the field is typed.
    name = _field(page, f"{template}.name")
    expect(page.locator(f"#{name.get_attribute('list')} option[value=spring_sale]")).to_have_count(1)
    name.fill("spring_sale")
    _field(page, f"{template}.language").fill("en_US")

    # Saved without its values: the server says which names are missing, in Spanish, beside the list.
    page.get_by_test_id("save-definition").click()
    missing = panel.locator(f'[data-field="{template}.named_parameters"] > [data-testid=field-error]')
    expect(missing).to_have_text(
        "La plantilla 'spring_sale' necesita un valor para: sale_start_date, first_name, discount_code"
    )
    values = {
        "sale_start_date": "el lunes",
        "first_name": '{{contact.first_name | "cliente"}}',
        "discount_code": "PRIMAVERA",
    }
    for index, (parameter, value) in enumerate(values.items()):
        panel.get_by_test_id("add-named_parameters").click()
        field = _field(page, f"{template}.named_parameters[{index}].name")
        expect(page.locator(f"#{field.get_attribute('list')} option[value={parameter}]")).to_have_count(1)
        field.fill(parameter)
        _field(page, f"{template}.named_parameters[{index}].value", "textarea").fill(value)
    page.get_by_test_id("save-definition").click()
    expect(page.locator(".flash").first).to_contain_text("Tus cambios se han guardado")
    expect(page.get_by_test_id("card-error")).to_have_count(0)
    saved = saved_definition(setup.database, workflow_id)
    assert saved["steps"][0]["config"]["variants"] == [
        {
            "channel_type": "whatsapp",
            "template": {
                "name": "spring_sale",
                "language": "en_US",
                "named_parameters": [{"name": k, "value": v} for k, v in values.items()],
            },
        }
    ]
    context.close()
    assert problems == []


def test_the_header_file_field_shows_only_for_a_template_whose_header_is_a_file(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context, page, workflow_id = _whatsapp_template_variant(browser, setup, problems, "Promo con foto")
    panel = page.get_by_test_id("builder-panel")
    template = TEMPLATE_FIELD
    media = panel.locator(f'[data-field="{template}.header_media"]')
    expect(media).to_be_hidden()  # no template chosen yet
    name = _field(page, f"{template}.name")
    name.fill("spring_sale")  # a text header
    expect(media).to_be_hidden()
    name.fill("promo_foto")  # an image header
    expect(media).to_be_visible()
    expect(media).to_contain_text("Archivo del encabezado (imagen, vídeo o documento)")
    _field(page, f"{template}.language").fill("es_MX")
    _field(page, f"{template}.parameters", "textarea").fill('{{contact.first_name | "cliente"}}')

    # Saved without the file: the server asks for it, in Spanish, beside the field.
    page.get_by_test_id("save-definition").click()
    expect(media.locator("> [data-testid=field-error]")).to_have_text(
        "La plantilla 'promo_foto' lleva un archivo en el encabezado: indica la URL https:// del archivo"
    )
    media.locator("input[type=checkbox]").first.check()
    # Its media id is the other way to give the file (labelled as such, not as a step's id).
    expect(panel.locator(f'[data-field="{template}.header_media.id"] label')).to_have_text(
        "O el id de medio del archivo en WhatsApp (dígitos), en lugar de la URL"
    )
    _field(page, f"{template}.header_media.link", "textarea").fill(
        "https://cdn.tienda.example/promos/{{contact.first_name}}.jpg"
    )
    page.get_by_test_id("save-definition").click()
    expect(page.locator(".flash").first).to_contain_text("Tus cambios se han guardado")
    expect(page.get_by_test_id("card-error")).to_have_count(0)
    saved = saved_definition(setup.database, workflow_id)
    assert saved["steps"][0]["config"]["variants"] == [
        {
            "channel_type": "whatsapp",
            "template": {
                "name": "promo_foto",
                "language": "es_MX",
                "parameters": ['{{contact.first_name | "cliente"}}'],
                "header_media": {"link": "https://cdn.tienda.example/promos/{{contact.first_name}}.jpg"},
            },
        }
    ]
    context.close()
    assert problems == []


def test_the_header_place_fields_show_only_for_a_template_whose_header_is_a_place(
    browser: Browser, setup: Setup
) -> None:
    problems: list[str] = []
    context, page, workflow_id = _whatsapp_template_variant(browser, setup, problems, "Entregas")
    panel = page.get_by_test_id("builder-panel")
    template = TEMPLATE_FIELD
    place = panel.locator(f'[data-field="{template}.header_location"]')
    media = panel.locator(f'[data-field="{template}.header_media"]')
    expect(place).to_be_hidden()
    name = _field(page, f"{template}.name")
    name.fill("promo_foto")  # an image header: the file's field, not the place's
    expect(media).to_be_visible()
    expect(place).to_be_hidden()
    name.fill("order_delivery_update")
    expect(place).to_be_visible()
    expect(media).to_be_hidden()
    expect(place).to_contain_text("Lugar del encabezado (plantilla de ubicación)")
    _field(page, f"{template}.language").fill("en_US")
    _field(page, f"{template}.parameters", "textarea").fill('{{contact.first_name | "cliente"}}\n566701')

    # Saved without the place: the server asks for it, in Spanish, beside the field.
    page.get_by_test_id("save-definition").click()
    expect(place.locator("> [data-testid=field-error]")).to_have_text(
        "La plantilla 'order_delivery_update' muestra un lugar en el encabezado: indica su latitud y su longitud"
    )
    place.locator("input[type=checkbox]").first.check()
    expect(place).to_contain_text("Latitud (de -90 a 90, admite variables)")
    expect(place).to_contain_text("Nombre del lugar (opcional)")
    _field(page, f"{template}.header_location.latitude").fill("119.4326")
    _field(page, f"{template}.header_location.longitude").fill("-99.1332")
    page.get_by_test_id("save-definition").click()
    latitude = panel.locator(f'[data-field="{template}.header_location.latitude"] > [data-testid=field-error]')
    expect(latitude).to_have_text(
        "Debe ser un número de -90 a 90, con punto para los decimales (puede ser una variable)"
    )
    _field(page, f"{template}.header_location.latitude").fill("19.4326")
    page.get_by_test_id("save-definition").click()
    expect(page.locator(".flash").first).to_contain_text("Tus cambios se han guardado")
    expect(page.get_by_test_id("card-error")).to_have_count(0)
    saved = saved_definition(setup.database, workflow_id)
    assert saved["steps"][0]["config"]["variants"] == [
        {
            "channel_type": "whatsapp",
            "template": {
                "name": "order_delivery_update",
                "language": "en_US",
                "parameters": ['{{contact.first_name | "cliente"}}', "566701"],
                "header_location": {"latitude": "19.4326", "longitude": "-99.1332"},
            },
        }
    ]
    context.close()
    assert problems == []


def test_duplicating_and_deleting_steps_keeps_the_chain(browser: Browser, setup: Setup) -> None:
    problems: list[str] = []
    context = browser.new_context(locale="es-ES", viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    watch(page, problems)
    workflow_id = create_workflow_draft(page, setup.url, MANAGER, "Copias")
    live = page.locator("[data-live]")
    welcome_text = saved_definition(setup.database, workflow_id)["steps"][0]["config"]["text"]

    # A copy goes right below its original, selected, with the same configuration and a new id; the
    # original, which ended the run, now goes on to it.
    _card(page, "welcome").get_by_role("button", name="Duplicar: welcome").click()
    expect(_card(page, "welcome-1")).to_have_class(re.compile("is-selected"))
    expect(live).to_have_text("Paso añadido: welcome-1")
    expect(_field(page, "config.text", "textarea")).to_have_value(welcome_text)
    _field(page, "config.text", "textarea").fill("Te atendemos enseguida")
    _card(page, "welcome-1").get_by_role("button", name="Duplicar: welcome-1").click()
    expect(_card(page, "welcome-2")).to_have_class(re.compile("is-selected"))
    cards = page.get_by_test_id("step-card")
    expect(cards).to_have_count(3)
    assert [card.get_attribute("data-step-id") for card in cards.all()] == ["welcome", "welcome-1", "welcome-2"]
    page.get_by_test_id("save-definition").click()
    expect(page.locator(".flash").first).to_contain_text("guardado")
    saved = saved_definition(setup.database, workflow_id)
    assert [(s["id"], s.get("next"), s["config"]["text"]) for s in saved["steps"]] == [
        ("welcome", "welcome-1", welcome_text),
        ("welcome-1", "welcome-2", "Te atendemos enseguida"),
        ("welcome-2", None, "Te atendemos enseguida"),
    ]

    # Deleting the middle step joins its neighbours; the keyboard focus goes to the one that took
    # its place (not lost with the deleted card's buttons).
    _card(page, "welcome-1").get_by_role("button", name="Eliminar: welcome-1").click()
    expect(_card(page, "welcome-1")).to_have_count(0)
    expect(live).to_have_text("Paso eliminado: welcome-1")
    expect(_card(page, "welcome-2").locator("[data-action=select]")).to_be_focused()
    page.get_by_test_id("save-definition").click()
    expect(page.locator(".flash").first).to_contain_text("guardado")
    expect(page.get_by_test_id("card-error")).to_have_count(0)
    saved = saved_definition(setup.database, workflow_id)
    assert [(s["id"], s.get("next")) for s in saved["steps"]] == [("welcome", "welcome-2"), ("welcome-2", None)]
    context.close()
    assert problems == []
