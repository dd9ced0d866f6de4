"""Broadcasts in a real browser, against a local fake provider (tests/fakes.py: a real HTTP server).

A manager builds a broadcast to a segment with a variable and its fallback, sees the preview as
three contacts of the audience would receive it, runs the dry run, schedules it a minute ahead in
the workspace's time zone (shown in theirs too), and the scheduler's sweep runs with the clock moved
past that minute (no real wait). The results page, open meanwhile, fills in by itself (it polls its
live fragment); one message is refused by the provider: the failures export has it, and "resend to
failed" opens a new draft for that contact. Then a WhatsApp template whose header takes a value:
its field (or, for a document header, its link and file name) appears as the template is typed,
and a draft saved without it shows what is missing beside the fields, which the dry run links to.
SQLite only, like the other browser tests.

With TERTULIA_SCREENSHOT_DIR set, the screens are saved there (docs/screenshots/ is refreshed so).
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from tertulia.broadcasts import service, tasks
from tertulia.broadcasts.models import Broadcast, BroadcastStatus
from tertulia.channels import registry
from tertulia.channels.message_templates import do_store_templates
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ProviderTemplate
from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import Contact
from tertulia.kit import queue
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.segments.service import do_create_segment
from tertulia.users.models import Role, User
from tertulia.users.permissions import Actor
from tests.broadcasts.support import customers_write
from tests.broadcasts.test_audience import NO_GRAPH
from tests.browser.conftest import require_chromium, shot, sign_in_at, wait_in_page, watch
from tests.channels import whatsapp_samples as wa
from tests.channels import whatsapp_template_samples as template_samples
from tests.channels.whatsapp_template_samples import INVOICE
from tests.fakes import FakeHttpAdapter, FakeProvider, fake_provider
from tests.live_server import fresh_sqlite_database, serve_tertulia

pytestmark = pytest.mark.browser

OWNER = ("owner@difusiones.example.com", "owner-password")
WORKSPACE_ZONE = "Europe/Madrid"
OWNER_ZONE = "America/Mexico_City"


@dataclass
class Setup:
    url: str
    database: Database
    provider: FakeProvider
    channel: Channel
    segment_id: int


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    database = fresh_sqlite_database(tmp_path_factory.mktemp("broadcasts"))
    queue.huey.immediate = True
    queue.use_database(database)
    with registry.registered(FakeHttpAdapter()), fake_provider() as provider:
        with database.transaction() as session:
            created = do_create_workspace_with_owner(
                session, "Tienda Co", *OWNER, timezone=WORKSPACE_ZONE, default_language="es"
            )
            owner = session.get(User, created.owner.id)
            assert owner is not None
            owner.timezone = OWNER_ZONE
            actor = Actor(workspace_id=created.workspace.id, kind="user", user_id=owner.id, role=Role.OWNER)
            channel = do_create_channel(session, actor, "fakehttp", "Tienda", {"url": provider.url})
            segment = do_create_segment(session, actor, "Clientes", {"match": "all", "groups": []})
            segment_id = segment.id
        customers_write(database, channel, ["+34600000001", "+34600000002"], first_name="Lucía")
        customers_write(database, channel, ["+34600000003"])
        (blocked,) = customers_write(database, channel, ["+34600000004"], first_name="Bruno")
        with database.transaction() as session:
            contact = session.get(Contact, blocked)
            assert contact is not None
            contact.blocked = True
        with serve_tertulia(database) as url:
            yield Setup(url, database, provider, channel, segment_id)
    queue.huey.immediate = False
    queue.use_database(None)
    database.dispose()


def _status(setup: Setup, broadcast_id: int) -> BroadcastStatus:
    with setup.database.transaction(write=False) as session:
        item = session.get(Broadcast, broadcast_id)
        assert item is not None
        return item.status


def test_build_dry_run_schedule_watch_export_and_resend(setup: Setup, browser: Browser) -> None:
    context = browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    watch(page, problems)
    sign_in_at(page, setup.url, "/broadcasts", *OWNER)

    page.fill("[data-testid=new-broadcast] input[name=name]", "Rebajas de invierno")
    page.click("[data-testid=new-broadcast] button[type=submit]")
    page.wait_for_url(re.compile(r"/broadcasts/\d+$"))
    broadcast_url = page.url
    broadcast_id = int(broadcast_url.rsplit("/", 1)[1])

    # A bad variable: the error beside the text, in Spanish; what was typed is kept.
    page.select_option("select[name=segment_id]", str(setup.segment_id))
    page.select_option("select[name=channel_id]", str(setup.channel.id))
    page.fill("textarea[name=text]", "Hola {{contacto.nombre}}")
    page.click("[data-testid=save-draft]")
    expect(page.locator("#text-error")).to_be_visible()
    expect(page.locator("textarea[name=text]")).to_have_value("Hola {{contacto.nombre}}")

    page.fill("input[name=labels]", "invierno, promo")
    # The variable button puts the variable at the cursor, the cursor inside its fallback's quotes.
    page.fill("textarea[name=text]", "Hola ")
    page.locator("[data-testid=insert-variable]", has_text="contact.first_name").click()
    page.keyboard.type("cliente")
    page.locator("textarea[name=text]").press("End")
    page.keyboard.type(", ¡20 % en todo!")
    expect(page.locator("textarea[name=text]")).to_have_value('Hola {{contact.first_name | "cliente"}}, ¡20 % en todo!')
    page.click("[data-testid=save-draft]")
    page.wait_for_url(broadcast_url)
    previews = page.locator("[data-testid=preview-text]")
    expect(previews).to_have_count(3)
    expect(previews.filter(has_text="Hola Lucía")).to_have_count(2)
    expect(previews.filter(has_text="Hola cliente")).to_have_count(1)
    shot(page, "81-broadcast-editor.png")

    page.click("[data-testid=save-dry-run]")
    page.wait_for_url(re.compile(r"/dry-run$"))
    expect(page.locator("[data-testid=dry-audience]")).to_have_text("4")
    expect(page.locator("[data-testid=dry-recipients]")).to_have_text("3")
    expect(page.locator("[data-testid=dry-excluded]")).to_have_text("1")
    expect(page.locator("[data-reason=blocked]")).to_contain_text("1")
    shot(page, "82-broadcast-dry-run.png")
    with page.expect_download() as excluded_info:
        page.click("[data-testid=excluded-csv]")
    excluded = Path(excluded_info.value.path()).read_text().splitlines()
    assert len(excluded) == 2
    assert "Bruno" in excluded[1]
    assert "blocked" in excluded[1]

    # A minute ahead, in the workspace's zone.
    madrid = (utcnow() + timedelta(minutes=2)).astimezone(ZoneInfo(WORKSPACE_ZONE))
    page.fill("input[name=scheduled_at]", madrid.strftime("%Y-%m-%dT%H:%M"))
    page.click("[data-testid=schedule-submit]")
    page.wait_for_url(broadcast_url)
    expect(page.locator("[data-testid=broadcast-status]")).to_have_attribute("data-status", "scheduled")
    expect(page.locator("[data-testid=time-workspace]")).to_contain_text(madrid.strftime("%H:%M"))
    mexico = madrid.astimezone(ZoneInfo(OWNER_ZONE))
    expect(page.locator("[data-testid=time-mine]")).to_contain_text(mexico.strftime("%H:%M"))

    list_page = context.new_page()
    watch(list_page, problems)
    list_page.goto(f"{setup.url}/broadcasts?month={mexico:%Y-%m}")
    expect(list_page.locator("[data-testid=calendar-item]")).to_contain_text("Rebajas de invierno")
    shot(list_page, "80-broadcasts-list-calendar.png")
    list_page.close()

    # The scheduler's sweep with the clock three minutes on: the broadcast starts and sends. The
    # provider refuses one message. The open page fills in by itself.
    expect(page.locator("[data-testid=bar-sent]")).to_have_attribute("data-count", "0")
    setup.provider.script.append((400, {"error": "recipient unknown"}))
    with travel(timedelta(minutes=3)):
        tasks.sweep()
        assert _status(setup, broadcast_id) == BroadcastStatus.COMPLETED
    expect(page.locator("[data-testid=bar-sent]")).to_have_attribute("data-count", "2", timeout=20_000)
    expect(page.locator("[data-testid=bar-failed]")).to_have_attribute("data-count", "1")
    page.reload()
    expect(page.locator("[data-testid=broadcast-status]")).to_have_attribute("data-status", "completed")
    expect(page.locator("[data-testid=recipient-row]")).to_have_count(4)  # the blocked one, excluded
    expect(page.locator("[data-testid=recipient-row][data-status=excluded]")).to_have_count(1)
    shot(page, "83-broadcast-results.png")

    with page.expect_download() as download_info:
        page.click("[data-testid=failed-csv]")
    lines = Path(download_info.value.path()).read_text().splitlines()
    assert lines[0].startswith("contact_id,name")
    assert len(lines) == 2
    assert "recipient unknown" in lines[1]

    page.click("[data-testid=resend-failed]")
    page.wait_for_url(re.compile(r"/broadcasts/\d+$"))
    assert page.url != broadcast_url
    expect(page.locator("[data-testid=resend-audience]")).to_be_visible()
    expect(page.locator("[data-testid=preview-item]")).to_have_count(1)
    shot(page, "84-broadcast-resend-draft.png")
    context.close()
    assert problems == []


def test_the_header_field_follows_the_typed_template_and_missing_parameters_are_shown_beside_it(
    setup: Setup, browser: Browser
) -> None:
    """A positional template whose header takes a value: its field appears as the template is typed
    (and goes for one whose header takes none); a draft saved without it shows what is missing
    beside the fields, and the dry run points at them."""
    with setup.database.transaction() as session:
        owner = session.scalar(select(User).where(User.email == OWNER[0]))
        assert owner is not None
        actor = Actor(workspace_id=setup.channel.workspace_id, kind="user", user_id=owner.id, role=Role.OWNER)
        number = do_create_channel(
            session,
            actor,
            "whatsapp",
            "WhatsApp",
            {
                "phone_number_id": wa.PHONE_NUMBER_ID,
                "business_account_id": wa.BUSINESS_ACCOUNT_ID,
                "api_base_url": NO_GRAPH,
            },
            {"access_token": "EAAG-test-token", "app_secret": wa.APP_SECRET},
        )
        seguimiento = template_samples.SEGUIMIENTO
        delivery = template_samples.ORDER_DELIVERY_UPDATE
        spring = template_samples.SPRING_SALE
        promo_body = [{"type": "BODY", "text": "Hola {{1}}."}]
        do_store_templates(
            session,
            number,
            [
                ProviderTemplate("1", "promo", "es_MX", "MARKETING", "APPROVED", "POSITIONAL", promo_body),
                ProviderTemplate(
                    seguimiento["id"],
                    seguimiento["name"],
                    seguimiento["language"],
                    "UTILITY",
                    "APPROVED",
                    "POSITIONAL",
                    seguimiento["components"],
                ),
                ProviderTemplate(
                    INVOICE["id"], INVOICE["name"], "es_MX", "UTILITY", "APPROVED", "POSITIONAL", INVOICE["components"]
                ),
                ProviderTemplate(
                    spring["id"], spring["name"], "en_US", "MARKETING", "APPROVED", "NAMED", spring["components"]
                ),
                ProviderTemplate(
                    delivery["id"],
                    delivery["name"],
                    "en_US",
                    "UTILITY",
                    "APPROVED",
                    "POSITIONAL",
                    delivery["components"],
                ),
            ],
        )
        number_id = number.id
    context = browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    watch(page, problems)
    sign_in_at(page, setup.url, "/broadcasts", *OWNER)
    page.fill("[data-testid=new-broadcast] input[name=name]", "Pedidos")
    page.click("[data-testid=new-broadcast] button[type=submit]")
    page.wait_for_url(re.compile(r"/broadcasts/\d+$"))
    broadcast_url = page.url
    page.select_option("select[name=audience]", "all")
    page.select_option("select[name=channel_id]", str(number_id))
    page.get_by_test_id("whatsapp-template").locator("summary").click()
    header = page.locator("[data-testid=template-header]")
    expect(header).to_be_hidden()
    page.fill("input[name=template_name]", "seguimiento_pedido")
    page.fill("input[name=template_language]", "es-MX")  # either spelling
    expect(header).to_be_visible()
    page.fill("input[name=template_name]", "promo")
    expect(header).to_be_hidden()
    # A named template's header parameter has the same field.
    page.fill("input[name=template_name]", "spring_sale")
    page.fill("input[name=template_language]", "en_US")
    expect(header).to_be_visible()
    expect(page.locator("label[for=f-template_header]")).to_have_text("Valor del texto del encabezado")
    page.fill("input[name=template_language]", "es-MX")
    page.fill("input[name=template_name]", "promo")
    expect(header).to_be_hidden()
    # A template whose header is a document: its link's field and its file name's instead.
    media = page.locator("[data-testid=template-header-media]")
    filename = page.locator("[data-testid=template-header-filename]")
    expect(media).to_be_hidden()
    page.fill("input[name=template_name]", "factura_lista")
    expect(media).to_be_visible()
    expect(filename).to_be_visible()
    expect(header).to_be_hidden()
    # A template whose header is a place: its four fields instead.
    place = page.locator("[data-testid=template-header-place]")
    expect(place).to_be_hidden()
    page.fill("input[name=template_name]", "order_delivery_update")
    page.fill("input[name=template_language]", "en_US")
    expect(place).to_be_visible()
    expect(media).to_be_hidden()
    page.fill("input[name=template_language]", "es_MX")
    expect(place).to_be_hidden()
    page.fill("input[name=template_name]", "seguimiento_pedido")
    expect(header).to_be_visible()
    expect(media).to_be_hidden()
    expect(filename).to_be_hidden()
    page.fill("textarea[name=template_params]", "Ana")
    page.click("[data-testid=save-dry-run]")
    page.wait_for_url(broadcast_url)  # saved, but not ready for a dry run
    expect(page.locator("#template_header-error")).to_have_text(
        "El encabezado necesita un valor para su {{1}} (Pedido {{1}})"
    )
    expect(page.locator("#template_params-error")).to_have_text("El cuerpo lleva 2 valores, uno por línea; hay 1")
    expect(page.locator("input[name=template_header]")).to_be_visible()
    # The list of templates fits the section (nothing cut on the right).
    template_list = page.get_by_test_id("template-list")
    widths = template_list.evaluate("t => [t.scrollWidth, t.parentElement.clientWidth]")
    assert widths[0] <= widths[1], widths
    # Tall enough for the whole section to be in view below the sticky top bar for its screenshot.
    page.set_viewport_size({"width": 1280, "height": 2000})
    shot(page.get_by_test_id("whatsapp-template"), "84-broadcast-template-parameters.png")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{broadcast_url}/dry-run")
    expect(page.locator("[data-testid=dry-run-not-ready] li")).to_have_count(2)
    page.locator("[data-testid=dry-run-not-ready] li[data-field=template_header] a").click()
    page.wait_for_url(f"{broadcast_url}#f-template_header")
    # The field jumped to, and its label, are below the sticky top bar, not under it.
    wait_in_page(page, "() => window.scrollY > 0")
    bar = page.locator(".topbar").bounding_box()
    label = page.locator("label[for=f-template_header]").bounding_box()
    assert bar is not None
    assert label is not None
    assert label["y"] >= bar["y"] + bar["height"], (label, bar)
    page.fill("input[name=template_header]", "#42")
    page.fill("textarea[name=template_params]", "Ana\nel lunes")
    page.click("[data-testid=save-draft]")
    page.wait_for_url(broadcast_url)
    expect(page.locator(".field-error")).to_have_count(0)
    expect(page.locator("input[name=template_header]")).to_have_value("#42")
    # The place's fields: a latitude out of range is refused beside it, then the place is kept.
    page.fill("input[name=template_header]", "")
    page.fill("input[name=template_name]", "order_delivery_update")
    page.fill("input[name=template_language]", "en_US")
    page.fill("input[name=template_header_latitude]", "119.4326")
    page.fill("input[name=template_header_longitude]", "-99.1332")
    page.fill("input[name=template_header_place_name]", "Tienda Centro")
    page.fill("textarea[name=template_params]", "Ana\n566701")
    page.click("[data-testid=save-draft]")
    expect(page.locator("#template_header_latitude-error")).to_have_text(
        "La latitud es un número de -90 a 90, con punto para los decimales, p. ej. 19.4326"
    )
    expect(page.locator("input[name=template_header_place_name]")).to_have_value("Tienda Centro")
    page.fill("input[name=template_header_latitude]", "19.4326")
    page.click("[data-testid=save-draft]")
    page.wait_for_url(broadcast_url)
    expect(page.locator(".field-error")).to_have_count(0)
    expect(page.locator("[data-testid=template-header-place]")).to_be_visible()
    expect(page.locator("input[name=template_header_latitude]")).to_have_value("19.4326")
    expect(page.locator("input[name=template_header_address]")).to_have_value("")
    context.close()
    assert problems == []


LONG_SEGMENT = "Clientes frecuentes de Ciudad de México con compras en los últimos 90 días y sin baja de difusiones"
LONG_NAMES = (
    "Reactivación de clientes inactivos de la tienda en línea: campaña de invierno con 20 % de descuento 2026",
    "Promo_BlackFriday_2026_clientes_frecuentes_CDMX_y_area_metropolitana_segmento_premium_envio_2",
)


def test_the_list_fits_a_1280_pixel_window_with_long_names(setup: Setup, browser: Browser) -> None:
    """Long names (one without spaces), long labels and a long segment as the audience: the table
    and the calendar fit their card at 1280x800, so nothing needs a horizontal scroll."""
    with setup.database.transaction() as session:
        owner = session.scalar(select(User).where(User.email == OWNER[0]))
        assert owner is not None
        actor = Actor(workspace_id=setup.channel.workspace_id, kind="user", user_id=owner.id, role=Role.OWNER)
        segment = do_create_segment(session, actor, LONG_SEGMENT, {"match": "all", "groups": []})
        when = utcnow() + timedelta(days=1)
        for number, name in enumerate(LONG_NAMES):
            item = service.do_create_broadcast(
                session,
                actor,
                service.DraftFields(
                    name=name,
                    labels=["invierno", "reactivación-clientes-inactivos-2026"],
                    segment_id=segment.id,
                    channel_id=setup.channel.id,
                    content={"default": {"text": "Hola"}},
                ),
            )
            # One scheduled and one completed: both show their time, and the list its figures.
            item.status = BroadcastStatus.SCHEDULED if number == 0 else BroadcastStatus.COMPLETED
            item.scheduled_at = when if number == 0 else utcnow()
            if number:
                item.started_at = item.finished_at = utcnow()
    context = browser.new_context(locale="es-ES", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    watch(page, problems)
    sign_in_at(page, setup.url, "/broadcasts", *OWNER)
    for name in LONG_NAMES:
        expect(page.locator("[data-testid=broadcast-row]", has_text=name)).to_be_visible()
    table = page.get_by_test_id("broadcast-table")
    sizes = table.evaluate(
        "t => ({table: t.scrollWidth, box: t.parentElement.clientWidth, card: t.closest('.card').clientWidth,"
        " page: document.documentElement.scrollWidth, window: document.documentElement.clientWidth})"
    )
    assert sizes["table"] <= sizes["box"], sizes
    assert sizes["box"] <= sizes["card"], sizes
    assert sizes["page"] <= sizes["window"], sizes  # nor does the page scroll sideways
    calendar = page.get_by_test_id("calendar").locator("table")
    fits = calendar.evaluate("t => [t.scrollWidth, t.parentElement.clientWidth]")
    assert fits[0] <= fits[1], fits
    # Every figure column is still there at this width.
    expect(table.locator("thead th")).to_have_count(9)
    for th in table.locator("thead th").all():
        expect(th).to_be_visible()
    shot(
        page.locator("[data-testid=broadcast-table]").locator("xpath=ancestor::section[1]"),
        "80-broadcasts-list-long-names.png",
    )
    context.close()
    assert problems == []
