"""Meta's rules on a WhatsApp template's text parameters (audience.parameter_refusal): a header's value
at most 60 characters, a body's at most 1024, neither with a tab, a line break or more than 4 spaces
in a row. Checked when saved (the API's 422 on the parameter's path, the editor's message beside its
field), per contact by the snapshot (an exclusion the dry run counts) and when sent (a skip, for
values changed since the start), all by the one predicate."""

import itertools
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from tertulia.broadcasts import audience, sender, service
from tertulia.broadcasts.models import RecipientState
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus
from tertulia.contacts.models import Contact
from tertulia.conversations.models import Message
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.broadcasts.support import broadcast_messages, customers_write, draft, recipients
from tests.broadcasts.test_editor_header_text import Editor, _error_beside, _store_templates
from tests.broadcasts.test_lifecycle import at
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as

HEADER = '{{contact.first_name | "cliente"}}: ' + "z" * 40  # 42 characters and the name
BODY_PATH = "content.whatsapp.template.components[1].parameters[1]"
_numbers = itertools.count()


def _content(header: str, first: str, second: str) -> dict[str, Any]:
    return {
        "whatsapp": {
            "template": {
                "name": "seguimiento_pedido",
                "language": "es_MX",
                "components": [
                    {"type": "header", "parameters": [{"text": header}]},
                    {"type": "body", "parameters": [{"text": first}, {"text": second}]},
                ],
            }
        }
    }


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("x" * 1025, "a body parameter is at most 1024 characters"),
        ('{{contact.last_name | "' + "x" * 1025 + '"}}', "a body parameter is at most 1024 characters"),
        ("el\tlunes", "a parameter cannot have line breaks, tabs or more than 4 spaces in a row"),
        ("el\nlunes", "a parameter cannot have line breaks, tabs or more than 4 spaces in a row"),
        ("el     lunes", "a parameter cannot have line breaks, tabs or more than 4 spaces in a row"),
    ],
)
def test_the_api_refuses_a_body_parameter_meta_would_refuse_on_its_path(
    db: Database, client: TestClient, tenant: Tenant, value: str, rule: str
) -> None:
    channel = _store_templates(db, tenant)
    made = client.post(
        "/api/v1/broadcasts",
        headers=tenant.headers,
        json={"name": "Pedidos", "channel_id": channel.id, "content": _content("#42", "Ana", value)},
    )
    assert made.status_code == 422, made.text
    error = made.json()["error"]
    assert BODY_PATH in error["details"]
    assert error["details"][BODY_PATH].startswith(rule)
    # At the limits it is taken: 1024 characters, 4 spaces in a row.
    for fine in ("x" * 1024, "el    lunes"):
        made = client.post(
            "/api/v1/broadcasts",
            headers=tenant.headers,
            json={"name": "Pedidos", "channel_id": channel.id, "content": _content("#42", "Ana", fine)},
        )
        assert made.status_code == 201, made.text


def test_the_api_refuses_a_header_with_a_tab_or_five_spaces(db: Database, client: TestClient, tenant: Tenant) -> None:
    channel = _store_templates(db, tenant)
    for header in ("Pedido\t42", "Pedido     42"):
        made = client.post(
            "/api/v1/broadcasts",
            headers=tenant.headers,
            json={"name": "Pedidos", "channel_id": channel.id, "content": _content(header, "Ana", "el lunes")},
        )
        assert made.status_code == 422, made.text
        path = "content.whatsapp.template.components[0].parameters[0]"
        assert made.json()["error"]["details"][path].startswith("a parameter cannot have line breaks, tabs")


@pytest.mark.parametrize(
    ("lines", "language", "message"),
    [
        (
            "Ana\n" + "x" * 1025,
            "en",
            "Line 2: at most 1024 characters, a variable counted as its fallback (1025 written)",
        ),
        (
            "Ana\n" + "x" * 1025,
            "es",
            "Línea 2: como máximo 1024 caracteres, cada variable contada como su valor por defecto (hay 1025)",
        ),
        ("Ana\nel\tlunes", "en", "Line 2: no tabs or more than 4 spaces in a row: WhatsApp refuses them"),
        ("el     lunes\nAna", "es", "Línea 1: sin tabuladores ni más de 4 espacios seguidos: WhatsApp los rechaza"),
    ],
)
def test_the_editor_refuses_a_body_value_beside_its_field_in_both_languages(
    client: TestClient, db: Database, tenant: Tenant, lines: str, language: str, message: str
) -> None:
    editor = Editor(client, db, tenant)
    _broadcast_id, url, base = editor.new()
    form = {
        **base,
        "template_name": "seguimiento_pedido",
        "template_language": "es_MX",
        "template_header": "#42",
        "template_params": lines,
    }
    refused = client.post(url, data=form, headers={"Accept-Language": language})
    assert refused.status_code == 422
    assert _error_beside(refused.text, "template_params") == message
    # A named template's value by its name, and the header's own field.
    named = {
        **base,
        "template_name": "spring_sale",
        "template_language": "en_US",
        "template_header": "el     lunes",
        "template_params": "first_name = Ana\ndiscount_code = X\tY",
    }
    refused = client.post(url, data=named, headers={"Accept-Language": "en"})
    assert refused.status_code == 422
    assert _error_beside(refused.text, "template_params") == (
        "Line 2: no tabs or more than 4 spaces in a row: WhatsApp refuses them"
    )
    assert _error_beside(refused.text, "template_header") == (
        "No tabs, line breaks or more than 4 spaces in a row: WhatsApp refuses them"
    )


def _send_all(db: Database, broadcast_id: int) -> None:
    """Pump until no recipient waits, the provider taking each batch as it is written (the outbox's
    part, which these tests leave out: messages left pending would hold the channel's next batches)."""
    for _turn in range(100):
        state = sender.pump(db, broadcast_id).state
        with db.transaction() as session:
            session.execute(
                update(Message)
                .where(Message.sender_kind == "broadcast", Message.status == DeliveryStatus.PENDING)
                .values(status=DeliveryStatus.SENT)
            )
        if state != "more":
            return
    raise AssertionError("the broadcast kept recipients waiting")


# Contact values: short or long names, some with a tab, a line break or runs of spaces.
_names = st.one_of(
    st.none(),
    st.text(st.sampled_from("ab \t\n"), max_size=8),
    st.integers(min_value=0, max_value=30).map(lambda n: "M" * n),
)
_last_names = st.one_of(st.none(), st.sampled_from(["Ruiz", "  ", "x" * 200, "de  la Rosa ", "a\u2028b"]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=st.lists(st.tuples(_names, _last_names), min_size=1, max_size=4))
def test_the_dry_run_counts_exactly_the_contacts_the_send_refuses(
    db: Database, client: TestClient, tenant: Tenant, people: list[tuple[str | None, str | None]]
) -> None:
    """The dry run's exclusions per refusal are the recipients whose message the send refuses, on
    each database: the snapshot asks the renderer that sends, and what it refuses is what the
    predicate refuses for each contact's own values."""
    with db.transaction(write=False) as session:
        channel = session.query(Channel).filter_by(workspace_id=tenant.workspace_id, type="whatsapp").first()
        if channel is not None:
            session.expunge(channel)
    if channel is None:
        channel = _store_templates(db, tenant)
    senders = [f"52155{next(_numbers):08d}" for _ in people]
    ids = customers_write(db, channel, senders)
    with db.transaction() as session:
        for contact_id, (first, last) in zip(ids, people, strict=True):
            session.execute(update(Contact).where(Contact.id == contact_id).values(first_name=first, last_name=last))
    content = _content(HEADER, '{{contact.last_name | "cliente"}}', "el lunes")
    broadcast_id = draft(db, tenant, name="Pedidos", audience="all", channel_id=channel.id, content=content)
    dry = client.post(f"/api/v1/broadcasts/{broadcast_id}/dry-run", headers=tenant.headers)
    assert dry.status_code == 200, dry.text
    predicted = dry.json()["counts"]["excluded_by_reason"]
    # What the predicate says of each contact's own values (every contact of the workspace).
    expected: dict[str, int] = {}
    with db.transaction(write=False) as session:
        for first, last in session.query(Contact.first_name, Contact.last_name).filter_by(
            workspace_id=tenant.workspace_id
        ):
            header = f"{first or 'cliente'}: " + "z" * 40
            refusal = audience.parameter_refusal("header", header) or audience.parameter_refusal(
                "body", last or "cliente"
            )
            if refusal is not None:
                expected[refusal] = expected.get(refusal, 0) + 1
    assert {k: v for k, v in predicted.items() if k in audience.PARAMETER_REFUSALS} == expected
    if dry.json()["refused"]:  # nobody left to send to: scheduling would be refused
        assert dry.json()["counts"]["recipients"] == 0
        return
    with db.transaction() as session:
        item = service.access_broadcast(session, tenant.actor(), broadcast_id)
        service.do_schedule(session, tenant.actor(), item, utcnow() + timedelta(minutes=5))
    with at(utcnow() + timedelta(minutes=5, seconds=1)):
        assert sender.start(db, broadcast_id) == "started"
        _send_all(db, broadcast_id)
    refused: dict[str, int] = {}
    rows = recipients(db, broadcast_id)
    for row in rows:
        if row.reason in audience.PARAMETER_REFUSALS:
            refused[row.reason] = refused.get(row.reason, 0) + 1
    assert refused == expected
    messaged = [r for r in rows if r.state == RecipientState.MESSAGED]
    assert len(broadcast_messages(db, broadcast_id)) == len(messaged)
    assert not [r for r in messaged if r.reason in audience.PARAMETER_REFUSALS]


def test_a_contact_whose_values_change_after_the_start_is_skipped_when_sent(
    db: Database, client: TestClient, tenant: Tenant
) -> None:
    """The snapshot excluded nobody; a value changed before their turn makes the send refuse it,
    skipped with the refusal as its reason, labelled on the results page in both languages."""
    channel = _store_templates(db, tenant)
    ana, eva = customers_write(db, channel, ["5215500000001", "5215500000002"], first_name="Ana")
    content = _content("#42", '{{contact.first_name | "cliente"}}', "el lunes")
    broadcast_id = draft(db, tenant, name="Pedidos", audience="all", channel_id=channel.id, content=content)
    with db.transaction() as session:
        item = service.access_broadcast(session, tenant.actor(), broadcast_id)
        service.do_schedule(session, tenant.actor(), item, utcnow() + timedelta(minutes=5))
    with at(utcnow() + timedelta(minutes=5, seconds=1)):
        assert sender.start(db, broadcast_id) == "started"
        with db.transaction() as session:
            session.execute(update(Contact).where(Contact.id == eva).values(first_name="Eva\tMaría"))
        _send_all(db, broadcast_id)
    states = {r.contact_id: (r.state.value, r.reason) for r in recipients(db, broadcast_id)}
    assert states == {ana: ("messaged", None), eva: ("skipped", "parameter_spacing")}
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    for language, label in (
        ("es", "Sus valores ponen un tabulador, un salto de línea o más de 4 espacios seguidos"),
        ("en", "Their values put a tab, a line break or more than 4 spaces in a row"),
    ):
        page = client.get(f"/broadcasts/{broadcast_id}", headers={"Accept-Language": language}).text
        assert label in page


def test_only_contacts_whose_values_could_break_a_parameter_are_rendered_by_the_snapshot(
    db: Database, tenant: Tenant
) -> None:
    """The snapshot's SQL finds the few contacts worth rendering: a short, plain value is not one."""
    channel = _store_templates(db, tenant)
    names = ["Ana", "Ana  María", " Ana", "Ana ", "Ana\tMaría", "M" * 19, "M" * 18, None]
    ids = customers_write(db, channel, [f"52155{n:08d}" for n in range(len(names))])
    content = _content(HEADER, '{{contact.last_name | "cliente"}}', "el lunes")
    broadcast_id = draft(db, tenant, name="Pedidos", audience="all", channel_id=channel.id, content=content)
    with db.transaction() as session:
        for contact_id, name in zip(ids, names, strict=True):
            session.execute(update(Contact).where(Contact.id == contact_id).values(first_name=name))
        item = service.access_broadcast(session, tenant.actor(), broadcast_id)
        renderer = audience.Renderer.of(session, item)
        spec = audience.content_for(item, "whatsapp")
        assert spec is not None
        clause = audience._refusal_candidates(renderer, spec)
        assert clause is not None
        found = set(session.scalars(select(Contact.id).where(Contact.id.in_(ids), clause)))
    # 42 + 18 = 60 fits; 19 do not (rendered, and refused).
    candidates = {ids[n] for n, name in enumerate(names) if name not in ("Ana", "M" * 18, None)}
    assert found == candidates


def test_the_api_refuses_a_variable_in_a_place_header(db: Database, client: TestClient, tenant: Tenant) -> None:
    """A place is sent as written: a variable there would reach the customer as raw braces."""
    channel = _store_templates(db, tenant)
    place = {"latitude": "19.4326", "longitude": "-99.1332", "address": "Calle {{contact.first_name}}"}
    content = {
        "whatsapp": {
            "template": {
                "name": "promo",
                "language": "es_MX",
                "components": [{"type": "header", "parameters": [{"type": "location", "location": place}]}],
            }
        }
    }
    made = client.post(
        "/api/v1/broadcasts",
        headers=tenant.headers,
        json={"name": "Tienda", "channel_id": channel.id, "content": content},
    )
    assert made.status_code == 422, made.text
    path = "content.whatsapp.template.components[0].parameters[0].location.address"
    assert made.json()["error"]["details"][path] == "a place is the same for every contact: no variables"
