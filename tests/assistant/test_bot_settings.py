"""The assistant's per-channel settings (/api/v1/assistant/channels/{id}/settings) on both databases:
defaults until saved, partial updates, validation with field paths, another workspace's channel not
found; and the hand-off keyword rule the bot will use."""

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tertulia.assistant.bot_settings import DEFAULT_KEYWORDS, asks_for_a_person, settings_for
from tertulia.assistant.retrieval import DEFAULT_THRESHOLD
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.conversations.support import make_webchat


def test_settings_default_then_saved_field_by_field(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    url = f"/api/v1/assistant/channels/{channel.id}/settings"
    first = client.get(url, headers=tenant.headers).json()
    assert first["enabled"] is False
    assert first["threshold"] == DEFAULT_THRESHOLD
    assert first["handoff_keywords"] == list(DEFAULT_KEYWORDS)
    saved = client.put(
        url,
        headers=tenant.headers,
        json={"enabled": True, "threshold": 0.6, "handoff_keywords": ["asesor", " Asesor "]},
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["handoff_keywords"] == ["asesor"]
    again = client.put(url, headers=tenant.headers, json={"max_bot_answers": 3})
    assert again.json()["enabled"] is True
    assert again.json()["threshold"] == 0.6
    assert again.json()["max_bot_answers"] == 3
    with db.transaction(write=False) as session:
        values = settings_for(session, tenant.workspace_id, channel.id)
    assert (values.enabled, values.threshold, values.max_bot_answers) == (True, 0.6, 3)


def test_invalid_settings_name_every_field(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    refused = client.put(
        f"/api/v1/assistant/channels/{channel.id}/settings",
        headers=tenant.headers,
        json={"threshold": 1.5, "handoff_message": "  ", "max_bot_answers": 0},
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == {
        "threshold": "Enter a confidence between 0 and 1.",
        "handoff_message": "Enter the message the customer gets when a person takes over.",
        "max_bot_answers": "Enter a number of answers between 1 and 100.",
    }


def test_another_workspaces_channel_is_not_found(
    client: TestClient, db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    other = make_tenant("Otra")
    theirs = make_webchat(db, other)
    url = f"/api/v1/assistant/channels/{theirs.id}/settings"
    assert client.get(url, headers=tenant.headers).status_code == 404
    assert client.put(url, headers=tenant.headers, json={"enabled": True}).status_code == 404
    with db.transaction(write=False) as session:
        assert settings_for(session, tenant.workspace_id, theirs.id).enabled is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Quiero hablar con un HUMANO", True),
        ("¿me pasás con una persona?", True),
        ("can I talk to an agent please", True),
        ("es una ayuda humanitaria", False),
        ("las personas mayores tienen descuento?", False),
        ("agentes de ventas", False),
    ],
)
def test_handoff_keywords_match_whole_words(text: str, expected: bool) -> None:
    assert asks_for_a_person(text, list(DEFAULT_KEYWORDS)) is expected
