"""Settings > Assistant > Bot: an owner turns the bot on for a channel with its options, errors
show beside their fields in Spanish and English, agents cannot open it."""

import pytest
from fastapi.testclient import TestClient

from tertulia.assistant.bot_settings import settings_for
from tertulia.kit.db import Database
from tertulia.web.context import LANGUAGE_COOKIE
from tests.conftest import Tenant
from tests.conversations.support import make_webchat
from tests.web.helpers import sign_in_as

FORM = {
    "enabled": "1",
    "hours": "outside",
    "threshold": "0,6",
    "max_bot_answers": "3",
    "handoff_keywords": "asesor, humano",
    "handoff_message": "Te paso con alguien del equipo.",
    "keep_paused": "1",
}


def test_an_owner_saves_the_bot_of_a_channel(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get("/settings/assistant-bot", params={"channel": channel.id})
    assert page.status_code == 200
    assert f'action="/settings/assistant-bot/{channel.id}"' in page.text
    saved = client.post(
        f"/settings/assistant-bot/{channel.id}", data={**FORM, "csrf_token": token}, follow_redirects=False
    )
    assert saved.status_code == 303, saved.text
    with db.transaction(write=False) as session:
        values = settings_for(session, tenant.workspace_id, channel.id)
    assert values.enabled is True
    assert values.hours == "outside"
    assert values.threshold == 0.6
    assert values.max_bot_answers == 3
    assert values.handoff_keywords == ["asesor", "humano"]
    assert values.keep_paused is True
    again = client.get("/settings/assistant-bot", params={"channel": channel.id})
    assert 'value="asesor, humano"' in again.text


@pytest.mark.parametrize(
    ("language", "threshold_error", "message_error"),
    [
        ("es", "Escribe una confianza entre 0 y 1.", "Escribe el mensaje que recibe el cliente"),
        ("en", "Enter a confidence between 0 and 1.", "Enter the message the customer gets"),
    ],
)
def test_errors_beside_their_fields(
    client: TestClient, db: Database, tenant: Tenant, language: str, threshold_error: str, message_error: str
) -> None:
    channel = make_webchat(db, tenant)
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    client.cookies.set(LANGUAGE_COOKIE, language)
    refused = client.post(
        f"/settings/assistant-bot/{channel.id}",
        data={**FORM, "threshold": "mucho", "handoff_message": " ", "csrf_token": token},
    )
    assert refused.status_code == 422
    assert f'<p class="field-error" id="threshold-error" role="alert">{threshold_error}</p>' in refused.text
    assert 'id="handoff_message-error"' in refused.text
    assert message_error in refused.text
    assert 'value="mucho"' in refused.text
    with db.transaction(write=False) as session:
        assert settings_for(session, tenant.workspace_id, channel.id).enabled is False


def test_agents_cannot_open_the_bot_settings(client: TestClient, db: Database, tenant: Tenant) -> None:
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.get("/settings/assistant-bot").status_code == 403
