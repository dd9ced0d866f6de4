"""The broadcast editor's header text value: a WhatsApp template whose TEXT header takes a parameter
(`Pedido {{1}}`, `Our new sale starts {{sale_start_date}}!`) has a field of its own, checked against
Meta's 60 characters, stored exactly as the API stores the same header, and drafts saved when a named
header's value was a `name = value` line open and save with it in the field."""

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tertulia.broadcasts.models import Audience, Broadcast
from tertulia.channels.message_templates import do_store_templates
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ProviderTemplate
from tertulia.kit.clock import travel
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tests.broadcasts.support import customers_write, draft, get, recipients
from tests.broadcasts.test_audience import whatsapp
from tests.channels import whatsapp_template_samples as template_samples
from tests.channels.fake_graph import connect_whatsapp, fake_graph
from tests.conftest import Tenant
from tests.conversations.support import sign_in as conversation_sign_in
from tests.web.helpers import sign_in_as

SPRING_SALE_HEADER = "Our new sale starts {{sale_start_date}}!"


def _store_templates(db: Database, tenant: Tenant) -> Channel:
    """A WhatsApp number with promo (no header), seguimiento_pedido (positional, header `Pedido {{1}}`,
    a body of two) and spring_sale (named: header sale_start_date, body first_name and discount_code)."""
    channel = whatsapp(db, tenant)
    promo = ProviderTemplate(
        "1", "promo", "es_MX", "MARKETING", "APPROVED", "POSITIONAL", [{"type": "BODY", "text": "Hola {{1}}."}]
    )
    listed = [promo] + [
        ProviderTemplate(
            t["id"], t["name"], t["language"], t["category"], t["status"], t["parameter_format"], t["components"]
        )
        for t in (template_samples.SEGUIMIENTO, template_samples.SPRING_SALE)
    ]
    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        do_store_templates(session, stored, listed)
    return channel


class Editor:
    """The manager signed in on a draft's editor, with the form's fixed fields."""

    def __init__(self, client: TestClient, db: Database, tenant: Tenant) -> None:
        self.client, self.db, self.tenant = client, db, tenant
        self.channel = _store_templates(db, tenant)
        self.token = sign_in_as(client, db, tenant.manager_id, "manager-password")

    def new(self, name: str = "Rebajas") -> tuple[int, str, dict[str, str]]:
        broadcast_id = draft(self.db, self.tenant, name=name)
        base = {"csrf_token": self.token, "name": name, "audience": "all", "channel_id": str(self.channel.id)}
        return broadcast_id, f"/broadcasts/{broadcast_id}", base


@pytest.fixture
def editor(client: TestClient, db: Database, tenant: Tenant) -> Editor:
    return Editor(client, db, tenant)


def _error_beside(page: str, field: str) -> str | None:
    found = re.search(rf'<p class="field-error" id="{field}-error" role="alert">(.*?)</p>', page, re.S)
    return html.unescape(found.group(1)) if found else None


def _shown(page: str) -> bool:
    found = re.search(r'data-testid="template-header"( hidden)?>', page)
    assert found, "the header text field is on the page"
    return found.group(1) is None


def _input(page: str, field: str) -> str:
    found = re.search(rf'<input id="f-{field}" name="{field}" type="text" value="([^"]*)"', page)
    assert found, f"{field} is on the page"
    return html.unescape(found.group(1))


def _textarea(page: str, field: str) -> str:
    found = re.search(rf'<textarea id="f-{field}" name="{field}"[^>]*>(.*?)</textarea>', page, re.S)
    assert found, f"{field} is on the page"
    return html.unescape(found.group(1))


def _template(db: Database, broadcast_id: int) -> Any:
    return (get(db, broadcast_id).content.get("whatsapp") or {}).get("template")


def test_the_header_text_field_has_its_label_and_shows_only_for_a_text_header_with_a_parameter(
    editor: Editor,
) -> None:
    broadcast_id, url, base = editor.new()
    client = editor.client
    blank = client.get(url, headers={"Accept-Language": "es"}).text
    assert '<label for="f-template_header">Valor del texto del encabezado</label>' in blank
    assert not _shown(blank)  # no template typed yet
    english = client.get(url, headers={"Accept-Language": "en"}).text
    assert '<label for="f-template_header">Header text value</label>' in english
    # The page's script shows it for the templates listed here as the name and language are typed.
    assert 'data-template-header="seguimiento_pedido|es_mx spring_sale|en_us"' in english
    assert "<td>first_name, discount_code</td>" in english  # a named template's lines: the body's names
    for name, language, params, shown in (
        ("promo", "es_MX", "Ana", False),
        ("seguimiento_pedido", "es_MX", "Ana\nel lunes", True),
        ("spring_sale", "en_US", "first_name = Ana\ndiscount_code = X", True),
    ):
        form = {**base, "template_name": name, "template_language": language, "template_params": params}
        assert client.post(url, data=form, follow_redirects=False).status_code == 303
        assert _shown(client.get(url).text) is shown, name
    # A value for a header that takes none is refused beside the field.
    refused = client.post(
        url,
        data={**base, "template_name": "promo", "template_language": "es_MX", "template_params": "Ana"}
        | {"template_header": "Hola"},
        headers={"Accept-Language": "es"},
    )
    assert refused.status_code == 422
    assert _error_beside(refused.text, "template_header") == (
        "El encabezado de esta plantilla no lleva un valor de texto: déjalo vacío"
    )
    assert _template(editor.db, broadcast_id)["name"] == "spring_sale"  # the last save, untouched


@pytest.mark.parametrize(
    ("name", "language", "params", "missing_es"),
    [
        (
            "seguimiento_pedido",
            "es_MX",
            "Ana\nel lunes",
            "El encabezado necesita un valor para su {{1}} (Pedido {{1}})",
        ),
        (
            "spring_sale",
            "en_US",
            "first_name = Ana\ndiscount_code = X",
            "El encabezado necesita un valor para su {{sale_start_date}} (" + SPRING_SALE_HEADER + ")",
        ),
    ],
)
def test_the_header_text_value_is_required_and_at_most_60_characters_beside_its_field(
    editor: Editor, name: str, language: str, params: str, missing_es: str
) -> None:
    broadcast_id, url, base = editor.new()
    client = editor.client
    form = {**base, "template_name": name, "template_language": language, "template_params": params}
    # Missing: the draft is saved (what is missing may come later), the field says it is needed,
    # and the dry run and scheduling wait for it.
    saved = client.post(url, data=form, follow_redirects=False)
    assert saved.status_code == 303
    page = client.get(url, headers={"Accept-Language": "es"}).text
    assert _error_beside(page, "template_header") == missing_es
    assert (
        'href="' + url + '#f-template_header">Valor del texto del encabezado</a>'
        in client.get(f"{url}/dry-run", headers={"Accept-Language": "es"}).text
    )
    refused = client.post(f"{url}/schedule", data={"csrf_token": editor.token, "scheduled_at": ""})
    assert refused.status_code == 422
    # 61 characters: refused beside the field, in Spanish and English, nothing saved.
    for header, language_code, message in (
        (
            "x" * 61,
            "es",
            "Como máximo 60 caracteres en una línea, cada variable contada como su valor por defecto (hay 61)",
        ),
        ("x" * 61, "en", "At most 60 characters on one line, a variable counted as its fallback (61 written)"),
        # A variable counts as its fallback: 50 + len("cliente123x") = 61.
        (
            "y" * 50 + '{{contact.first_name | "cliente123x"}}',
            "en",
            "At most 60 characters on one line, a variable counted as its fallback (61 written)",
        ),
    ):
        too_long = client.post(
            url, data={**form, "template_header": header}, headers={"Accept-Language": language_code}
        )
        assert too_long.status_code == 422
        assert _error_beside(too_long.text, "template_header") == message
        assert _input(too_long.text, "template_header") == header  # kept as typed
        assert _error_beside(too_long.text, "template_params") is None
    assert _template(editor.db, broadcast_id)["components"][0]["type"] == "body"  # still the first save
    # Exactly 60, a variable's fallback included: saved, and nothing left beside the fields.
    for header in ("z" * 60, "y" * 50 + '{{contact.first_name | "cliente123"}}', "y" * 59 + "{{contact.first_name}}"):
        ok = client.post(url, data={**form, "template_header": header}, follow_redirects=False)
        assert ok.status_code == 303, _error_beside(ok.text, "template_header")
        assert _template(editor.db, broadcast_id)["components"][0]["parameters"][0]["text"] == header
        assert _error_beside(client.get(url).text, "template_header") is None


def test_the_api_refuses_a_header_text_over_60_characters_as_the_page_does(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    broadcast_id = draft(db, tenant, name="Pedidos")
    path = "content.whatsapp.template.components[0].parameters[0]"

    def patch(text: str) -> Any:
        content = {
            "whatsapp": {
                "template": {
                    "name": "seguimiento_pedido",
                    "language": "es_MX",
                    "components": [{"type": "header", "parameters": [{"text": text}]}],
                }
            }
        }
        return client.patch(f"/api/v1/broadcasts/{broadcast_id}", headers=tenant.headers, json={"content": content})

    refused = patch("x" * 61)
    assert refused.status_code == 422
    assert list(refused.json()["error"]["details"]) == [path]
    assert patch("x" * 60).status_code == 200
    assert patch("Pedido\n#42").status_code == 422


_value = (
    st.text(
        st.characters(categories=["L", "N", "P", "S", "Zs"], exclude_characters="{}"),
        min_size=1,
        max_size=60,
    )
    .map(str.strip)
    .filter(bool)
)
_variable = st.sampled_from(['{{contact.first_name | "cliente"}}', "{{contact.phone}}", "{{workspace.name}}"])
_header = st.one_of(_value, _variable, st.builds("{} {}".format, _value, _variable).filter(lambda v: len(v) <= 60))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    named=st.booleans(),
    header=_header,
    first=st.one_of(_value, _variable),
    second=_value,
)
def test_the_page_stores_a_template_header_exactly_as_the_api_stores_it(
    editor: Editor, named: bool, header: str, first: str, second: str
) -> None:
    """On both databases: the header, positional or named, and the body typed on the page are stored
    as the same content the API stores when given Meta's components in the shape docs/broadcasts.md
    documents, and the page shows the stored API draft in the same fields."""
    by_page, url, base = editor.new("Por la página")
    by_api, api_url, _ = editor.new("Por la API")
    if named:
        name, language = "spring_sale", "en_US"
        params = f"first_name = {first}\ndiscount_code = {second}"
        components = [
            {"type": "header", "parameters": [{"parameter_name": "sale_start_date", "text": header}]},
            {
                "type": "body",
                "parameters": [
                    {"parameter_name": "first_name", "text": first},
                    {"parameter_name": "discount_code", "text": second},
                ],
            },
        ]
    else:
        name, language = "seguimiento_pedido", "es_MX"
        params = f"{first}\n{second}"
        components = [
            {"type": "header", "parameters": [{"text": header}]},
            {"type": "body", "parameters": [{"text": first}, {"text": second}]},
        ]
    form = {
        **base,
        "name": "Por la página",
        "template_name": name,
        "template_language": language,
        "template_header": header,
        "template_params": params,
    }
    saved = editor.client.post(url, data=form, follow_redirects=False)
    assert saved.status_code == 303, (_error_beside(saved.text, "template_header"), saved.text[-2000:])
    api = editor.client.patch(
        f"/api/v1/broadcasts/{by_api}",
        headers=editor.tenant.headers,
        json={"content": {"whatsapp": {"template": {"name": name, "language": language, "components": components}}}},
    )
    assert api.status_code == 200, api.text
    assert _template(editor.db, by_page) == _template(editor.db, by_api)
    assert api.json()["content"]["whatsapp"]["template"] == _template(editor.db, by_page)
    shown = editor.client.get(api_url).text
    assert _input(shown, "template_header") == header
    assert _textarea(shown, "template_params") == params


# What the editor stored for spring_sale when its header's value was one of the `name = value` lines
# (the header component carries the name, as Meta's named form does).
OLD_NAMED_DRAFT = {
    "whatsapp": {
        "template": {
            "name": "spring_sale",
            "language": {"code": "en_US"},
            "components": [
                {"type": "header", "parameters": [{"text": "el lunes", "parameter_name": "sale_start_date"}]},
                {
                    "type": "body",
                    "parameters": [
                        {"text": '{{contact.first_name | "cliente"}}', "parameter_name": "first_name"},
                        {"text": "PRIMAVERA", "parameter_name": "discount_code"},
                    ],
                },
            ],
        }
    }
}


def test_an_old_draft_with_its_header_among_the_lines_opens_with_it_in_the_field_and_saves_it(
    editor: Editor,
) -> None:
    broadcast_id, url, base = editor.new()
    client = editor.client
    with editor.db.transaction() as session:
        stored = session.get(Broadcast, broadcast_id)
        assert stored is not None
        stored.content = OLD_NAMED_DRAFT
        stored.audience = Audience.ALL
        stored.channel_id = editor.channel.id
    # Migrated on read: the header's value in its field, the lines the body's only, nothing missing.
    page = client.get(url).text
    assert _shown(page)
    assert _input(page, "template_header") == "el lunes"
    assert (
        _textarea(page, "template_params")
        == 'first_name = {{contact.first_name | "cliente"}}\ndiscount_code = PRIMAVERA'
    )
    assert _error_beside(page, "template_header") is None
    assert _error_beside(page, "template_params") is None
    # Saved as the page shows it: the same content.
    form = {
        **base,
        "template_name": _input(page, "template_name"),
        "template_language": _input(page, "template_language"),
        "template_header": _input(page, "template_header"),
        "template_params": _textarea(page, "template_params"),
    }
    assert client.post(url, data=form, follow_redirects=False).status_code == 303
    assert _template(editor.db, broadcast_id) == OLD_NAMED_DRAFT["whatsapp"]["template"]
    # A form typed the old way (a page opened before the change): the header's line is its value.
    old_form = {
        **form,
        "template_header": "",
        "template_params": "sale_start_date = el lunes\n" + form["template_params"],
    }
    assert client.post(url, data=old_form, follow_redirects=False).status_code == 303
    assert _template(editor.db, broadcast_id) == OLD_NAMED_DRAFT["whatsapp"]["template"]
    # Such a line is checked like the field (61 characters: refused beside the lines it was written in).
    too_long = client.post(
        url, data={**old_form, "template_params": f"sale_start_date = {'x' * 61}\nfirst_name = Ana\ndiscount_code = X"}
    )
    assert too_long.status_code == 422
    assert _error_beside(too_long.text, "template_params") == (
        "At most 60 characters on one line, a variable counted as its fallback (61 written)"
    )
    assert _template(editor.db, broadcast_id) == OLD_NAMED_DRAFT["whatsapp"]["template"]


def test_a_contact_whose_values_make_the_header_longer_than_60_characters_is_not_sent_it(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    """The editor and the API can only count a variable as its fallback: a contact whose own value
    makes the header longer than Meta takes is excluded when the broadcast starts (reason
    header_too_long, as the dry run counts it), the others get it."""
    header = '{{contact.first_name | "cliente"}}: ' + "z" * 40  # 42 + the name
    with fake_graph([template_samples.SEGUIMIENTO]) as graph:
        created = connect_whatsapp(client, conversation_sign_in(db, tenant, Role.MANAGER).headers, graph)
        with db.transaction(write=False) as session:
            channel = session.get(Channel, created["id"])
            assert channel is not None
            session.expunge(channel)
        with travel(timedelta(hours=-25)):  # the window has closed: the template goes out
            (short,) = customers_write(db, channel, ["16505551234"], first_name="Ana")
            (long,) = customers_write(db, channel, ["16505551235"], first_name="Maximiliana Guadalupe")
        content = {
            "whatsapp": {
                "template": {
                    "name": "seguimiento_pedido",
                    "language": "es_MX",
                    "components": [
                        {"type": "header", "parameters": [{"text": header}]},
                        {"type": "body", "parameters": [{"text": "Ana"}, {"text": "el lunes"}]},
                    ],
                }
            }
        }
        made = client.post(
            "/api/v1/broadcasts",
            headers=tenant.headers,
            json={"name": "Pedidos", "audience": "all", "channel_id": channel.id, "content": content},
        )
        assert made.status_code == 201, made.text
        broadcast_id = made.json()["id"]
        sent = client.post(f"/api/v1/broadcasts/{broadcast_id}/schedule", headers=tenant.headers, json={})
        assert sent.status_code == 200, sent.text
        states = {r.contact_id: (r.state.value, r.reason) for r in recipients(db, broadcast_id)}
        assert states[long] == ("excluded", "header_too_long")
        assert states[short][0] == "messaged"
        assert len(graph.sent) == 1
        assert graph.sent[0]["body"]["template"]["components"][0]["parameters"][0]["text"] == "Ana: " + "z" * 40
    # The results page says why, in the reader's language.
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    results = client.get(f"/broadcasts/{broadcast_id}", headers={"Accept-Language": "es"}).text
    assert "Sus valores hacen el encabezado de la plantilla más largo de 60 caracteres" in results


def test_an_old_named_draft_whose_template_is_no_longer_synced_saves_with_its_names(editor: Editor) -> None:
    """The template's problem is shown (not synced), and saving the draft as the page shows it keeps
    each value with its parameter name, the header's too."""
    broadcast_id, url, base = editor.new()
    client = editor.client
    gone = {**OLD_NAMED_DRAFT["whatsapp"]["template"], "name": "rebajas_2025"}
    with editor.db.transaction() as session:
        stored = session.get(Broadcast, broadcast_id)
        assert stored is not None
        stored.content = {"whatsapp": {"template": gone}}
        stored.audience = Audience.ALL
        stored.channel_id = editor.channel.id
    page = client.get(url).text
    assert _input(page, "template_header") == "el lunes"
    assert _error_beside(page, "template_name") is not None  # no number has it
    form = {
        **base,
        "template_name": _input(page, "template_name"),
        "template_language": _input(page, "template_language"),
        "template_header": _input(page, "template_header"),
        "template_params": _textarea(page, "template_params"),
    }
    assert client.post(url, data=form, follow_redirects=False).status_code == 303
    assert _template(editor.db, broadcast_id) == gone
