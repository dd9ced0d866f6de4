"""A "send a message" step's own message per kind of channel: a WhatsApp template (which may go out
after the 24-hour window has closed), positional or named, a file with the text as its caption, and
the default message for every other kind of channel; and the checker's errors for variants that
cannot be sent, among them named parameters the number's stored template does not ask for."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.channels.adapters.whatsapp import signature
from tertulia.channels.models import Channel
from tertulia.channels.protocol import MessageType
from tertulia.conversations.models import Direction, Message
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tertulia.workflows import runner, service
from tertulia.workflows.models import WorkflowRun, WorkflowVersion
from tests.channels import whatsapp_samples as wa
from tests.channels import whatsapp_template_samples as samples
from tests.channels.fake_graph import FakeGraph, connect_whatsapp, fake_graph
from tests.conftest import Tenant
from tests.conversations.support import sign_in, stored_image
from tests.fakes import FakeHttpAdapter, callbacks_written
from tests.workflows.support import channel_on_fake, customer_writes, runs

TEMPLATE = {
    "name": "seguimiento_pedido",
    "language": "es_MX",
    "header_parameters": ["#42"],
    "parameters": ['{{contact.first_name | "cliente"}}', "{{trigger.day}}"],
}


def definition(**step: Any) -> dict[str, Any]:
    config = {"text": "Hola {{contact.first_name}}", **step}
    return {"trigger": {"type": "manual"}, "steps": [{"id": "send", "type": "send_message", "config": config}]}


def start(db: Database, tenant: Tenant, raw: dict[str, Any], contact_id: int) -> int:
    with db.transaction() as session:
        workflow = service.do_create_workflow(session, tenant.actor(), "Aviso", raw)
        service.do_publish(session, tenant.actor(), workflow)
        version = session.get(WorkflowVersion, workflow.published_version_id)
        assert version is not None
        run = runner.start_run(session, workflow, version, contact_id, {"day": "lunes"}, once_per_contact=False)
        assert run is not None
        return workflow.id


def sent(db: Database, contact_id: int) -> list[Message]:
    with db.transaction(write=False) as session:
        rows = session.scalars(
            select(Message)
            .where(Message.contact_id == contact_id, Message.direction == Direction.OUTGOING)
            .order_by(Message.id)
        )
        found = list(rows)
        session.expunge_all()
    return found


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with fake_graph([*samples.TEMPLATES, samples.SPRING_SALE]) as server:
        yield server


def whatsapp_customer(client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph) -> int:
    """A WhatsApp number connected through the API (its templates read from the fake Graph API) and
    a customer who wrote to it; the contact's id."""
    created = connect_whatsapp(client, sign_in(db, tenant, Role.MANAGER).headers, graph)
    raw = wa.body(wa.TEXT)
    signed = {"X-Hub-Signature-256": f"sha256={signature(Channel(secrets={'app_secret': wa.APP_SECRET}), raw)}"}
    assert client.post(f"/webhooks/{created['key']}", content=raw, headers=signed).status_code == 200
    callbacks_written(db)
    with db.transaction(write=False) as session:
        contact_id = session.scalar(select(Message.contact_id).where(Message.provider_message_id == wa.TEXT_ID))
    assert contact_id is not None
    return contact_id


def test_whatsapp_gets_its_template_after_the_window_with_variables_filled_in(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    contact_id = whatsapp_customer(client, db, tenant, graph)
    variants = [{"channel_type": "whatsapp", "template": TEMPLATE}, {"channel_type": "telegram", "text": "Hola"}]
    start(db, tenant, definition(variants=variants), contact_id)
    with travel(timedelta(hours=25)):  # the reply window has closed: only a template may go out
        runner.run_due(db, now=utcnow(), policy=runner.Policy(allow_private=True))
    [message] = sent(db, contact_id)
    assert message.type == MessageType.TEMPLATE
    assert message.payload["template"]["name"] == "seguimiento_pedido"
    request = graph.sent[-1]["body"]
    assert request["type"] == "template"
    components = {c["type"]: [p["text"] for p in c["parameters"]] for c in request["template"]["components"]}
    with db.transaction(write=False) as session:
        run = session.scalar(select(WorkflowRun).where(WorkflowRun.contact_id == contact_id))
        assert run is not None
        assert run.status == "finished", run.last_error
    assert components["header"] == ["#42"]
    assert components["body"][1] == "lunes"  # a value the run was started with
    assert components["body"][0] not in ("", "{{contact.first_name}}")


@pytest.fixture
def fake_channel(db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter) -> Iterator[Channel]:
    with channel_on_fake(db, tenant) as (found, _provider):
        yield found


def test_other_channels_get_the_default_message_with_its_file(
    db: Database, tenant: Tenant, fake_channel: Channel
) -> None:
    contact_id = customer_writes(db, fake_channel, "+5215500000007", "hola")
    photo_id = stored_image(db, tenant.workspace_id)
    variants = [{"channel_type": "whatsapp", "template": TEMPLATE}]
    workflow_id = start(db, tenant, definition(file_id=photo_id, variants=variants), contact_id)
    runner.run_due(db, policy=runner.Policy(allow_private=True))
    [message] = sent(db, contact_id)
    assert (message.type, message.text) == (MessageType.IMAGE, "Hola ")  # the contact has no first name
    assert [a["file_id"] for a in message.attachments] == [photo_id]
    assert [run.status for run in runs(db, workflow_id)] == ["finished"]


@pytest.mark.parametrize(
    ("variants", "path", "message"),
    [
        ([{"channel_type": "telegram", "template": TEMPLATE}], "variants[0].template", "only WhatsApp"),
        ([{"channel_type": "whatsapp"}], "variants[0]", "needs a text, a file or a template"),
        (
            [{"channel_type": "whatsapp", "template": TEMPLATE, "text": "Hola"}],
            "variants[0].template",
            "on its own",
        ),
        (
            [{"channel_type": "email", "text": "a"}, {"channel_type": "email", "text": "b"}],
            "variants[1].channel_type",
            "has a message already",
        ),
        ([{"channel_type": "sms", "text": "a"}], "variants[0].channel_type", ""),
        ([{"channel_type": "email", "file_id": 999_999}], "variants[0].file_id", "no file 999999"),
        ([{"channel_type": "email", "text": "{{contact.nope}}"}], "variants[0].text", ""),
    ],
)
def test_variants_that_cannot_be_sent_are_refused_naming_the_field(
    client: TestClient, tenant: Tenant, variants: list[dict[str, Any]], path: str, message: str
) -> None:
    body = {"name": "Aviso", "definition": definition(variants=variants)}
    refused = client.post("/api/v1/workflows", headers=tenant.headers, json=body)
    assert refused.status_code == 422, refused.text
    details = refused.json()["error"]["details"]
    where = f"steps[0].config.{path}"
    assert where in details, details
    assert message in details[where]


def test_a_missing_default_file_is_refused(client: TestClient, tenant: Tenant) -> None:
    body = {"name": "Aviso", "definition": definition(file_id=123_456)}
    refused = client.post("/api/v1/workflows", headers=tenant.headers, json=body)
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == {"steps[0].config.file_id": "no file 123456"}


# ----- NAMED templates ({{first_name}}): values by name --------------------------------------------

SPRING_SALE = {
    "name": "spring_sale",
    "language": "en_US",
    # In another order than the template's, which the request follows.
    "named_parameters": [
        {"name": "discount_code", "value": "PRIMAVERA"},
        {"name": "first_name", "value": '{{contact.first_name | "cliente"}}'},
        {"name": "sale_start_date", "value": "{{trigger.day}}"},
    ],
}


def test_a_named_template_goes_out_with_each_value_by_name_where_the_template_uses_it(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    contact_id = whatsapp_customer(client, db, tenant, graph)
    saved = client.post(
        "/api/v1/workflows",
        headers=tenant.headers,
        json={
            "name": "Rebajas",
            "definition": definition(variants=[{"channel_type": "whatsapp", "template": SPRING_SALE}]),
        },
    )
    assert saved.status_code == 201, saved.text
    start(db, tenant, definition(variants=[{"channel_type": "whatsapp", "template": SPRING_SALE}]), contact_id)
    with travel(timedelta(hours=25)):  # the reply window has closed: only a template may go out
        runner.run_due(db, now=utcnow(), policy=runner.Policy(allow_private=True))
    with db.transaction(write=False) as session:
        run = session.scalar(select(WorkflowRun).where(WorkflowRun.contact_id == contact_id))
        assert run is not None
        assert run.status == "finished", run.last_error
    assert graph.sent[-1]["body"] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",  # the customer of the webhook sample
        "type": "template",
        "template": {
            "name": "spring_sale",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "header",
                    "parameters": [{"type": "text", "parameter_name": "sale_start_date", "text": "lunes"}],
                },
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "parameter_name": "first_name", "text": "Sheena"},
                        {"type": "text", "parameter_name": "discount_code", "text": "PRIMAVERA"},
                    ],
                },
            ],
        },
    }
    [message] = sent(db, contact_id)
    assert (
        message.text
        == "Our new sale starts lunes!\n\nHi Sheena, use code PRIMAVERA at checkout.\n\nTerms and conditions apply"
    )


def test_the_builder_offers_the_numbers_approved_templates_and_their_parameter_names(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    connect_whatsapp(client, sign_in(db, tenant, Role.MANAGER).headers, graph)
    with db.transaction(write=False) as session:
        choices = service.reference_choices(session, tenant.workspace_id)
    # The APPROVED ones (abandoned_cart is PENDING: not sendable yet), by name.
    assert [value for value, _label in choices["template.name"]] == [
        "order_confirmation",
        "order_delivery_update",
        "seguimiento_pedido",
        "spring_sale",
        "welcome_template",
    ]
    assert [value for value, _label in choices["template.language"]] == ["en_US", "es_MX"]
    assert ("discount_code", "discount_code (spring_sale)") in choices["named_parameters.name"]
    assert ("first_name", "first_name (order_confirmation, spring_sale)") in choices["named_parameters.name"]
    assert "1" not in [value for value, _label in choices["named_parameters.name"]]  # positional keys are no names


def named(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs]


ALL_THREE = (("first_name", "Ana"), ("discount_code", "X1"), ("sale_start_date", "hoy"))


@pytest.mark.parametrize(
    ("template", "path", "message"),
    [
        (
            {**SPRING_SALE, "named_parameters": named(*ALL_THREE, ("coupon", "X"))},
            "named_parameters[3].name",
            "template 'spring_sale' has no parameter 'coupon' (it has: sale_start_date, first_name, discount_code)",
        ),
        (
            {**SPRING_SALE, "named_parameters": named(("first_name", "Ana"))},
            "named_parameters",
            "template 'spring_sale' needs a value for: sale_start_date, discount_code",
        ),
        (
            {**SPRING_SALE, "named_parameters": named(*ALL_THREE, ("first_name", "Eva"))},
            "named_parameters[3].name",
            "parameter 'first_name' is given twice",
        ),
        (
            {"name": "spring_sale", "language": "en_US", "parameters": ["Ana", "X1"], "header_parameters": ["hoy"]},
            "parameters",
            "template 'spring_sale' takes named parameters: give them by name under named_parameters",
        ),
        (
            {**SPRING_SALE, "parameters": ["Ana"]},
            "named_parameters",
            "give positional or named parameters, not both",
        ),
        (
            {"name": "seguimiento_pedido", "language": "es_MX", "named_parameters": named(("first_name", "Ana"))},
            "named_parameters",
            "template 'seguimiento_pedido' takes positional parameters: give them in order under parameters",
        ),
        (
            {**TEMPLATE, "parameters": ["Ana"]},
            "parameters",
            "the body of 'seguimiento_pedido' takes 2 parameter(s), 1 given",
        ),
        (
            {"name": "rebajas", "language": "es", "named_parameters": named(("first_name", "Ana"))},
            "name",
            "no WhatsApp number has a template 'rebajas' in 'es' (sync the templates if it is new)",
        ),
        (
            {**SPRING_SALE, "named_parameters": named(*ALL_THREE[:2], ("sale_start_date", "{{contact.nope}}"))},
            "named_parameters[2].value",
            "unknown variable {{contact.nope}}",
        ),
        (
            {**SPRING_SALE, "named_parameters": named(*ALL_THREE, ("first name", "Ana"))},
            "named_parameters[3].name",
            "String should match pattern '^[A-Za-z0-9_]+$'",
        ),
    ],
)
def test_named_parameters_that_do_not_fit_the_template_are_refused_naming_the_field(
    client: TestClient,
    db: Database,
    tenant: Tenant,
    graph: FakeGraph,
    template: dict[str, Any],
    path: str,
    message: str,
) -> None:
    connect_whatsapp(client, sign_in(db, tenant, Role.MANAGER).headers, graph)
    variants = [{"channel_type": "whatsapp", "template": template}]
    refused = client.post(
        "/api/v1/workflows",
        headers=tenant.headers,
        json={"name": "Rebajas", "definition": definition(variants=variants)},
    )
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["details"] == {f"steps[0].config.variants[0].template.{path}": message}


def test_a_step_on_a_number_without_the_template_is_refused_even_when_another_has_it(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    created = connect_whatsapp(client, sign_in(db, tenant, Role.MANAGER).headers, graph)
    with db.transaction() as session:
        other = Channel(workspace_id=tenant.workspace_id, type="whatsapp", name="Soporte", key="wa-soporte-test")
        session.add(other)
        session.flush()
        other_id = other.id
    variants = [{"channel_type": "whatsapp", "template": SPRING_SALE}]
    for channel, status in ((created["id"], 201), (other_id, 422)):
        answer = client.post(
            "/api/v1/workflows",
            headers=tenant.headers,
            json={"name": f"Rebajas {channel}", "definition": definition(channel=channel, variants=variants)},
        )
        assert answer.status_code == status, answer.text
    assert answer.json()["error"]["details"] == {
        "steps[0].config.variants[0].template.name": (
            "no WhatsApp number has a template 'spring_sale' in 'en_US' (sync the templates if it is new)"
        )
    }
