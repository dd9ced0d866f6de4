"""A "send a message" step's WhatsApp template whose header is a file (an image, a video or a
document) or a place (LOCATION): the file's https URL (`header_media.link`, variables allowed) or
its media id (`header_media.id`), the place's latitude, longitude, name and address
(`header_location`, variables allowed), checked against the number's stored template when the
workflow is saved and once filled in when the step runs, and sent in Meta's form
(`{"type": "header", "parameters": [{"type": "image", "image": {"link"}}]}`, `{"type": "location",
"location": {"latitude": "19.4326", ...}}`, as Meta's location templates page shows:
developers.facebook.com/documentation/business-messaging/whatsapp/templates/utility-templates/
location-templates). A step whose template changed on the number since it was saved (synced again
without that header, or with another kind) fails when it runs, saying why, and nothing is sent.
Also: a template on a step whose channel is not WhatsApp is refused saying so, and whatever a
definition holds in these fields gets a 422 naming a field, never a 500.

The templates are whatsapp_template_samples' PROMO_PHOTO, INVOICE and ORDER_DELIVERY_UPDATE."""

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tertulia.channels.message_templates import check_template_message, sync_templates
from tertulia.channels.models import Channel
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import ValidationFailed
from tertulia.users.models import Role
from tertulia.workflows import runner
from tertulia.workflows.models import WorkflowRun, WorkflowRunLog
from tests.channels import whatsapp_template_samples as samples
from tests.channels.fake_graph import FakeGraph, connect_whatsapp, fake_graph
from tests.channels.whatsapp_template_samples import INVOICE, PROMO_PHOTO
from tests.conftest import Tenant
from tests.conversations.support import sign_in
from tests.web.helpers import sign_in_as
from tests.workflows.test_message_variants import definition, sent, start, whatsapp_customer

PHOTO_STEP = {
    "name": "promo_foto",
    "language": "es_MX",
    "parameters": ['{{contact.first_name | "cliente"}}'],
    "header_media": {"link": "https://cdn.tienda.example/promos/{{trigger.day}}.jpg"},
}
INVOICE_STEP = {
    "name": "factura_lista",
    "language": "es_MX",
    "parameters": ["F-{{trigger.day}}"],
    "header_media": {
        "link": "https://cdn.tienda.example/f/{{trigger.day}}.pdf",
        "filename": "factura-{{trigger.day}}.pdf",
    },
}

PLACE_STEP = {
    "name": "order_delivery_update",
    "language": "en_US",
    "parameters": ['{{contact.first_name | "cliente"}}', "566701"],
    "header_location": {
        "latitude": 19.4326,
        "longitude": "-99.1332",
        "name": "Tienda {{trigger.day}}",
        "address": "Madero 1, Ciudad de México",
    },
}


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with fake_graph([*samples.TEMPLATES, PROMO_PHOTO, INVOICE]) as server:
        yield server


NO_PLACE = {key: value for key, value in PLACE_STEP.items() if key != "header_location"}


def whatsapp_step(template: dict[str, Any], **config: Any) -> dict[str, Any]:
    return definition(variants=[{"channel_type": "whatsapp", "template": template}], **config)


def run_after_the_window(db: Database, tenant: Tenant, raw: dict[str, Any], contact_id: int) -> WorkflowRun:
    start(db, tenant, raw, contact_id)
    return runs_after_the_window(db, contact_id)


def runs_after_the_window(db: Database, contact_id: int) -> WorkflowRun:
    """The contact's run, once due runs have run a day later."""
    with travel(timedelta(hours=25)):  # the reply window has closed: only a template may go out
        runner.run_due(db, now=utcnow(), policy=runner.Policy(allow_private=True))
    with db.transaction(write=False) as session:
        run = session.scalar(select(WorkflowRun).where(WorkflowRun.contact_id == contact_id))
        assert run is not None
        session.expunge(run)
    return run


def test_an_image_header_template_goes_out_with_the_image_link_meta_asks_for(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    contact_id = whatsapp_customer(client, db, tenant, graph)
    saved = client.post(
        "/api/v1/workflows", headers=tenant.headers, json={"name": "Promo", "definition": whatsapp_step(PHOTO_STEP)}
    )
    assert saved.status_code == 201, saved.text
    run = run_after_the_window(db, tenant, whatsapp_step(PHOTO_STEP), contact_id)
    assert run.status == "finished", run.last_error
    assert graph.sent[-1]["body"] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",  # the customer of the webhook sample
        "type": "template",
        "template": {
            "name": "promo_foto",
            "language": {"code": "es_MX"},
            "components": [
                {
                    "type": "header",
                    "parameters": [{"type": "image", "image": {"link": "https://cdn.tienda.example/promos/lunes.jpg"}}],
                },
                {"type": "body", "parameters": [{"type": "text", "text": "Sheena"}]},
            ],
        },
    }
    [message] = sent(db, contact_id)
    assert message.text == "Hola Sheena, esta semana tienes 20% en toda la tienda."


def test_a_document_header_goes_out_with_its_file_name(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    contact_id = whatsapp_customer(client, db, tenant, graph)
    run = run_after_the_window(db, tenant, whatsapp_step(INVOICE_STEP), contact_id)
    assert run.status == "finished", run.last_error
    assert graph.sent[-1]["body"]["template"]["components"] == [
        {
            "type": "header",
            "parameters": [
                {
                    "type": "document",
                    "document": {"link": "https://cdn.tienda.example/f/lunes.pdf", "filename": "factura-lunes.pdf"},
                }
            ],
        },
        {"type": "body", "parameters": [{"type": "text", "text": "F-lunes"}]},
    ]


def test_a_media_id_goes_out_instead_of_a_link(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    contact_id = whatsapp_customer(client, db, tenant, graph)
    step = whatsapp_step({**PHOTO_STEP, "header_media": {"id": "1479537139650973"}})
    saved = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": "Promo", "definition": step})
    assert saved.status_code == 201, saved.text
    run = run_after_the_window(db, tenant, step, contact_id)
    assert run.status == "finished", run.last_error
    assert graph.sent[-1]["body"]["template"]["components"][0] == {
        "type": "header",
        "parameters": [{"type": "image", "image": {"id": "1479537139650973"}}],
    }


def test_a_location_header_goes_out_with_the_place_meta_asks_for(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    contact_id = whatsapp_customer(client, db, tenant, graph)
    saved = client.post(
        "/api/v1/workflows", headers=tenant.headers, json={"name": "Entrega", "definition": whatsapp_step(PLACE_STEP)}
    )
    assert saved.status_code == 201, saved.text
    run = run_after_the_window(db, tenant, whatsapp_step(PLACE_STEP), contact_id)
    assert run.status == "finished", run.last_error
    assert graph.sent[-1]["body"]["template"] == {
        "name": "order_delivery_update",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "header",
                "parameters": [
                    {
                        "type": "location",
                        "location": {
                            "latitude": "19.4326",
                            "longitude": "-99.1332",
                            "name": "Tienda lunes",
                            "address": "Madero 1, Ciudad de México",
                        },
                    }
                ],
            },
            {"type": "body", "parameters": [{"type": "text", "text": "Sheena"}, {"type": "text", "text": "566701"}]},
        ],
    }


def test_a_place_that_is_not_one_once_filled_in_fails_the_step_saying_so(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    contact_id = whatsapp_customer(client, db, tenant, graph)
    before = len(graph.sent)
    place = {"latitude": "{{trigger.day}}", "longitude": "-99.1332"}
    run = run_after_the_window(db, tenant, whatsapp_step({**PLACE_STEP, "header_location": place}), contact_id)
    assert run.status == "failed"
    assert run.last_error == (
        "the place in the header of template 'order_delivery_update' is not valid once its variables are"
        " filled in: the latitude must be a number from -90 to 90 (latitude: 'lunes')"
    )
    assert len(graph.sent) == before
    assert sent(db, contact_id) == []


# ----- the template changed on the number after the workflow was saved ------------------------------

WITHOUT_HEADER = {**PROMO_PHOTO, "components": PROMO_PHOTO["components"][1:]}
WITH_A_PLACE = {**PROMO_PHOTO, "components": [{"type": "HEADER", "format": "LOCATION"}, *PROMO_PHOTO["components"][1:]]}
DELIVERY_WITH_AN_IMAGE = {
    **samples.ORDER_DELIVERY_UPDATE,
    "components": [PROMO_PHOTO["components"][0], *samples.ORDER_DELIVERY_UPDATE["components"][1:]],
}


@pytest.mark.parametrize(
    ("step", "resynced", "reason"),
    [
        (
            PHOTO_STEP,
            WITHOUT_HEADER,
            "template 'promo_foto' has no image, video or document header on this number any more:"
            " remove the header file from the step",
        ),
        (
            PHOTO_STEP,
            WITH_A_PLACE,
            "template 'promo_foto' has no image, video or document header on this number any more:"
            " remove the header file from the step",
        ),
        (
            PLACE_STEP,
            DELIVERY_WITH_AN_IMAGE,
            "template 'order_delivery_update' has no location header on this number any more:"
            " remove the place from the step",
        ),
    ],
)
def test_a_header_the_template_no_longer_has_fails_the_step_when_it_runs_and_nothing_is_sent(
    client: TestClient,
    db: Database,
    tenant: Tenant,
    graph: FakeGraph,
    step: dict[str, Any],
    resynced: dict[str, Any],
    reason: str,
) -> None:
    contact_id = whatsapp_customer(client, db, tenant, graph)
    start(db, tenant, whatsapp_step(step), contact_id)  # it fitted the template when it was saved
    # The template is edited on Meta's side and synced again: the header the step fills is gone.
    graph.templates = [resynced if t["name"] == resynced["name"] else t for t in graph.templates]
    with db.transaction(write=False) as session:
        channel_id = session.scalar(select(Channel.id).where(Channel.workspace_id == tenant.workspace_id))
    assert channel_id is not None
    assert sync_templates(db, channel_id) == len(graph.templates)
    before = len(graph.sent)
    run = runs_after_the_window(db, contact_id)
    assert run.status == "failed"
    assert run.last_error == reason
    # The run's log says which step failed and why.
    with db.transaction(write=False) as session:
        logged = session.execute(
            select(WorkflowRunLog.step_id, WorkflowRunLog.outcome, WorkflowRunLog.error).where(
                WorkflowRunLog.run_id == run.id
            )
        ).all()
    assert [tuple(row) for row in logged] == [("send", "failed", reason)]
    assert len(graph.sent) == before  # nothing reached Meta
    assert sent(db, contact_id) == []


@pytest.mark.parametrize(
    "link",
    [
        "{{trigger.day}}",
        "{{trigger.day}}://x",
        "https://{{trigger.missing}}",
        "{{trigger.day}} https://x.example/a.jpg",
    ],
)
def test_a_link_that_is_not_https_once_filled_in_fails_the_step_saying_so(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph, link: str
) -> None:
    contact_id = whatsapp_customer(client, db, tenant, graph)
    before = len(graph.sent)
    run = run_after_the_window(db, tenant, whatsapp_step({**PHOTO_STEP, "header_media": {"link": link}}), contact_id)
    assert run.status == "failed"
    assert run.last_error is not None
    assert "the header file's URL of template 'promo_foto' is not an https:// URL" in run.last_error
    assert len(graph.sent) == before  # nothing reached Meta
    assert sent(db, contact_id) == []


# ----- refused when saved, each beside its field --------------------------------------------------

SEGUIMIENTO_STEP = {
    "name": "seguimiento_pedido",
    "language": "es_MX",
    "header_parameters": ["#42"],
    "parameters": ["Ana", "lunes"],
}
NAMED_STEP = {"name": "spring_sale", "language": "en_US", "named_parameters": [{"name": "first_name", "value": "Ana"}]}


@pytest.mark.parametrize(
    ("template", "path", "message"),
    [
        (
            {key: value for key, value in PHOTO_STEP.items() if key != "header_media"},
            "header_media",
            "template 'promo_foto' has an image header: give the https:// URL of its file",
        ),
        (
            {**SEGUIMIENTO_STEP, "header_media": {"link": "https://x.example/a.jpg"}},
            "header_media",
            "template 'seguimiento_pedido' has no image, video or document header",
        ),
        (
            {**PHOTO_STEP, "header_media": {"link": "https://x.example/a.jpg", "filename": "a.jpg"}},
            "header_media.filename",
            "only a document header takes a file name; template 'promo_foto' has an image header",
        ),
        (
            {**PHOTO_STEP, "header_media": {"link": "http://x.example/a.jpg"}},
            "header_media.link",
            "must be an https:// URL (variables may stand in for it)",
        ),
        (
            {**PHOTO_STEP, "header_media": {"link": "https://x.example/{{contact.nope}}.jpg"}},
            "header_media.link",
            "unknown variable {{contact.nope}}",
        ),
        (
            {**PHOTO_STEP, "header_media": {"link": ""}},
            "header_media.link",
            "String should have at least 1 character",
        ),
        (
            {**PHOTO_STEP, "header_media": {"link": "https://x.example/a.jpg", "kind": "image"}},
            "header_media.kind",
            "Extra inputs are not permitted",
        ),
        (
            {**PHOTO_STEP, "header_media": {"link": "https://x.example/a.jpg", "id": "1479537139650973"}},
            "header_media",
            "give the file's https:// URL (link) or its media id (id), one of the two",
        ),
        (
            {**PHOTO_STEP, "header_media": {}},
            "header_media",
            "give the file's https:// URL (link) or its media id (id), one of the two",
        ),
        (
            {**PHOTO_STEP, "header_media": {"id": "abc"}},
            "header_media.id",
            "String should match pattern '^[0-9]{1,64}$'",
        ),
        (
            NO_PLACE,
            "header_location",
            "template 'order_delivery_update' has a location header: give the place's latitude and longitude",
        ),
        (
            {**SEGUIMIENTO_STEP, "header_location": {"latitude": 1, "longitude": 2}},
            "header_location",
            "template 'seguimiento_pedido' has no location header",
        ),
        (
            {**NO_PLACE, "header_location": {"latitude": "91", "longitude": 0}},
            "header_location.latitude",
            "must be a number from -90 to 90 (variables may stand in for it)",
        ),
        (
            {**NO_PLACE, "header_location": {"latitude": 0, "longitude": "oeste"}},
            "header_location.longitude",
            "must be a number from -180 to 180 (variables may stand in for it)",
        ),
        (
            {**NO_PLACE, "header_location": {"latitude": True, "longitude": 0}},
            "header_location.latitude",
            "Value error, must be a number, or text with variables",
        ),
        (
            {**NO_PLACE, "header_location": {"latitude": "{{contact.nope}}", "longitude": 0}},
            "header_location.latitude",
            "unknown variable {{contact.nope}}",
        ),
        (
            {**NO_PLACE, "header_location": {"latitude": 0, "longitude": 0, "name": ""}},
            "header_location.name",
            "String should have at least 1 character",
        ),
        (
            {**NO_PLACE, "header_location": {"longitude": 0}},
            "header_location.latitude",
            "Field required",
        ),
    ],
)
def test_a_header_file_that_does_not_fit_the_template_is_refused_naming_the_field(
    client: TestClient,
    db: Database,
    tenant: Tenant,
    graph: FakeGraph,
    template: dict[str, Any],
    path: str,
    message: str,
) -> None:
    connect_whatsapp(client, sign_in(db, tenant, Role.MANAGER).headers, graph)
    refused = client.post(
        "/api/v1/workflows", headers=tenant.headers, json={"name": "Promo", "definition": whatsapp_step(template)}
    )
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["details"] == {f"steps[0].config.variants[0].template.{path}": message}


def other_channel(db: Database, tenant: Tenant, kind: str) -> int:
    with db.transaction() as session:
        channel = Channel(workspace_id=tenant.workspace_id, type=kind, name=f"Canal {kind}", key=f"{kind}-media-test")
        session.add(channel)
        session.flush()
        return channel.id


@pytest.mark.parametrize("template", [PHOTO_STEP, NAMED_STEP, SEGUIMIENTO_STEP])
def test_a_template_on_a_channel_that_is_not_whatsapp_is_refused_saying_so(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph, template: dict[str, Any]
) -> None:
    connect_whatsapp(client, sign_in(db, tenant, Role.MANAGER).headers, graph)
    telegram = other_channel(db, tenant, "telegram")
    refused = client.post(
        "/api/v1/workflows",
        headers=tenant.headers,
        json={"name": "Promo", "definition": whatsapp_step(template, channel=telegram)},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"] == {
        "steps[0].config.variants[0].template.name": (
            f"the step's channel {telegram} is a telegram channel, not WhatsApp: only WhatsApp sends templates"
        )
    }


def test_the_page_says_what_is_wrong_beside_the_field_in_spanish_and_english(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    connect_whatsapp(client, sign_in(db, tenant, Role.MANAGER).headers, graph)
    email = other_channel(db, tenant, "email")
    created = client.post(
        "/api/v1/workflows", headers=tenant.headers, json={"name": "Promo", "definition": definition()}
    )
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    on_email = whatsapp_step(PHOTO_STEP, channel=email)
    # The channel said by its name and its kind's name in the reader's language (not "webchat").
    on_webchat = whatsapp_step(PHOTO_STEP, channel=other_channel(db, tenant, "webchat"))
    no_file = whatsapp_step({key: value for key, value in PHOTO_STEP.items() if key != "header_media"})
    no_place = whatsapp_step(NO_PLACE)
    off_the_map = whatsapp_step({**PLACE_STEP, "header_location": {"latitude": -91, "longitude": 0}})
    where = "steps[0].config.variants[0].template"
    expected = {
        "es": (
            "El canal del paso (Canal email, Correo) no es de WhatsApp: solo WhatsApp envía plantillas."
            " Elige un canal de WhatsApp o el último con el que interactuó el contacto",
            "La plantilla 'promo_foto' lleva un archivo en el encabezado: indica la URL https:// del archivo",
            "La plantilla 'order_delivery_update' muestra un lugar en el encabezado: indica su latitud y su longitud",
            "Debe ser un número de -90 a 90, con punto para los decimales (puede ser una variable)",
            "El canal del paso (Canal webchat, Chat web) no es de WhatsApp: solo WhatsApp envía plantillas."
            " Elige un canal de WhatsApp o el último con el que interactuó el contacto",
        ),
        "en": (
            "The step's channel (Canal email, Email) is not a WhatsApp channel: only WhatsApp sends templates."
            " Choose a WhatsApp channel or the last interacted one",
            "Template 'promo_foto' has a file in its header: give the https:// URL of the file",
            "Template 'order_delivery_update' shows a place in its header: give its latitude and longitude",
            "Must be a number from -90 to 90, with a point for decimals (a variable may stand in for it)",
            "The step's channel (Canal webchat, Web chat) is not a WhatsApp channel: only WhatsApp sends templates."
            " Choose a WhatsApp channel or the last interacted one",
        ),
    }
    for language, (not_whatsapp, needs_file, needs_place, latitude, not_whatsapp_either) in expected.items():
        client.post("/language", data={"language": language, "next": "/workflows", "csrf_token": token})
        for raw, path, message in (
            (on_email, f"{where}.name", not_whatsapp),
            (no_file, f"{where}.header_media", needs_file),
            (no_place, f"{where}.header_location", needs_place),
            (off_the_map, f"{where}.header_location.latitude", latitude),
            (on_webchat, f"{where}.name", not_whatsapp_either),
        ):
            refused = client.post(
                f"/workflows/{workflow_id}", data={"name": "Promo", "definition": json.dumps(raw), "csrf_token": token}
            )
            assert refused.status_code == 422, refused.text
            data = builder_data(refused.text)
            assert data["errors"] == {path: message}
        # The builder shows the header file's field for the templates whose header is a file, the
        # place's for one whose header is a place.
        assert data["media_templates"] == {
            "factura_lista": "document",
            "order_delivery_update": "location",
            "promo_foto": "image",
        }


def builder_data(html: str) -> dict[str, Any]:
    start = html.index('<script type="application/json" id="workflow-builder-data">')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    found: dict[str, Any] = json.loads(body)
    return found


# ----- whatever a definition holds there: a 422 naming a field, never a 500 -------------------------

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)
LINKS = st.one_of(
    JSON_VALUES,
    st.text(max_size=60),
    st.builds(lambda rest: "https://" + rest, st.text(max_size=40)),
    st.builds(lambda rest: "{{" + rest, st.text(max_size=40)),
    st.just("https://x.example/" + "a" * 2100),
)
HEADER_MEDIA = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries({"link": LINKS}, optional={"filename": JSON_VALUES, "id": JSON_VALUES}),
    st.fixed_dictionaries({"id": st.one_of(st.just("1479537139650973"), JSON_VALUES)}),
)
COORDINATES = st.one_of(
    JSON_VALUES,
    st.floats(allow_nan=False, allow_infinity=False),  # JSON has no NaN or infinity
    st.integers(min_value=-200, max_value=200),
    st.decimals(min_value=-200, max_value=200, places=4).map(str),
    st.just("{{trigger.day}}"),
)
HEADER_LOCATION = st.one_of(
    st.none(),
    JSON_VALUES,
    st.fixed_dictionaries(
        {"latitude": COORDINATES, "longitude": COORDINATES},
        optional={"name": JSON_VALUES, "address": JSON_VALUES, "zoom": JSON_VALUES},
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.one_of(
        st.sampled_from(["promo_foto", "factura_lista", "seguimiento_pedido", "spring_sale", "order_delivery_update"]),
        JSON_VALUES,
    ),
    media=st.one_of(st.none(), HEADER_MEDIA),
    place=HEADER_LOCATION,
    channel=st.one_of(st.just("last_interacted"), st.integers(), JSON_VALUES),
)
def test_any_header_file_place_or_channel_gets_a_422_naming_a_field_never_a_500(
    client: TestClient,
    db: Database,
    tenant: Tenant,
    connected: None,
    name: Any,
    media: Any,
    place: Any,
    channel: Any,
) -> None:
    template = {"name": name, "language": "es_MX", "parameters": ["Ana"], "header_media": media}
    if place is not None:
        template["header_location"] = place
    answer = client.post(
        "/api/v1/workflows",
        headers=tenant.headers,
        json={"name": "Promo", "definition": whatsapp_step(template, channel=channel)},
    )
    assert answer.status_code in (201, 422), answer.text
    if answer.status_code == 422:
        error = answer.json()["error"]
        assert error["details"], error
        # A text the API refuses before the definition is read (a NUL) is named under `definition.`.
        fields = [path.removeprefix("definition.") for path in error["details"]]
        assert all(path.startswith("steps[0].config") for path in fields), error


@pytest.fixture
def connected(client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph) -> None:
    connect_whatsapp(client, sign_in(db, tenant, Role.MANAGER).headers, graph)


@pytest.mark.parametrize(
    ("image", "refused"),
    [
        ({"link": "https://cdn.tienda.example/a.jpg"}, False),
        ({"id": "1479537139650973"}, False),
        ({"link": "http://cdn.tienda.example/a.jpg"}, True),
        ({"link": "https:///a.jpg"}, True),
        ({"link": "https://cdn.tienda.example/a b.jpg"}, True),
        ({"id": " "}, True),
        ("https://cdn.tienda.example/a.jpg", True),
    ],
)
def test_the_template_check_every_sender_uses_wants_an_https_link_or_a_media_id(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph, image: Any, refused: bool
) -> None:
    created = connect_whatsapp(client, sign_in(db, tenant, Role.MANAGER).headers, graph)
    given = {
        "name": "promo_foto",
        "language": {"code": "es_MX"},
        "components": [
            {"type": "header", "parameters": [{"type": "image", "image": image}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]},
        ],
    }
    with db.transaction(write=False) as session:
        channel = session.get(Channel, created["id"])
        assert channel is not None
        if not refused:
            checked, _text = check_template_message(session, channel, given)
            assert checked["components"][0] == {"type": "header", "parameters": [{"type": "image", "image": image}]}
            return
        with pytest.raises(ValidationFailed) as caught:
            check_template_message(session, channel, given)
    assert caught.value.details == {
        "message.template.components[0].parameters[0].image": (
            "the header of 'promo_foto' takes an image: give its https:// link or a media id"
        )
    }
