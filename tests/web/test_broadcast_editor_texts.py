"""The broadcast editor's text per channel type and its workflow on reply: what the API can store,
the editor shows and keeps, with problems beside their fields in the reader's language."""

import re
from collections.abc import Callable

from fastapi.testclient import TestClient

from tertulia.broadcasts import service
from tertulia.kit.db import Database
from tertulia.workflows import service as workflows_service
from tests.broadcasts.support import customers_write, draft, get
from tests.broadcasts.test_audience import whatsapp
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as
from tests.workflows.support import publish

ON_REPLY = {
    "trigger": {"type": "broadcast_replied", "config": {}},
    "steps": [{"id": "mark", "type": "add_tags", "config": {"tags": ["respondio"]}}],
}
ON_TAG = {
    "trigger": {"type": "tag_added", "config": {}},
    "steps": [{"id": "mark", "type": "add_tags", "config": {"tags": ["otra"]}}],
}


def _error_beside(html: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="{field}-error" role="alert">(.*?)</p>', html, re.S)
    assert found is not None, f"no error beside {field}"
    return found.group(1).strip()


def _textarea(html: str, field: str) -> str | None:
    found = re.search(rf'<textarea id="f-{field}" name="{field}"[^>]*>(.*?)</textarea>', html, re.S)
    return None if found is None else found.group(1)


def test_a_text_per_channel_type_is_stored_shown_again_and_previewed(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    channel = whatsapp(db, tenant)
    customers_write(db, channel, ["16505551234", "16505551235"])
    # Drafted through the API with a text for WhatsApp only: the editor shows it in WhatsApp's field,
    # and saving the page keeps it (the page used to show an empty text and drop it on save).
    broadcast_id = draft(
        db,
        tenant,
        name="Aviso",
        audience="all",
        channel_id=channel.id,
        content={"default": {"text": "Hola"}, "whatsapp": {"text": "Hola por WhatsApp"}},
    )
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    client.cookies.set("tertulia_lang", "es")
    url = f"/broadcasts/{broadcast_id}"
    page = client.get(url).text
    assert _textarea(page, "text") == "Hola"
    assert _textarea(page, "text_whatsapp") == "Hola por WhatsApp"
    assert 'data-testid="own-texts" open' in page
    # A type without a channel in the workspace and without a text of its own is not offered.
    assert _textarea(page, "text_telegram") is None
    form = {
        "csrf_token": token,
        "name": "Aviso",
        "audience": "all",
        "channel_id": str(channel.id),
        "text": "Hola",
        "quick_replies": "Sí\nNo",
        "text_whatsapp": 'Hola {{contact.first_name | "cliente"}}, por WhatsApp',
    }
    assert client.post(url, data=form, follow_redirects=False).status_code == 303
    content = get(db, broadcast_id).content
    buttons = {"buttons": [{"id": "Sí", "title": "Sí"}, {"id": "No", "title": "No"}]}
    assert content == {
        "default": {"text": "Hola", "quick_reply": buttons},
        "whatsapp": {"text": 'Hola {{contact.first_name | "cliente"}}, por WhatsApp', "quick_reply": buttons},
    }
    with db.transaction(write=False) as session:
        previews = service.preview(session, tenant.actor(), get(db, broadcast_id))
    assert [p.text for p in previews] == ["Hola cliente, por WhatsApp"] * 2
    # Emptied, the channel's text goes: the default one is sent there again.
    assert client.post(url, data={**form, "text_whatsapp": ""}, follow_redirects=False).status_code == 303
    assert set(get(db, broadcast_id).content) == {"default"}
    # A problem in a channel's own text is beside that field, in the reader's language.
    bad = {**form, "text_whatsapp": "Hola {{contact.apodo}}"}
    refused = client.post(url, data=bad)
    assert refused.status_code == 422
    assert "apodo" in _error_beside(refused.text, "text_whatsapp")
    assert _textarea(refused.text, "text_whatsapp") == "Hola {{contact.apodo}}"
    assert 'id="text-error"' not in refused.text
    assert set(get(db, broadcast_id).content) == {"default"}  # nothing saved


def test_the_workflow_on_reply_lists_broadcast_reply_workflows_and_refuses_others(
    client: TestClient, db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    published = publish(db, tenant, ON_REPLY, name="Gracias por responder")
    with db.transaction() as session:
        drafted = workflows_service.do_create_workflow(session, tenant.actor(), "Borrador de respuesta", ON_REPLY).id
    other_trigger = publish(db, tenant, ON_TAG, name="Etiquetas")
    elsewhere = publish(db, make_tenant(), ON_REPLY, name="Ajeno")
    broadcast_id = draft(db, tenant, name="Encuesta")
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    client.cookies.set("tertulia_lang", "es")
    url = f"/broadcasts/{broadcast_id}"
    page = client.get(url).text
    options = re.search(r'<select id="f-reply_workflow_id".*?</select>', page, re.S)
    assert options is not None
    listed = dict(re.findall(r'<option value="(\d*)"[^>]*>([^<]*)</option>', options.group(0)))
    assert set(listed) == {"", str(published), str(drafted)}
    assert listed[str(published)] == "Gracias por responder"
    assert listed[str(drafted)] == "Borrador de respuesta (borrador: no inicia nada hasta publicarlo)"
    form = {"csrf_token": token, "name": "Encuesta", "reply_workflow_id": str(published)}
    assert client.post(url, data=form, follow_redirects=False).status_code == 303
    assert get(db, broadcast_id).reply_workflow_id == published
    assert f'<option value="{published}" selected>' in client.get(url).text
    for wrong in (other_trigger, elsewhere, 999_999):
        refused = client.post(url, data={**form, "reply_workflow_id": str(wrong)})
        assert refused.status_code == 422
        assert _error_beside(refused.text, "reply_workflow_id") == (
            "ningún flujo de este espacio de trabajo con un disparador de respuesta a difusión tiene este id"
        )
    assert get(db, broadcast_id).reply_workflow_id == published
    # Chosen "none", the broadcast names no workflow.
    assert client.post(url, data={**form, "reply_workflow_id": ""}, follow_redirects=False).status_code == 303
    assert get(db, broadcast_id).reply_workflow_id is None
    # The API refuses the same ids, naming the field.
    api = f"/api/v1/broadcasts/{broadcast_id}"
    for wrong in (other_trigger, elsewhere, 999_999):
        answer = client.patch(api, headers=tenant.headers, json={"reply_workflow_id": wrong})
        assert answer.status_code == 422, answer.text
        assert "reply_workflow_id" in answer.json()["error"]["details"]
    assert client.patch(api, headers=tenant.headers, json={"reply_workflow_id": drafted}).status_code == 200
