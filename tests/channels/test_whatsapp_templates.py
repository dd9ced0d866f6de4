"""WhatsApp message templates: read from the Graph API when a number is connected (every page), kept
in step by Meta's template and quality webhooks, and the rules a template message must follow before
anything is sent (the stored template's name, language, status and parameters)."""

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.channels.adapters.whatsapp import WhatsAppAdapter, signature
from tertulia.channels.models import Channel, MessageTemplate
from tertulia.channels.protocol import PermanentError, TransientError, WebhookRequest
from tertulia.conversations.models import Message
from tertulia.kit.clock import travel
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tests.channels import whatsapp_samples as wa
from tests.channels import whatsapp_template_samples as samples
from tests.channels.fake_graph import TOKEN, FakeGraph, connect_whatsapp, fake_graph
from tests.conftest import Tenant
from tests.conversations.support import sign_in
from tests.fakes import callbacks_written

CONFIG = {"phone_number_id": wa.PHONE_NUMBER_ID, "business_account_id": wa.BUSINESS_ACCOUNT_ID}
SECRETS = {"access_token": TOKEN, "app_secret": wa.APP_SECRET}


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with fake_graph(samples.TEMPLATES) as server:
        server.page_size = 2  # five templates: three pages
        yield server


def _manager(db: Database, tenant: Tenant) -> dict[str, str]:
    return sign_in(db, tenant, Role.MANAGER).headers


def _connect(client: TestClient, tenant: Tenant, graph: FakeGraph) -> dict[str, Any]:
    return connect_whatsapp(client, _manager(client.app.state.db, tenant), graph)  # type: ignore[attr-defined]


def _stored(db: Database, channel_id: int) -> dict[str, MessageTemplate]:
    with db.transaction(write=False) as session:
        rows = session.scalars(select(MessageTemplate).where(MessageTemplate.channel_id == channel_id))
        found = {t.name: t for t in rows}
        for template in found.values():
            session.expunge(template)
    return found


def _post(client: TestClient, key: str, data: dict[str, Any]) -> None:
    raw = wa.body(data)
    channel = Channel(secrets={"app_secret": wa.APP_SECRET})
    response = client.post(
        f"/webhooks/{key}", content=raw, headers={"X-Hub-Signature-256": f"sha256={signature(channel, raw)}"}
    )
    assert response.status_code == 200, response.text
    callbacks_written(client.app.state.db)  # type: ignore[attr-defined]


# ----- sync -----------------------------------------------------------------------------------------


def test_connecting_reads_every_page_of_the_account_s_templates(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, tenant, graph)
    # Three pages: the second and third asked for with the previous page's `after` cursor, sent to
    # our own API address (Meta's `next` link points elsewhere).
    assert [q.get("after") for q in graph.template_requests] == [None, ["2"], ["4"]]
    assert "parameter_format" in graph.template_requests[0]["fields"][0]
    stored = _stored(db, channel["id"])
    assert set(stored) == {t["name"] for t in samples.TEMPLATES}
    seguimiento = stored["seguimiento_pedido"]
    assert (seguimiento.language, seguimiento.category, seguimiento.status) == ("es_MX", "UTILITY", "APPROVED")
    assert (seguimiento.parameter_format, seguimiento.quality) == ("POSITIONAL", "GREEN")
    assert seguimiento.components == samples.SEGUIMIENTO["components"]
    assert seguimiento.provider_template_id == "730512345678901"
    assert stored["order_confirmation"].parameter_format == "NAMED"
    # No parameter_format in Meta's own sample: positional is the documented default.
    assert stored["order_delivery_update"].parameter_format == "POSITIONAL"
    assert stored["abandoned_cart"].status == "PENDING"
    listed = client.get(f"/api/v1/channels/{channel['id']}/templates", headers=_manager(db, tenant)).json()
    assert listed["synced_at"] is not None
    assert listed["sync_error"] is None
    confirmation = next(t for t in listed["items"] if t["name"] == "order_confirmation")
    assert confirmation["body"] == "Thank you, {{first_name}}! Your order number is {{order_number}}."
    assert [p["key"] for p in confirmation["parameters"]] == ["first_name", "order_number"]
    delivery = next(t for t in listed["items"] if t["name"] == "order_delivery_update")
    assert [(p["component"], p["key"], p["kind"]) for p in delivery["parameters"]] == [
        ("header", "1", "location"),
        ("body", "1", "text"),
        ("body", "2", "text"),
    ]


def test_a_sync_follows_the_account_and_keeps_the_last_error(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, tenant, graph)
    graph.templates = [{**samples.SEGUIMIENTO, "status": "PAUSED"}, samples.WELCOME]
    synced = client.post(f"/api/v1/channels/{channel['id']}/templates/sync", headers=_manager(db, tenant))
    assert synced.status_code == 202
    stored = _stored(db, channel["id"])
    assert set(stored) == {"seguimiento_pedido", "welcome_template"}  # gone from Meta: gone here
    assert stored["seguimiento_pedido"].status == "PAUSED"
    assert stored["seguimiento_pedido"].status_changed_at is not None
    graph.fail_templates = (401, wa.graph_error(190, "Error validating access token"))
    client.post(f"/api/v1/channels/{channel['id']}/templates/sync", headers=_manager(db, tenant))
    listed = client.get(f"/api/v1/channels/{channel['id']}/templates", headers=_manager(db, tenant)).json()
    assert listed["sync_error"] == "(#190) Error validating access token"
    assert len(listed["items"]) == 2  # what we had stays


def test_only_managers_sync_and_only_their_own_channels(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, tenant, graph)
    agent = sign_in(db, tenant, Role.AGENT).headers
    refused = client.post(f"/api/v1/channels/{channel['id']}/templates/sync", headers=agent)
    assert refused.status_code == 403
    unknown = client.post(f"/api/v1/channels/{channel['id'] + 999}/templates/sync", headers=_manager(db, tenant))
    assert unknown.status_code == 404


# ----- webhooks ------------------------------------------------------------------------------------


def test_template_status_category_and_quality_webhooks_update_the_stored_templates(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, tenant, graph)
    key = channel["key"]
    _post(client, key, samples.STATUS_REJECTED)
    rejected = _stored(db, channel["id"])["abandoned_cart"]
    assert rejected.status == "REJECTED"
    assert rejected.reason is not None
    assert rejected.reason.startswith("INVALID_FORMAT · Your template has parameters placed next to each other")
    assert "Separate parameters with descriptive text" in rejected.reason
    _post(client, key, samples.STATUS_APPROVED)
    approved = _stored(db, channel["id"])["abandoned_cart"]
    assert (approved.status, approved.reason) == ("APPROVED", None)
    # The webhook says es-MX where the list says es_MX, and names the template by its id.
    _post(client, key, samples.STATUS_PAUSED)
    paused = _stored(db, channel["id"])["seguimiento_pedido"]
    assert (paused.status, paused.reason) == ("PAUSED", "FIRST_PAUSE · Your WhatsApp message template has been paused.")
    _post(client, key, samples.STATUS_DISABLED)
    assert _stored(db, channel["id"])["seguimiento_pedido"].status == "DISABLED"
    _post(client, key, samples.CATEGORY_IMPENDING)  # a warning: nothing changes yet
    assert _stored(db, channel["id"])["welcome_template"].category == "UTILITY"
    _post(client, key, samples.CATEGORY_CHANGED)
    welcome = _stored(db, channel["id"])["welcome_template"]
    assert (welcome.category, welcome.previous_category) == ("MARKETING", "UTILITY")


def test_a_webhook_about_a_template_we_have_not_read_reads_the_account_again(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    graph.templates = [samples.WELCOME]
    channel = _connect(client, tenant, graph)
    assert set(_stored(db, channel["id"])) == {"welcome_template"}
    # Created and approved in WhatsApp Manager since: the webhook comes first, the text with a sync.
    graph.templates = [samples.WELCOME, {**samples.ABANDONED_CART, "status": "APPROVED"}]
    _post(client, channel["key"], samples.STATUS_APPROVED)
    cart = _stored(db, channel["id"])["abandoned_cart"]
    assert (cart.status, cart.category) == ("APPROVED", "MARKETING")
    assert cart.components == samples.ABANDONED_CART["components"]
    requests = len(graph.template_requests)
    _post(client, channel["key"], samples.STATUS_REJECTED)  # known now: no new sync
    assert len(graph.template_requests) == requests


def test_the_number_s_quality_and_limit_come_from_its_webhook_newest_first(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, tenant, graph)
    _post(client, channel["key"], samples.QUALITY_THROUGHPUT)
    _post(client, channel["key"], samples.QUALITY_FLAGGED)  # older: arrives late, changes nothing
    listed = client.get(f"/api/v1/channels/{channel['id']}/templates", headers=_manager(db, tenant)).json()
    assert (listed["quality_event"], listed["messaging_limit"]) == ("THROUGHPUT_UPGRADE", "TIER_UNLIMITED")
    newer = json.loads(json.dumps(samples.QUALITY_FLAGGED))
    newer["entry"][0]["time"] = 1748460000
    _post(client, channel["key"], newer)
    listed = client.get(f"/api/v1/channels/{channel['id']}/templates", headers=_manager(db, tenant)).json()
    assert (listed["quality_event"], listed["messaging_limit"]) == ("FLAGGED", "TIER_2K")


def test_webhooks_of_another_account_or_number_change_nothing(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, tenant, graph)
    other = json.loads(json.dumps(samples.STATUS_REJECTED))
    other["entry"][0]["id"] = "999999999"
    _post(client, channel["key"], other)
    other_number = json.loads(json.dumps(samples.QUALITY_FLAGGED))
    other_number["entry"][0]["changes"][0]["value"]["display_phone_number"] = "15550000000"
    _post(client, channel["key"], other_number)
    assert _stored(db, channel["id"])["abandoned_cart"].status == "PENDING"
    listed = client.get(f"/api/v1/channels/{channel['id']}/templates", headers=_manager(db, tenant)).json()
    assert listed["quality_event"] is None


# ----- sending ------------------------------------------------------------------------------------


def _customer_writes(client: TestClient, db: Database, key: str) -> int:
    _post(client, key, wa.TEXT)
    with db.transaction(write=False) as session:
        contact_id = session.scalar(select(Message.contact_id).where(Message.provider_message_id == wa.TEXT_ID))
    assert contact_id is not None
    return contact_id


def _template(name: str, code: str, *components: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "language": {"code": code}, "components": list(components)}


def _body(*texts: str, names: tuple[str, ...] = ()) -> dict[str, Any]:
    parameters = [
        {"type": "text", "text": text, **({"parameter_name": names[i]} if names else {})}
        for i, text in enumerate(texts)
    ]
    return {"type": "body", "parameters": parameters}


@pytest.mark.parametrize(
    ("template", "code", "path"),
    [
        (_template("no_such_template", "es_MX"), "template_unknown", "message.template.name"),
        (_template("seguimiento_pedido", "en_US"), "template_unknown", "message.template.name"),
        (_template("abandoned_cart", "en", _body("Ana")), "template_not_approved", "message.template.name"),
        (
            _template("seguimiento_pedido", "es_MX", _body("Ana")),
            "template_parameters",
            "message.template.components[0].parameters",
        ),
        (
            _template("seguimiento_pedido", "es_MX", _body("Ana", "lunes")),
            "template_parameters",
            "message.template.components",
        ),
        (
            _template("seguimiento_pedido", "es_MX", {"type": "header", "parameters": []}, _body("Ana", "lunes")),
            "template_parameters",
            "message.template.components[0].parameters",
        ),
        (
            _template("order_confirmation", "en_US", _body("Ana", "42", names=("first_name", "order"))),
            "template_parameters",
            "message.template.components[0].parameters[1]",
        ),
        (
            _template("order_confirmation", "en_US", _body("Ana", "42")),
            "template_parameters",
            "message.template.components[0].parameters[0]",
        ),
        (
            _template("welcome_template", "en_US", _body("de más")),
            "template_parameters",
            "message.template.components[0]",
        ),
        (
            _template(
                "seguimiento_pedido",
                "es_MX",
                {"type": "header", "parameters": [{"type": "text", "text": "#7"}]},
                _body("  ", "lunes"),
            ),
            "template_parameters",
            "message.template.components[1].parameters[0]",
        ),
    ],
)
def test_a_template_message_must_match_the_stored_template(
    client: TestClient,
    db: Database,
    tenant: Tenant,
    graph: FakeGraph,
    template: dict[str, Any],
    code: str,
    path: str,
) -> None:
    channel = _connect(client, tenant, graph)
    contact_id = _customer_writes(client, db, channel["key"])
    body = {"channel_id": channel["id"], "message": {"type": "whatsapp_template", "template": template}}
    refused = client.post(f"/api/v1/contacts/id:{contact_id}/messages", headers=tenant.headers, json=body)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == code
    assert path in error["details"]
    assert graph.sent == []  # refused before any call to Meta


def test_templates_go_out_after_the_window_with_variables_filled_in(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, tenant, graph)
    contact_id = _customer_writes(client, db, channel["key"])
    url = f"/api/v1/contacts/id:{contact_id}/messages"
    positional = _template(
        "seguimiento_pedido",
        "es_MX",
        {"type": "header", "parameters": [{"text": "#42"}]},  # no type: Meta's needs it, added before sending
        _body('{{contact.first_name | "cliente"}}', "lunes"),
    )
    named = _template(
        "order_confirmation",
        "en_US",
        _body("860198", "{{contact.first_name}}", names=("order_number", "first_name")),
    )
    with travel(timedelta(hours=25)):
        text = {"channel_id": channel["id"], "message": {"type": "text", "text": "¿Sigues ahí?"}}
        assert client.post(url, headers=tenant.headers, json=text).json()["error"]["code"] == "reply_window_closed"
    # Seven seconds apart: the outbox sends one message every 6 s to the same customer.
    for later, template in ((timedelta(hours=25), positional), (timedelta(hours=25, seconds=7), named)):
        with travel(later):
            body = {"channel_id": channel["id"], "message": {"type": "whatsapp_template", "template": template}}
            sent = client.post(url, headers=tenant.headers, json=body)
            assert sent.status_code == 201, sent.text
    first, second = (request["body"]["template"] for request in graph.sent)
    assert first == {
        "name": "seguimiento_pedido",
        "language": {"code": "es_MX"},
        "components": [
            {"type": "header", "parameters": [{"type": "text", "text": "#42"}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Sheena"}, {"type": "text", "text": "lunes"}]},
        ],
    }
    assert second["components"][0]["parameters"] == [
        {"type": "text", "text": "860198", "parameter_name": "order_number"},
        {"type": "text", "text": "Sheena", "parameter_name": "first_name"},
    ]
    with db.transaction(write=False) as session:
        texts = list(
            session.scalars(
                select(Message.text).where(Message.channel_id == channel["id"], Message.direction == "outgoing")
            )
        )
    # The inbox shows what the customer read.
    assert texts == [
        "Pedido #42\n\nHola Sheena, tu pedido llega el lunes.\n\nTienda Tertulia",
        "Thank you, Sheena! Your order number is 860198.",
    ]


def test_the_composer_s_window_templates_and_preview(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connect(client, tenant, graph)
    _customer_writes(client, db, channel["key"])
    agent = sign_in(db, tenant, Role.AGENT).headers
    with db.transaction(write=False) as session:
        conversation_id = session.scalar(
            select(Message.conversation_id).where(Message.provider_message_id == wa.TEXT_ID)
        )
    opened = client.get(f"/api/v1/conversations/{conversation_id}", headers=agent).json()
    assert opened["reply_window_open"] is True
    assert opened["templates_outside_window"] is True
    closes = opened["reply_window_closes_at"]
    with travel(timedelta(hours=25)):
        later = client.get(f"/api/v1/conversations/{conversation_id}", headers=agent).json()
    assert later["reply_window_open"] is False
    assert later["reply_window_closes_at"] == closes
    picker = client.get(f"/api/v1/conversations/{conversation_id}/templates", headers=agent).json()
    assert {t["name"] for t in picker["items"]} == {
        "order_delivery_update",
        "seguimiento_pedido",
        "order_confirmation",
        "welcome_template",
    }  # abandoned_cart is PENDING
    preview_url = f"/api/v1/conversations/{conversation_id}/template-preview"
    template = _template(
        "order_confirmation",
        "en_US",
        _body('{{contact.first_name | "cliente"}}', "7", names=("first_name", "order_number")),
    )
    preview = client.post(preview_url, headers=agent, json={"template": template})
    assert preview.status_code == 200, preview.text
    assert preview.json()["text"] == "Thank you, Sheena! Your order number is 7."
    bad = _template(
        "order_confirmation", "en_US", _body("{{contact.nickname}}", "7", names=("first_name", "order_number"))
    )
    refused = client.post(preview_url, headers=agent, json={"template": bad})
    assert refused.status_code == 422
    assert "unknown variable {{contact.nickname}}" in json.dumps(refused.json()["error"]["details"])
    assert graph.sent == []


# ----- the adapter alone ------------------------------------------------------------------------------


def _parsed(data: dict[str, Any], **config: str) -> Any:
    adapter = WhatsAppAdapter()
    cleaned, secrets = adapter.clean_config({**CONFIG, **config}, SECRETS)
    channel = Channel(id=5, workspace_id=1, type="whatsapp", name="Ventas", key="k", config=cleaned, secrets=secrets)
    raw = wa.body(data)
    request = WebhookRequest(method="POST", url="u", headers={}, query={}, body=raw)
    return adapter.parse_webhook(channel, request)


def test_template_quality_and_category_changes_as_the_adapter_reads_them() -> None:
    # The example of Meta's message_template_quality_update webhook reference (developers.facebook.com/
    # docs/whatsapp/business-management-api/webhooks/components), verbatim.
    quality = {
        "entry": [
            {
                "id": wa.BUSINESS_ACCOUNT_ID,
                "time": 1674864290,
                "changes": [
                    {
                        "value": {
                            "previous_quality_score": "GREEN",
                            "new_quality_score": "YELLOW",
                            "message_template_id": 806312974732579,
                            "message_template_name": "welcome_template",
                            "message_template_language": "en-US",
                        },
                        "field": "message_template_quality_update",
                    }
                ],
            }
        ],
        "object": "whatsapp_business_account",
    }
    (change,) = _parsed(quality).templates
    assert (change.name, change.language, change.quality, change.status) == (
        "welcome_template",
        "en-US",
        "YELLOW",
        None,
    )
    (impending,) = _parsed(samples.CATEGORY_IMPENDING).templates
    assert impending.category is None  # "new_category" is still the current one: nothing changed yet
    (changed,) = _parsed(samples.CATEGORY_CHANGED).templates
    assert changed.category == "MARKETING"
    (flagged,) = _parsed(samples.QUALITY_FLAGGED).quality
    assert (flagged.event, flagged.messaging_limit) == ("FLAGGED", "TIER_2K")
    # A number that knows its display number ignores another number's quality.
    assert _parsed(samples.QUALITY_FLAGGED, display_phone_number="+52 55 0000 0000").quality == []
    assert _parsed(samples.QUALITY_FLAGGED, display_phone_number="+1 555-078-3881").quality != []
    # Template and quality changes never become messages or statuses.
    parsed = _parsed(samples.STATUS_REJECTED)
    assert (parsed.messages, parsed.statuses) == ([], [])


def test_a_template_list_that_is_not_one_is_an_error_worth_retrying() -> None:
    with fake_graph() as server:
        server.fail_templates = (200, {"unexpected": True})
        adapter = WhatsAppAdapter()
        cleaned, secrets = adapter.clean_config({**CONFIG, "api_base_url": server.url}, SECRETS)
        channel = Channel(id=5, workspace_id=1, type="whatsapp", name="V", key="k", config=cleaned, secrets=secrets)
        with pytest.raises(TransientError, match="without a list of templates"):
            adapter.fetch_templates(channel)
        server.fail_templates = (400, wa.graph_error(100, "(#100) Invalid parameter"))
        with pytest.raises(PermanentError, match="Invalid parameter"):
            adapter.fetch_templates(channel)
