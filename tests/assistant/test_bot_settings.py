"""The assistant's per-channel settings (/api/v1/assistant/channels/{id}/settings) on both databases:
defaults until saved, partial updates, validation with field paths, another workspace's channel not
found; a threshold left empty following the default (and the migration that makes the old default
stored by every saved channel the default); and the hand-off keyword rule the bot will use."""

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.assistant.bot_settings import DEFAULT_KEYWORDS, asks_for_a_person, settings_for
from tertulia.assistant.models import ChannelBotSettings
from tertulia.assistant.retrieval import DEFAULT_THRESHOLD
from tertulia.channels.service import do_create_channel
from tertulia.kit.db import Database
from tertulia.migrations import alembic_config, upgrade
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.permissions import Actor
from tests.conftest import Tenant, drop_postgres_database, fresh_postgres_database, worker_name
from tests.conversations.support import make_webchat
from tests.web.helpers import sign_in_as


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


def test_a_threshold_left_empty_follows_the_default(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    url = f"/api/v1/assistant/channels/{channel.id}/settings"
    saved = client.put(url, headers=tenant.headers, json={"enabled": True}).json()
    assert (saved["threshold"], saved["threshold_is_default"]) == (DEFAULT_THRESHOLD, True)
    with db.transaction(write=False) as session:
        row = session.scalar(select(ChannelBotSettings).where(ChannelBotSettings.channel_id == channel.id))
        assert row is not None
        assert row.threshold is None  # stored as "the default", not as today's number
        assert settings_for(session, tenant.workspace_id, channel.id).applied_threshold == DEFAULT_THRESHOLD
    own = client.put(url, headers=tenant.headers, json={"threshold": 0.7}).json()
    assert (own["threshold"], own["threshold_is_default"]) == (0.7, False)
    back = client.put(url, headers=tenant.headers, json={"threshold": None}).json()
    assert (back["threshold"], back["threshold_is_default"]) == (DEFAULT_THRESHOLD, True)
    # The page: an empty field is the default, shown as the placeholder.
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get(f"/settings/assistant-bot?channel={channel.id}")
    assert f'placeholder="{DEFAULT_THRESHOLD:g}"' in page.text
    form = {
        "enabled": "1",
        "threshold": "0.65",
        "handoff_keywords": "agente",
        "handoff_message": "Ya te atiende una persona.",
        "max_bot_answers": "5",
        "hours": "always",
        "csrf_token": token,
    }
    assert client.post(f"/settings/assistant-bot/{channel.id}", data=form).status_code == 200
    assert client.get(url, headers=tenant.headers).json()["threshold"] == 0.65
    client.post(f"/settings/assistant-bot/{channel.id}", data={**form, "threshold": " "})
    assert client.get(url, headers=tenant.headers).json()["threshold_is_default"] is True


def test_the_migration_turns_the_old_default_into_the_default(db: Database, tmp_path: Path) -> None:
    """Channels whose settings were saved before 2026-11-27 stored the 0.53 the page showed them; it
    becomes null (the default, now 0.56). A threshold a person chose is kept."""
    if db.dialect == "postgresql":
        url = fresh_postgres_database(f"tertulia_test_{worker_name()}_threshold")
    else:
        url = f"sqlite:///{tmp_path / 'threshold.db'}"
    upgrade(url)
    database = Database(url)
    try:
        with database.transaction() as session:
            workspace = do_create_workspace_with_owner(session, "Tienda", "dueña@example.com", "owner-password")
            actor = Actor.system(workspace.workspace.id, "test")
            thresholds = {}
            for name, threshold in (("old default", 0.53), ("chosen", 0.6)):
                channel = do_create_channel(session, actor, "webchat", name, {})
                session.add(
                    ChannelBotSettings(
                        workspace_id=channel.workspace_id,
                        channel_id=channel.id,
                        threshold=threshold,
                        handoff_keywords=[],
                        handoff_message="Un momento.",
                        max_bot_answers=5,
                    )
                )
                thresholds[name] = channel.id
        # Back to before the migration, where the rows hold these numbers, and up again.
        command.downgrade(alembic_config(url), "0470_workflow_http_hosts")
        upgrade(url)
        with database.transaction(write=False) as session:
            stored = dict(session.execute(select(ChannelBotSettings.channel_id, ChannelBotSettings.threshold)).all())
        assert stored[thresholds["old default"]] is None
        assert stored[thresholds["chosen"]] == 0.6
    finally:
        database.dispose()
        if db.dialect == "postgresql":
            drop_postgres_database(f"tertulia_test_{worker_name()}_threshold")
