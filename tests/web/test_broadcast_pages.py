"""The broadcasts pages: Owners and Managers only, a draft edited with errors beside the fields in
es and en, the preview as real contacts receive it, the dry run and its CSV, scheduling in the
workspace's zone, the results page with its live fragment, CSV, resend to failed, and another
workspace's broadcast not found."""

import re
from collections.abc import Callable
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tertulia.broadcasts import service
from tertulia.broadcasts.models import Broadcast, BroadcastStatus
from tertulia.channels.message_templates import do_store_templates
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ProviderTemplate
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.segments.service import do_create_segment
from tertulia.users.models import Role
from tests.broadcasts.support import customers_write, draft, fake_channel, get
from tests.broadcasts.test_audience import whatsapp
from tests.channels import whatsapp_template_samples as template_samples
from tests.channels.fake_graph import FakeGraph, connect_whatsapp, fake_graph
from tests.channels.whatsapp_template_samples import INVOICE, PROMO_PHOTO
from tests.conftest import Tenant
from tests.conversations.support import sign_in as conversation_sign_in
from tests.fakes import FakeHttpAdapter, fake_provider, fakehttp_adapter
from tests.web.helpers import sign_in_as


def _error_beside(html: str, field: str) -> str:
    match = re.search(rf'<p class="field-error" id="{re.escape(field)}-error" role="alert">(.*?)</p>', html, re.S)
    assert match, f"no error beside {field}"
    return match.group(1)


__all__ = ["fakehttp_adapter"]


def test_agents_are_refused_and_the_nav_hides_the_module(client: TestClient, db: Database, tenant: Tenant) -> None:
    broadcast_id = draft(db, tenant, name="Aviso")
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.get("/broadcasts").status_code == 403
    assert client.get(f"/broadcasts/{broadcast_id}").status_code == 403
    refused = client.post(f"/broadcasts/{broadcast_id}/delete", data={"csrf_token": token})
    assert refused.status_code == 403
    assert 'href="/broadcasts"' not in client.get("/contacts").text
    assert get(db, broadcast_id).status == BroadcastStatus.DRAFT


def test_another_workspaces_broadcast_is_not_found(
    client: TestClient, db: Database, make_tenant: Callable[..., Tenant]
) -> None:
    mine, theirs = make_tenant(), make_tenant()
    other = draft(db, theirs, name="Ajeno")
    token = sign_in_as(client, db, mine.manager_id, "manager-password")
    for path in ("", "/dry-run", "/results", "/live", "/recipients.csv", "/excluded.csv"):
        assert client.get(f"/broadcasts/{other}{path}").status_code == 404, path
    assert client.post(f"/broadcasts/{other}/clone", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/broadcasts/{other}", data={"csrf_token": token, "name": "x"}).status_code == 404


def test_errors_beside_the_fields_in_spanish_and_english(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    empty = client.post("/broadcasts", data={"csrf_token": token, "name": "  "})
    assert empty.status_code == 422
    assert _error_beside(empty.text, "name") == "is required"
    created = client.post("/broadcasts", data={"csrf_token": token, "name": "Promo"}, follow_redirects=False)
    assert created.status_code == 303
    url = created.headers["location"]
    bad = client.post(
        url,
        data={"csrf_token": token, "name": "Promo", "text": "Hola {{contact.nope}}", "reply_window_hours": "x"},
        headers={"Accept-Language": "es"},
    )
    assert bad.status_code == 422
    assert _error_beside(bad.text, "reply_window_hours") == "debe ser un número entero"
    assert "{{contact.nope}}" in bad.text  # what was typed is kept
    client.cookies.set("tertulia_lang", "es")
    text_error = client.post(url, data={"csrf_token": token, "name": "Promo", "text": "Hola {{contact.nope}}"})
    assert text_error.status_code == 422
    assert _error_beside(text_error.text, "text")


def test_draft_preview_dry_run_schedule_results_and_resend(
    client: TestClient, db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        channel = fake_channel(db, tenant, provider.url)
        ids = customers_write(db, channel, ["+5215500000001", "+5215500000002", "+5215500000003"])
        with db.transaction() as session:
            segment = do_create_segment(session, tenant.actor(), "Todos", {"match": "all", "groups": []})
        token = sign_in_as(client, db, tenant.owner_id, "owner-password")
        url = client.post("/broadcasts", data={"csrf_token": token, "name": "Promo"}, follow_redirects=False).headers[
            "location"
        ]
        saved = client.post(
            url,
            data={
                "csrf_token": token,
                "name": "Promo",
                "labels": "nov, ventas",
                "audience": "segment",
                "segment_id": str(segment.id),
                "channel_mode": "specific",
                "channel_id": str(channel.id),
                "text": 'Hola {{contact.first_name | "cliente"}}',
                "reply_window_hours": "48",
                "then": "dry-run",
            },
            follow_redirects=False,
        )
        assert saved.status_code == 303, saved.text
        assert saved.headers["location"].endswith("/dry-run")
        editor = client.get(url)
        assert editor.text.count('data-testid="preview-item"') == 3
        assert "Hola cliente" in editor.text
        dry = client.get(saved.headers["location"])
        assert re.search(r'data-testid="dry-recipients">3<', dry.text)
        assert client.get(f"{url}/excluded.csv").text.startswith("contact_id,name")
        past = client.post(f"{url}/schedule", data={"csrf_token": token, "scheduled_at": "2020-01-01T10:00"})
        assert past.status_code == 422
        assert _error_beside(past.text, "scheduled_at") == "is in the past"
        later = (utcnow() + timedelta(days=1)).astimezone(ZoneInfo("America/Mexico_City"))
        scheduled = client.post(
            f"{url}/schedule",
            data={"csrf_token": token, "scheduled_at": later.strftime("%Y-%m-%dT%H:%M")},
            follow_redirects=False,
        )
        assert scheduled.status_code == 303
        broadcast_id = int(url.rsplit("/", 1)[1])
        assert get(db, broadcast_id).status == BroadcastStatus.SCHEDULED
        listing = client.get("/broadcasts")
        month = client.get(f"/broadcasts?month={later:%Y-%m}").text
        day = re.search(rf'data-day="{later:%Y-%m-%d}">(.*?)</td>', month, re.S)
        assert day, "the day of the schedule is in the grid"
        assert f"{later:%H:%M} Promo" in day.group(1)  # the owner's zone is the workspace's here
        assert 'data-testid="calendar-item"' not in client.get("/broadcasts?month=2020-01").text
        assert client.get("/broadcasts?month=2026-13").status_code == 200  # a month that is none: this one
        assert "Promo" in listing.text
        assert client.post(f"{url}/cancel", data={"csrf_token": token}).status_code == 200
        assert get(db, broadcast_id).status == BroadcastStatus.DRAFT
        # Send now: one recipient's message is refused by the provider.
        provider.script.append((400, {"error": "recipient unknown"}))
        sent = client.post(f"{url}/schedule", data={"csrf_token": token, "scheduled_at": ""}, follow_redirects=False)
        assert sent.status_code == 303
        assert get(db, broadcast_id).status == BroadcastStatus.COMPLETED
        results = client.get(url)
        assert 'data-testid="bar-sent" data-count="2"' in results.text
        assert 'data-testid="bar-failed" data-count="1"' in results.text
        assert 'hx-trigger="every 5s"' not in results.text  # finished: no more polling
        # When it was sent, no longer "scheduled for".
        assert 'data-testid="started-at"' in results.text
        assert 'data-testid="scheduled-for"' not in results.text
        assert client.get(f"{url}/live").text.count('data-testid="bar-') == 5
        failed_rows = client.get(f"{url}/results?status=failed").text
        assert failed_rows.count('data-testid="recipient-row"') == 1
        assert "recipient unknown" in failed_rows
        failures = client.get(f"{url}/recipients.csv?status=failed").text.splitlines()
        assert len(failures) == 2
        assert "recipient unknown" in failures[1]
        resent = client.post(f"{url}/resend-failed", data={"csrf_token": token}, follow_redirects=False)
        assert resent.status_code == 303
        new_url = resent.headers["location"]
        assert new_url != url
        new_draft = client.get(new_url)
        assert 'data-testid="resend-audience"' in new_draft.text
        assert new_draft.text.count('data-testid="preview-item"') == 1
        assert len(ids) == 3


def _set_status(db: Database, broadcast_id: int, status: BroadcastStatus) -> None:
    with db.transaction() as session:
        item = session.get(Broadcast, broadcast_id)
        assert item is not None
        item.status = status


def test_pause_resume_stop_clone_delete_and_a_refused_action(
    client: TestClient, db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    with fake_provider() as provider:
        channel = fake_channel(db, tenant, provider.url)
        customers_write(db, channel, ["+5215500000009"])
        broadcast_id = draft(
            db, tenant, name="Aviso", audience="all", channel_id=channel.id, content={"default": {"text": "Hola"}}
        )
        token = sign_in_as(client, db, tenant.manager_id, "manager-password")
        base = f"/broadcasts/{broadcast_id}"
        # Pausing a draft does not fit its status: the editor again, the reason on top, in Spanish.
        client.cookies.set("tertulia_lang", "es")
        refused = client.post(f"{base}/pause", data={"csrf_token": token})
        assert refused.status_code == 409
        assert "No se puede hacer mientras la difusión está en estado borrador." in refused.text
        assert get(db, broadcast_id).status == BroadcastStatus.DRAFT
        client.cookies.set("tertulia_lang", "en")
        # As a start leaves it: sending (the pages' buttons follow the status).
        _set_status(db, broadcast_id, BroadcastStatus.SENDING)
        assert 'data-testid="pause"' in client.get(base).text
        assert 'hx-trigger="every 5s"' in client.get(base).text  # under way: the figures refresh
        assert client.post(f"{base}/pause", data={"csrf_token": token}, follow_redirects=False).status_code == 303
        assert get(db, broadcast_id).status == BroadcastStatus.PAUSED
        page = client.get(base).text
        assert 'data-testid="resume"' in page
        assert 'data-testid="stop"' in page
        assert client.post(f"{base}/stop", data={"csrf_token": token}, follow_redirects=False).status_code == 303
        assert get(db, broadcast_id).status == BroadcastStatus.CANCELLED
        cloned = client.post(f"{base}/clone", data={"csrf_token": token}, follow_redirects=False)
        assert cloned.status_code == 303
        copy_url = cloned.headers["location"]
        assert "Aviso (copy)" in client.get(copy_url).text
        deleted = client.post(f"{copy_url}/delete", data={"csrf_token": token}, follow_redirects=False)
        assert deleted.headers["location"] == "/broadcasts"
        assert client.get(copy_url).status_code == 404
        # A cancelled broadcast cannot be deleted: the results page says why.
        kept = client.post(f"{base}/delete", data={"csrf_token": token})
        assert kept.status_code == 409
        assert "This cannot be done while the broadcast is cancelled." in kept.text
        listing = client.get("/broadcasts?status=cancelled")
        assert listing.text.count('data-testid="broadcast-row"') == 1
        assert client.get("/broadcasts?status=draft").text.count('data-testid="broadcast-row"') == 0


def test_unsubscribe_keywords_and_the_over_limit_choice(client: TestClient, db: Database, tenant: Tenant) -> None:
    broadcast_id = draft(db, tenant, name="Aviso")
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    assert 'value="BAJA, STOP"' in client.get("/broadcasts").text
    client.cookies.set("tertulia_lang", "es")
    long_word = "x" * 65
    bad = client.post("/broadcasts/unsubscribe-keywords", data={"csrf_token": token, "keywords": f"BAJA {long_word}"})
    assert bad.status_code == 422
    assert _error_beside(bad.text, "keywords") == "debe ser una sola palabra de 1 a 64 caracteres"
    assert long_word in bad.text
    saved = client.post(
        "/broadcasts/unsubscribe-keywords",
        data={"csrf_token": token, "keywords": "BAJA, cancelar  Stop"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    with db.transaction(write=False) as session:
        assert service.unsubscribe_keywords(session, tenant.workspace_id) == ["BAJA", "cancelar", "Stop"]
    client.cookies.set("tertulia_lang", "en")
    wrong = client.post(f"/broadcasts/{broadcast_id}/over-limit", data={"csrf_token": token, "over_limit": "maybe"})
    assert wrong.status_code == 422
    assert _error_beside(wrong.text, "over_limit") == "must be refuse or partial"
    partly = client.post(
        f"/broadcasts/{broadcast_id}/over-limit",
        data={"csrf_token": token, "over_limit": "partial"},
        follow_redirects=False,
    )
    assert partly.status_code == 303
    assert get(db, broadcast_id).over_limit == "partial"


def test_a_whatsapp_template_with_a_mapped_parameter_over_the_messaging_limit(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = whatsapp(db, tenant, messaging_limit="TIER_50")
    with travel(timedelta(hours=-25)):  # every window closed: each one gets the template
        customers_write(db, channel, [f"52155{n:08d}" for n in range(53)])
    broadcast_id = draft(db, tenant, name="Promo")
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    url = f"/broadcasts/{broadcast_id}"
    assert 'data-testid="template-list"' in client.get(url).text
    form = {
        "csrf_token": token,
        "name": "Promo",
        "audience": "all",
        "channel_mode": "specific",
        "channel_id": str(channel.id),
        "template_name": "promo",
        "template_language": "es_MX",
        "template_params": '{{contact.first_name | "cliente"}}',
    }
    saved = client.post(url, data={**form, "then": "dry-run"}, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    editor = client.get(url).text
    assert editor.count('data-testid="preview-item"') == 3
    assert "Hola cliente, tenemos 20% para ti." in editor
    refused = client.get(f"{url}/dry-run").text
    assert 'data-testid="refusal"' in refused
    assert 'data-testid="messaging-limit"' in refused
    # Refused on sending too: the reason beside the time.
    sent = client.post(f"{url}/schedule", data={"csrf_token": token, "scheduled_at": ""})
    assert sent.status_code == 422
    assert "over the WhatsApp messaging limit" in _error_beside(sent.text, "scheduled_at")
    assert get(db, broadcast_id).status == BroadcastStatus.DRAFT
    client.post(f"{url}/over-limit", data={"csrf_token": token, "over_limit": "partial"})
    partly = client.get(f"{url}/dry-run").text
    assert 'data-testid="refusal"' not in partly
    assert re.search(r'data-testid="dry-recipients">50<', partly)
    assert re.search(r'<tr data-reason="messaging_limit"><td>[^<]+</td><td>3</td>', partly)
    # An unknown template is a draft still, the template's name saying what is wrong; no preview yet.
    unknown = client.post(url, data={**form, "template_name": "nope"}, follow_redirects=False)
    assert unknown.status_code == 303
    editor = client.get(url).text
    assert _error_beside(editor, "template_name") == (
        "No WhatsApp number has a template &#39;nope&#39; in &#39;es_MX&#39; (sync the templates if it is new)"
    )
    assert 'data-testid="preview-not-ready"' in editor


def test_quick_replies_buttons_file_and_messenger_tag_are_kept_as_content(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    broadcast_id = draft(db, tenant, name="Aviso")
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    uploaded = client.post(
        "/api/v1/files", headers=tenant.headers, files={"file": ("nota.txt", b"hola", "text/plain")}
    ).json()
    url = f"/broadcasts/{broadcast_id}"
    form = {
        "csrf_token": token,
        "name": "Aviso",
        "text": "Hola",
        "file_id": str(uploaded["id"]),
        "quick_replies": "Sí\nNo",
        "buttons": "Ver la tienda | https://example.com/tienda\nLlamar",
        "message_tag": "POST_PURCHASE_UPDATE",
    }
    assert client.post(url, data=form, follow_redirects=False).status_code == 303
    content = get(db, broadcast_id).content
    assert content["default"] == {
        "text": "Hola",
        "file_ids": [uploaded["id"]],
        "quick_reply": {"buttons": [{"id": "Sí", "title": "Sí"}, {"id": "No", "title": "No"}]},
        "buttons": [
            {"title": "Ver la tienda", "url": "https://example.com/tienda"},
            {"title": "Llamar", "payload": "Llamar"},
        ],
    }
    assert content["messenger"]["message_tag"] == "POST_PURCHASE_UPDATE"
    page = client.get(url).text
    assert "Ver la tienda | https://example.com/tienda" in page
    assert '<option value="POST_PURCHASE_UPDATE" selected>' in page
    # HUMAN_AGENT is for a person's answer: not offered, and refused beside the field if sent.
    refused = client.post(url, data={**form, "message_tag": "HUMAN_AGENT"})
    assert refused.status_code == 422
    assert _error_beside(refused.text, "message_tag") == "choose one of the listed tags"
    missing = client.post(url, data={**form, "file_id": "999999"})
    assert missing.status_code == 422
    assert _error_beside(missing.text, "file_id")


def _whatsapp_draft(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph, name: str
) -> tuple[int, int, str, str]:
    """A WhatsApp number connected through the fake Graph API, Ana (its webhook sample's customer)
    who last wrote 25 hours ago so a template must go out, and a draft named `name` open to the
    manager: the number's channel id, the draft's id, the manager's CSRF token and the editor's URL."""
    created = connect_whatsapp(client, conversation_sign_in(db, tenant, Role.MANAGER).headers, graph)
    with db.transaction(write=False) as session:
        channel = session.get(Channel, created["id"])
        assert channel is not None
        session.expunge(channel)
    with travel(timedelta(hours=-25)):  # the window has closed: the template goes out
        customers_write(db, channel, ["16505551234"], first_name="Ana")
    broadcast_id = draft(db, tenant, name=name)
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    return channel.id, broadcast_id, token, f"/broadcasts/{broadcast_id}"


def test_a_named_whatsapp_template_is_filled_by_name_and_sent_in_metas_named_form(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with fake_graph([*template_samples.TEMPLATES, template_samples.SPRING_SALE]) as graph:
        channel_id, broadcast_id, token, url = _whatsapp_draft(client, db, tenant, graph, "Rebajas")
        listed = client.get(url).text
        assert "<code>spring_sale</code>" in listed
        assert "<td>first_name, discount_code</td>" in listed  # the body's names to write (the header has its field)
        form = {
            "csrf_token": token,
            "name": "Rebajas",
            "audience": "all",
            "channel_mode": "specific",
            "channel_id": str(channel_id),
            "template_name": "spring_sale",
            "template_language": "en_US",
            "template_header": "el lunes",
            "template_params": 'first_name = {{contact.first_name | "cliente"}}\ndiscount_code = PRIMAVERA\n',
        }
        unknown = client.post(
            url,
            data={**form, "template_params": form["template_params"] + "coupon = X"},
            headers={"Accept-Language": "es"},
        )
        assert unknown.status_code == 422
        assert _error_beside(unknown.text, "template_params") == (
            "La plantilla &#39;spring_sale&#39; no tiene el parámetro &#39;coupon&#39;"
            " (tiene: first_name, discount_code)"
        )
        unnamed = client.post(url, data={**form, "template_header": "", "template_params": "Ana\nPRIMAVERA\nel lunes"})
        assert unnamed.status_code == 422
        assert _error_beside(unnamed.text, "template_params") == (
            "Lines without a name: 1, 2, 3 (this template&#39;s parameters have names: write one name = value"
            " per line); Missing parameters: first_name, discount_code"
        )
        assert _error_beside(unnamed.text, "template_header") == (
            "The header needs a value for its {{sale_start_date}} (Our new sale starts {{sale_start_date}}!)"
        )
        assert client.post(url, data=form, follow_redirects=False).status_code == 303
        assert get(db, broadcast_id).content["whatsapp"]["template"]["components"] == [
            {"type": "header", "parameters": [{"text": "el lunes", "parameter_name": "sale_start_date"}]},
            {
                "type": "body",
                "parameters": [
                    {"text": '{{contact.first_name | "cliente"}}', "parameter_name": "first_name"},
                    {"text": "PRIMAVERA", "parameter_name": "discount_code"},
                ],
            },
        ]
        editor = client.get(url).text  # the header in its field, a line per body name, to edit again
        assert re.search(r'<input id="f-template_header" name="template_header" type="text" value="el lunes"', editor)
        assert (
            ">first_name = {{contact.first_name | &#34;cliente&#34;}}\ndiscount_code = PRIMAVERA</textarea>" in editor
        )
        sent = client.post(f"/api/v1/broadcasts/{broadcast_id}/schedule", headers=tenant.headers, json={})
        assert sent.status_code == 200, sent.text
        assert graph.sent[-1]["body"] == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "16505551234",
            "type": "template",
            "template": {
                "name": "spring_sale",
                "language": {"code": "en_US"},
                "components": [
                    {
                        "type": "header",
                        "parameters": [{"type": "text", "text": "el lunes", "parameter_name": "sale_start_date"}],
                    },
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Ana", "parameter_name": "first_name"},
                            {"type": "text", "text": "PRIMAVERA", "parameter_name": "discount_code"},
                        ],
                    },
                ],
            },
        }


# ----- a WhatsApp template's parameters: every problem beside its field, the header's own field -----


def _templates_on(db: Database, tenant: Tenant) -> Channel:
    """A WhatsApp number with promo (body {{1}}), seguimiento_pedido (positional, a text header
    `Pedido {{1}}` and a body of two), spring_sale (named, a header name and two body names),
    promo_foto (an IMAGE header, body {{1}}), factura_lista (a DOCUMENT header, body {{1}}) and
    order_delivery_update (a LOCATION header, body of two)."""
    channel = whatsapp(db, tenant)
    promo = ProviderTemplate(
        "1", "promo", "es_MX", "MARKETING", "APPROVED", "POSITIONAL", [{"type": "BODY", "text": "Hola {{1}}."}]
    )
    listed = [promo] + [
        ProviderTemplate(
            t["id"],
            t["name"],
            t["language"],
            t["category"],
            t["status"],
            t.get("parameter_format", "POSITIONAL"),
            t["components"],
        )
        for t in (
            template_samples.SEGUIMIENTO,
            template_samples.SPRING_SALE,
            PROMO_PHOTO,
            INVOICE,
            template_samples.ORDER_DELIVERY_UPDATE,
        )
    ]
    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        do_store_templates(session, stored, listed)
    return channel


def _header_shown(html: str, testid: str = "template-header") -> bool:
    match = re.search(rf'data-testid="{testid}"( hidden)?>', html)
    assert match, f"the {testid} field is on the page"
    return match.group(1) is None


SPRING_SALE_PROBLEMS = "first_name = Ana\nfirst_name = Eva\ncoupon = X\nsin nombre\ndiscount_code =\n"


def test_every_template_parameter_problem_is_beside_its_field_in_spanish_and_english(
    client: TestClient, db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter
) -> None:
    channel = _templates_on(db, tenant)
    broadcast_id = draft(db, tenant, name="Rebajas")
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    url = f"/broadcasts/{broadcast_id}"
    base = {"csrf_token": token, "name": "Rebajas", "audience": "all", "channel_id": str(channel.id)}
    named = {**base, "template_name": "spring_sale", "template_language": "en_US"}
    # A named template: a line without a name, a name it lacks, an empty value, a name given twice
    # and the names not given, all at once beside the field; nothing is saved, everything is kept.
    spanish = client.post(
        url, data={**named, "template_params": SPRING_SALE_PROBLEMS}, headers={"Accept-Language": "es"}
    )
    assert spanish.status_code == 422
    assert _error_beside(spanish.text, "template_params") == (
        "Líneas sin nombre: 4 (los parámetros de esta plantilla tienen nombre: escribe uno por línea como"
        " nombre = valor); La plantilla &#39;spring_sale&#39; no tiene el parámetro &#39;coupon&#39; (tiene:"
        " first_name, discount_code); discount_code no tiene valor (línea 5); first_name"
        " aparece más de una vez (líneas 1, 2); Faltan parámetros: discount_code"
    )
    assert "first_name = Eva\ncoupon = X\nsin nombre\ndiscount_code =\n</textarea>" in spanish.text
    assert get(db, broadcast_id).content == {}
    english = client.post(url, data={**named, "template_params": SPRING_SALE_PROBLEMS})
    assert english.status_code == 422
    assert _error_beside(english.text, "template_params") == (
        "Lines without a name: 4 (this template&#39;s parameters have names: write one name = value per line);"
        " Template &#39;spring_sale&#39; has no parameter &#39;coupon&#39; (it has: first_name,"
        " discount_code); discount_code has no value (line 5); first_name is given more than once (lines 1, 2);"
        " Missing parameters: discount_code"
    )
    # A named template's header value has the header field: given there and as a line too, the line
    # is refused.
    header_too = client.post(
        url, data={**named, "template_params": "first_name = Ana\nsale_start_date = hoy", "template_header": "el lunes"}
    )
    assert header_too.status_code == 422
    assert _error_beside(header_too.text, "template_params") == (
        "sale_start_date is the header&#39;s parameter: its value goes in the header text field only;"
        " Missing parameters: discount_code"
    )
    assert _header_shown(header_too.text)
    # A positional template with a text header: the header field, and the body's count.
    positional = {**base, "template_name": "seguimiento_pedido", "template_language": "es_MX"}
    too_many = client.post(
        url, data={**positional, "template_params": "Ana\nel lunes\nsobra"}, headers={"Accept-Language": "es"}
    )
    assert too_many.status_code == 422
    assert _error_beside(too_many.text, "template_params") == "El cuerpo lleva 2 valores, uno por línea; hay 3"
    assert _error_beside(too_many.text, "template_header") == (
        "El encabezado necesita un valor para su {{1}} (Pedido {{1}})"
    )
    assert _header_shown(too_many.text)
    no_header = client.post(
        url,
        data={
            **base,
            "template_name": "promo",
            "template_language": "es_MX",
            "template_params": "Ana",
            "template_header": "#42",
        },
    )
    assert no_header.status_code == 422
    assert _error_beside(no_header.text, "template_header") == (
        "This template&#39;s header takes no text value: leave it empty"
    )
    # Shown only for a template whose header takes a value.
    promo = client.post(
        url,
        data={**base, "template_name": "promo", "template_language": "es_MX", "template_params": "Ana"},
        follow_redirects=False,
    )
    assert promo.status_code == 303
    assert not _header_shown(client.get(url).text)
    # Every template with a TEXT header that takes a value, positional or named.
    assert 'data-template-header="seguimiento_pedido|es_mx spring_sale|en_us"' in client.get(url).text
    # A template still missing values holds back only a broadcast that may go out on WhatsApp.
    other = fake_channel(db, tenant, "http://127.0.0.1:9")
    elsewhere = {**positional, "channel_id": str(other.id), "text": "Hola", "template_params": "Ana"}
    assert client.post(url, data=elsewhere, follow_redirects=False).status_code == 303
    assert 'class="field-error"' not in client.get(url).text
    assert 'data-testid="dry-run-not-ready"' not in client.get(f"{url}/dry-run").text


def test_a_draft_missing_template_parameters_is_saved_and_its_dry_run_and_schedule_point_at_the_fields(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = _templates_on(db, tenant)
    with travel(timedelta(hours=-25)):
        customers_write(db, channel, ["5215500000001"], first_name="Ana")
    broadcast_id = draft(db, tenant, name="Pedidos")
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    url = f"/broadcasts/{broadcast_id}"
    form = {
        "csrf_token": token,
        "name": "Pedidos",
        "audience": "all",
        "channel_id": str(channel.id),
        "template_name": "seguimiento_pedido",
        "template_language": "es_MX",
        "template_params": '{{contact.first_name | "cliente"}}',
    }
    # Saved as typed, even asked to dry-run: the editor again, what is missing beside the fields.
    saved = client.post(url, data={**form, "then": "dry-run"}, follow_redirects=False)
    assert saved.status_code == 303
    assert saved.headers["location"] == url
    assert get(db, broadcast_id).content["whatsapp"]["template"]["components"] == [
        {"type": "body", "parameters": [{"text": '{{contact.first_name | "cliente"}}'}]}
    ]
    client.cookies.set("tertulia_lang", "es")
    editor = client.get(url).text
    assert _error_beside(editor, "template_header") == "El encabezado necesita un valor para su {{1}} (Pedido {{1}})"
    assert _error_beside(editor, "template_params") == "El cuerpo lleva 2 valores, uno por línea; hay 1"
    assert _header_shown(editor)
    assert re.search(r'data-testid="preview-not-ready">Completa los parámetros de la plantilla', editor)
    # The dry run and scheduling are refused, each problem linked to its field in the editor.
    dry = client.get(f"{url}/dry-run").text
    assert 'data-testid="dry-run"' not in dry
    assert (
        f'<li data-field="template_header"><a href="{url}#f-template_header">Valor del texto del encabezado</a>:'
        " El encabezado necesita un valor para su {{1}} (Pedido {{1}})</li>"
    ) in dry
    assert f'<a href="{url}#f-template_params">Parámetros del cuerpo</a>: El cuerpo lleva 2 valores' in dry
    refused = client.post(f"{url}/schedule", data={"csrf_token": token, "scheduled_at": ""})
    assert refused.status_code == 422
    assert _error_beside(refused.text, "scheduled_at") == (
        "Primero completa los parámetros de la plantilla en el editor (ver arriba)."
    )
    assert 'data-testid="dry-run-not-ready"' in refused.text
    assert get(db, broadcast_id).status == BroadcastStatus.DRAFT
    client.cookies.set("tertulia_lang", "en")
    english = client.get(f"{url}/dry-run").text
    assert (
        f'<a href="{url}#f-template_params">Body parameters</a>: The body takes 2 values, one per line; 1 given'
        in english
    )
    # Filled in: saved, and on to the dry run.
    done = client.post(
        url,
        data={
            **form,
            "template_header": "#42",
            "template_params": form["template_params"] + "\nel lunes",
            "then": "dry-run",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"{url}/dry-run"
    assert re.search(r'data-testid="dry-recipients">1<', client.get(f"{url}/dry-run").text)
    ready = client.get(url).text
    assert 'class="field-error"' not in ready
    assert "Pedido #42" in ready  # the preview, header filled in


def test_a_positional_header_parameter_is_stored_shown_again_and_sent_as_a_text_header(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with fake_graph(template_samples.TEMPLATES) as graph:
        channel_id, broadcast_id, token, url = _whatsapp_draft(client, db, tenant, graph, "Pedidos")
        form = {
            "csrf_token": token,
            "name": "Pedidos",
            "audience": "all",
            "channel_mode": "specific",
            "channel_id": str(channel_id),
            "template_name": "seguimiento_pedido",
            "template_language": "es_MX",
            "template_header": "#42",
            "template_params": '{{contact.first_name | "cliente"}}\nel lunes',
        }
        # A variable the header cannot use is refused beside the header field.
        unknown = client.post(url, data={**form, "template_header": "{{contact.nope}}"})
        assert unknown.status_code == 422
        assert _error_beside(unknown.text, "template_header")
        assert "template_params-error" not in unknown.text
        assert client.post(url, data=form, follow_redirects=False).status_code == 303
        assert get(db, broadcast_id).content["whatsapp"]["template"]["components"] == [
            {"type": "header", "parameters": [{"text": "#42"}]},
            {"type": "body", "parameters": [{"text": '{{contact.first_name | "cliente"}}'}, {"text": "el lunes"}]},
        ]
        editor = client.get(url).text  # shown again, each in its own field
        assert _header_shown(editor)
        assert re.search(r'<input id="f-template_header" name="template_header" type="text" value="#42"', editor)
        assert "&#34;cliente&#34;}}\nel lunes</textarea>" in editor
        assert "Pedido #42" in editor  # the preview
        sent = client.post(f"{url}/schedule", data={"csrf_token": token, "scheduled_at": ""}, follow_redirects=False)
        assert sent.status_code == 303, sent.text
        assert graph.sent[-1]["body"] == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "16505551234",
            "type": "template",
            "template": {
                "name": "seguimiento_pedido",
                "language": {"code": "es_MX"},
                "components": [
                    {"type": "header", "parameters": [{"type": "text", "text": "#42"}]},
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "el lunes"}],
                    },
                ],
            },
        }


# ----- a template whose header is a file: its https link (and a document's name) in their fields -----


def test_header_file_problems_are_beside_its_fields_in_spanish_and_english(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = _templates_on(db, tenant)
    broadcast_id = draft(db, tenant, name="Fotos")
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    url = f"/broadcasts/{broadcast_id}"
    base = {"csrf_token": token, "name": "Fotos", "audience": "all", "channel_id": str(channel.id)}
    photo = {**base, "template_name": "promo_foto", "template_language": "es_MX", "template_params": "Ana"}
    # Not an https link: refused beside the field, in the reader's language, everything kept.
    spanish = client.post(
        url,
        data={**photo, "template_header_media": "http://tienda.example/promo.jpg"},
        headers={"Accept-Language": "es"},
    )
    assert spanish.status_code == 422
    assert _error_beside(spanish.text, "template_header_media") == (
        "Escribe el enlace https:// completo del archivo, p. ej. https://tienda.example/promo.jpg, o su id de"
        " medio de WhatsApp (solo dígitos)"
    )
    assert re.search(
        r'<input id="f-template_header_media" name="template_header_media" type="text"'
        r' value="http://tienda.example/promo.jpg" aria-invalid="true"',
        spanish.text,
    )
    assert _header_shown(spanish.text, "template-header-media")
    assert not _header_shown(spanish.text, "template-header-filename")
    english = client.post(url, data={**photo, "template_header_media": "promo.jpg"})
    assert _error_beside(english.text, "template_header_media") == (
        "Write the file&#39;s full https:// link, e.g. https://tienda.example/promo.jpg, or its WhatsApp media id"
        " (digits only)"
    )
    # One file for everyone: a variable in the link is refused.
    varied = client.post(url, data={**photo, "template_header_media": "https://tienda.example/{{contact.id}}.jpg"})
    assert varied.status_code == 422
    assert _error_beside(varied.text, "template_header_media") == (
        "The header&#39;s file is the same for every contact: write its link without variables"
    )
    # A file for a template whose header takes none; a file name for an image; a name without a link.
    no_file = client.post(
        url,
        data={**photo, "template_name": "promo", "template_header_media": "https://tienda.example/promo.jpg"},
        headers={"Accept-Language": "es"},
    )
    assert no_file.status_code == 422
    assert _error_beside(no_file.text, "template_header_media") == (
        "El encabezado de esta plantilla no lleva archivo: déjalo vacío"
    )
    assert _header_shown(no_file.text, "template-header-media")
    named_image = client.post(
        url,
        data={
            **photo,
            "template_header_media": "https://tienda.example/promo.jpg",
            "template_header_filename": "promo.jpg",
        },
    )
    assert _error_beside(named_image.text, "template_header_filename") == (
        "Only a document header takes a file name: leave it empty"
    )
    alone = client.post(
        url,
        data={**photo, "template_name": "factura_lista", "template_header_filename": "factura.pdf"},
        headers={"Accept-Language": "es"},
    )
    assert _error_beside(alone.text, "template_header_filename") == (
        "El nombre de archivo acompaña al enlace del documento: escribe también el enlace"
    )
    assert _header_shown(alone.text, "template-header-filename")
    assert get(db, broadcast_id).content == {}
    # Missing: the draft is saved, the field says what it needs, and the dry run points at it.
    saved = client.post(url, data={**photo, "then": "dry-run"}, follow_redirects=False)
    assert saved.status_code == 303
    assert saved.headers["location"] == url
    client.cookies.set("tertulia_lang", "es")
    editor = client.get(url).text
    assert _error_beside(editor, "template_header_media") == (
        "El encabezado muestra una imagen: escribe su enlace https://"
    )
    assert _header_shown(editor, "template-header-media")
    assert not _header_shown(editor, "template-header-filename")
    assert not _header_shown(editor)  # the text header's field
    assert 'data-template-header="factura_lista|es_mx promo_foto|es_mx"' in editor
    assert 'data-template-header="factura_lista|es_mx"' in editor
    assert "<code>promo_foto</code></td><td>es_MX</td><td>(una imagen)</td>" in editor  # the list
    dry = client.get(f"{url}/dry-run").text
    assert (
        f'<li data-field="template_header_media"><a href="{url}#f-template_header_media">Archivo del encabezado'
        " (enlace https o id de medio)</a>: El encabezado muestra una imagen: escribe su enlace https://</li>"
    ) in dry
    client.cookies.set("tertulia_lang", "en")
    # Given: stored in Meta's form, and nothing left beside the fields.
    link = "https://tienda.example/promos/verano.jpg"
    done = client.post(url, data={**photo, "template_header_media": f" {link} "}, follow_redirects=False)
    assert done.status_code == 303
    assert get(db, broadcast_id).content["whatsapp"]["template"]["components"] == [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": link}}]},
        {"type": "body", "parameters": [{"text": "Ana"}]},
    ]
    editor = client.get(url).text
    assert 'class="field-error"' not in editor
    assert f'name="template_header_media" type="text" value="{link}"' in editor
    # A media id (digits) instead of the link: stored as Meta takes it, shown again.
    done = client.post(url, data={**photo, "template_header_media": "1479537139650973"}, follow_redirects=False)
    assert done.status_code == 303
    assert get(db, broadcast_id).content["whatsapp"]["template"]["components"][0] == {
        "type": "header",
        "parameters": [{"type": "image", "image": {"id": "1479537139650973"}}],
    }
    editor = client.get(url).text
    assert 'class="field-error"' not in editor
    assert 'name="template_header_media" type="text" value="1479537139650973"' in editor


def test_a_header_document_is_stored_shown_again_and_sent_in_metas_form(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with fake_graph([*template_samples.TEMPLATES, PROMO_PHOTO, INVOICE]) as graph:
        channel_id, broadcast_id, token, url = _whatsapp_draft(client, db, tenant, graph, "Facturas")
        link = "https://cdn.tienda.example/f/noviembre.pdf"
        form = {
            "csrf_token": token,
            "name": "Facturas",
            "audience": "all",
            "channel_mode": "specific",
            "channel_id": str(channel_id),
            "template_name": "factura_lista",
            "template_language": "es_MX",
            "template_header_media": link,
            "template_header_filename": "factura-noviembre.pdf",
            "template_params": "F-{{contact.first_name}}",
        }
        assert client.post(url, data=form, follow_redirects=False).status_code == 303
        assert get(db, broadcast_id).content["whatsapp"]["template"]["components"] == [
            {
                "type": "header",
                "parameters": [{"type": "document", "document": {"link": link, "filename": "factura-noviembre.pdf"}}],
            },
            {"type": "body", "parameters": [{"text": "F-{{contact.first_name}}"}]},
        ]
        editor = client.get(url).text  # shown again, each in its own field
        assert _header_shown(editor, "template-header-media")
        assert _header_shown(editor, "template-header-filename")
        assert re.search(
            rf'<input id="f-template_header_media" name="template_header_media" type="text" value="{link}"', editor
        )
        assert re.search(
            r'<input id="f-template_header_filename" name="template_header_filename" type="text"'
            r' value="factura-noviembre.pdf"',
            editor,
        )
        assert "Tu factura F-Ana está lista." in editor  # the preview
        sent = client.post(f"{url}/schedule", data={"csrf_token": token, "scheduled_at": ""}, follow_redirects=False)
        assert sent.status_code == 303, sent.text
        assert graph.sent[-1]["body"] == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "16505551234",
            "type": "template",
            "template": {
                "name": "factura_lista",
                "language": {"code": "es_MX"},
                "components": [
                    {
                        "type": "header",
                        "parameters": [
                            {"type": "document", "document": {"link": link, "filename": "factura-noviembre.pdf"}}
                        ],
                    },
                    {"type": "body", "parameters": [{"type": "text", "text": "F-Ana"}]},
                ],
            },
        }


# ----- a template whose header is a place (LOCATION): its four fields --------------------------------
# The template is Meta's sample ORDER_DELIVERY_UPDATE (whatsapp_template_samples); the place goes out
# as Meta's location templates page shows (developers.facebook.com/documentation/business-messaging/
# whatsapp/templates/utility-templates/location-templates).

PLACE = {
    "template_header_latitude": "19.4326",
    "template_header_longitude": "-99.1332",
    "template_header_place_name": "Tienda Centro",
    "template_header_address": "Madero 1, Ciudad de México",
}


def test_a_place_header_s_problems_are_beside_its_fields_and_a_missing_place_stops_the_dry_run(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with fake_graph([*template_samples.TEMPLATES, PROMO_PHOTO]) as graph:
        channel_id, broadcast_id, token, url = _whatsapp_draft(client, db, tenant, graph, "Entregas")
        form = {
            "csrf_token": token,
            "name": "Entregas",
            "audience": "all",
            "channel_mode": "specific",
            "channel_id": str(channel_id),
            "template_name": "order_delivery_update",
            "template_language": "en_US",
            "template_params": "Ana\n566701",
        }
        refusals = [
            ({"template_header_latitude": "91", "template_header_longitude": "0"}, "template_header_latitude", 0),
            ({"template_header_latitude": "19,43", "template_header_longitude": "0"}, "template_header_latitude", 0),
            ({"template_header_latitude": "0", "template_header_longitude": "-181"}, "template_header_longitude", 1),
            ({"template_header_place_name": "Tienda"}, "template_header_latitude", 0),
            ({**PLACE, "template_header_address": "{{contact.city}}"}, "template_header_address", 2),
        ]
        messages = {
            "es": [
                "La latitud es un número de -90 a 90, con punto para los decimales, p. ej. 19.4326",
                "La longitud es un número de -180 a 180, con punto para los decimales, p. ej. -99.1332",
                "El lugar del encabezado es el mismo para todos los contactos: escríbelo sin variables",
            ],
            "en": [
                "A latitude is a number from -90 to 90, with a point for decimals, e.g. 19.4326",
                "A longitude is a number from -180 to 180, with a point for decimals, e.g. -99.1332",
                "The header&#39;s place is the same for every contact: write it without variables",
            ],
        }
        for language, said in messages.items():
            for typed, field, which in refusals:
                refused = client.post(url, data={**form, **typed}, headers={"Accept-Language": language})
                assert refused.status_code == 422, typed
                assert _error_beside(refused.text, field) == said[which]
                assert _header_shown(refused.text, "template-header-place")
                for key, value in typed.items():  # everything typed is kept
                    assert f'name="{key}" type="text" value="{value}"' in refused.text
        # A place for a template whose header shows none.
        elsewhere = client.post(
            url, data={**form, **PLACE, "template_name": "promo_foto", "template_language": "es_MX"}
        )
        assert _error_beside(elsewhere.text, "template_header_latitude") == (
            "This template&#39;s header shows no place: leave the place&#39;s fields empty"
        )
        assert get(db, broadcast_id).content == {}
        # Missing: saved; the editor says so beside the latitude; the dry run and scheduling wait.
        saved = client.post(url, data={**form, "then": "dry-run"}, follow_redirects=False)
        assert saved.headers["location"] == url
        client.cookies.set("tertulia_lang", "es")
        editor = client.get(url).text
        assert _error_beside(editor, "template_header_latitude") == (
            "El encabezado muestra un lugar en un mapa: indica su latitud y su longitud"
        )
        assert _header_shown(editor, "template-header-place")
        assert not _header_shown(editor, "template-header-media")
        assert 'data-template-header="order_delivery_update|en_us"' in editor
        dry = client.get(f"{url}/dry-run").text
        assert (
            f'<li data-field="template_header_latitude"><a href="{url}#f-template_header_latitude">Latitud</a>:'
            " El encabezado muestra un lugar en un mapa: indica su latitud y su longitud</li>"
        ) in dry
        refused = client.post(f"{url}/schedule", data={"csrf_token": token, "scheduled_at": ""})
        assert refused.status_code == 422
        assert get(db, broadcast_id).status == BroadcastStatus.DRAFT
        assert graph.sent == []
        client.cookies.set("tertulia_lang", "en")
        english = client.get(f"{url}/dry-run").text
        assert (
            f'<a href="{url}#f-template_header_latitude">Latitude</a>:'
            " The header shows a place on a map: give its latitude and longitude"
        ) in english


def test_a_place_header_is_stored_shown_again_and_sent_in_metas_form(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with fake_graph(template_samples.TEMPLATES) as graph:
        channel_id, broadcast_id, token, url = _whatsapp_draft(client, db, tenant, graph, "Entregas")
        form = {
            "csrf_token": token,
            "name": "Entregas",
            "audience": "all",
            "channel_mode": "specific",
            "channel_id": str(channel_id),
            "template_name": "order_delivery_update",
            "template_language": "en_US",
            **{key: f" {value} " for key, value in PLACE.items()},
            "template_params": "{{contact.first_name}}\n566701",
        }
        done = client.post(url, data={**form, "then": "dry-run"}, follow_redirects=False)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"{url}/dry-run"
        place = {
            "latitude": "19.4326",
            "longitude": "-99.1332",
            "name": "Tienda Centro",
            "address": PLACE["template_header_address"],
        }
        assert get(db, broadcast_id).content["whatsapp"]["template"]["components"] == [
            {"type": "header", "parameters": [{"type": "location", "location": place}]},
            {"type": "body", "parameters": [{"text": "{{contact.first_name}}"}, {"text": "566701"}]},
        ]
        editor = client.get(url).text  # shown again, each in its own field
        assert 'class="field-error"' not in editor
        assert _header_shown(editor, "template-header-place")
        for key, value in PLACE.items():
            assert f'<input id="f-{key}" name="{key}" type="text" value="{value}"' in editor
        assert "Good news Ana! Your order #566701 is on its way" in editor  # the preview
        sent = client.post(f"{url}/schedule", data={"csrf_token": token, "scheduled_at": ""}, follow_redirects=False)
        assert sent.status_code == 303, sent.text
        assert graph.sent[-1]["body"]["template"] == {
            "name": "order_delivery_update",
            "language": {"code": "en_US"},
            "components": [
                {"type": "header", "parameters": [{"type": "location", "location": place}]},
                {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "566701"}]},
            ],
        }


@pytest.fixture
def template_editor(client: TestClient, db: Database, tenant: Tenant) -> tuple[TestClient, str, dict[str, str]]:
    channel = _templates_on(db, tenant)
    broadcast_id = draft(db, tenant, name="Cualquiera")
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    base = {"csrf_token": token, "name": "Cualquiera", "audience": "all", "channel_id": str(channel.id)}
    return client, f"/broadcasts/{broadcast_id}", base


TEMPLATE_FIELDS = (
    "template_name",
    "template_header",
    "template_header_media",
    "template_header_filename",
    "template_header_latitude",
    "template_header_longitude",
    "template_header_place_name",
    "template_header_address",
    "template_params",
)
# Any character a form can carry (NUL included: refused beside its field), line breaks of every kind.
_typed = st.text(st.characters(codec="utf-8"), max_size=40)
_line = st.one_of(
    _typed,
    st.builds(
        "{} = {}".format,
        st.sampled_from(["first_name", "discount_code", "sale_start_date", "coupon", "1"]),
        st.one_of(_typed, st.just('{{contact.first_name | "cliente"}}'), st.just("{{contact.nope}}")),
    ),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    template=st.sampled_from(
        [
            ("spring_sale", "en_US"),
            ("seguimiento_pedido", "es_MX"),
            ("promo", "es_MX"),
            ("promo_foto", "es_MX"),
            ("factura_lista", "es_MX"),
            ("order_delivery_update", "en_US"),
            ("nope", "es"),
        ]
    ),
    header=st.one_of(st.just(""), _typed),
    media=st.one_of(
        st.just(""),
        st.just("https://tienda.example/promo.jpg"),
        st.builds("https://tienda.example/{}".format, _typed),
        _typed,
    ),
    filename=st.one_of(st.just(""), st.just("catalogo.pdf"), _typed),
    place=st.fixed_dictionaries(
        {},
        optional={
            "template_header_latitude": st.one_of(st.just("19.4326"), _typed),
            "template_header_longitude": st.one_of(st.just("-99.1332"), st.just("1e400"), _typed),
            "template_header_place_name": _typed,
            "template_header_address": _typed,
        },
    ),
    lines=st.lists(_line, max_size=5).flatmap(
        lambda items: st.sampled_from(["\n", "\r\n", "\r", "\u2028"]).map(lambda sep: sep.join(items))
    ),
)
def test_any_text_in_the_template_fields_is_saved_or_refused_beside_them(
    template_editor: tuple[TestClient, str, dict[str, str]],
    template: tuple[str, str],
    header: str,
    media: str,
    filename: str,
    place: dict[str, str],
    lines: str,
) -> None:
    """On both databases: whatever is typed in the parameter fields, the draft is saved (its editor
    and dry run then open) or refused with the reason beside a template field, never a 500."""
    client, url, base = template_editor
    name, language = template
    form = {
        **base,
        "template_name": name,
        "template_language": language,
        "template_header": header,
        "template_header_media": media,
        "template_header_filename": filename,
        **place,
    }
    answer = client.post(url, data={**form, "template_params": lines}, follow_redirects=False)
    assert answer.status_code in (303, 422), answer.text
    event(f"{name}: {answer.status_code}")
    if answer.status_code == 422:
        beside = [f for f in TEMPLATE_FIELDS if f'<p class="field-error" id="{f}-error" role="alert">' in answer.text]
        assert beside, answer.text
        return
    editor = client.get(url)
    assert editor.status_code == 200
    assert client.get(f"{url}/dry-run").status_code == 200
