"""A "send a message" step's own message per kind of channel: a WhatsApp template (which may go out
after the 24-hour window has closed), a file with the text as its caption, and the default message
for every other kind of channel; and the checker's errors for variants that cannot be sent."""

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
    with fake_graph(samples.TEMPLATES) as server:
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
