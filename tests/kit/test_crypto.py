"""Secrets encrypted at rest: nothing readable in the database, loud failure with a wrong key,
rotation through previous instance secrets, and the migration that encrypts existing rows."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.orm import load_only
from typer.testing import CliRunner

from tertulia.channels.models import Channel
from tertulia.channels.service import do_create_channel
from tertulia.cli import app
from tertulia.kit import db as kit_db
from tertulia.kit.crypto import SecretKeyError, decrypt_json, encrypt_json, keyring, reencrypt_column
from tertulia.kit.db import Database
from tertulia.kit.settings import get_settings
from tertulia.migrations import alembic_config, upgrade
from tests.conftest import Tenant, drop_postgres_database, fresh_postgres_database, worker_name

PURPOSE = "channels.secrets"
PLAINTEXT = "sk-very-secret-ñandú-value"


@pytest.fixture
def instance_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Lets a test change the instance secret the app resolves; the suite's own is back afterwards."""
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()
    kit_db.get_database.cache_clear()


def _use_secret(monkeypatch: pytest.MonkeyPatch, secret: str, previous: str = "") -> None:
    monkeypatch.setenv("TERTULIA_SECRET_KEY", secret)
    monkeypatch.setenv("TERTULIA_PREVIOUS_SECRET_KEYS", previous)
    get_settings.cache_clear()


def test_round_trip_is_authenticated_and_randomised() -> None:
    stored = encrypt_json(PURPOSE, {"token": PLAINTEXT})
    assert stored.startswith(f"v1:{keyring(PURPOSE).current.key_id}:")
    assert PLAINTEXT not in stored
    assert decrypt_json(PURPOSE, stored) == {"token": PLAINTEXT}
    assert encrypt_json(PURPOSE, {"token": PLAINTEXT}) != stored  # a fresh IV each time
    # Each purpose has its own derived key: a value cannot be read as another column's.
    assert keyring("other.column").current.key_id != keyring(PURPOSE).current.key_id
    with pytest.raises(SecretKeyError, match=r"other\.column"):
        decrypt_json("other.column", stored)


def test_a_changed_instance_secret_fails_loudly(instance_secret: pytest.MonkeyPatch) -> None:
    stored = encrypt_json(PURPOSE, {"token": PLAINTEXT})
    assert decrypt_json(PURPOSE, stored) == {"token": PLAINTEXT}  # decrypted (and remembered) once
    _use_secret(instance_secret, "a-different-secret")
    with pytest.raises(SecretKeyError, match=r"stored under key id \w{8}.*TERTULIA_SECRET_KEY"):
        decrypt_json(PURPOSE, stored)


def test_an_altered_value_fails_authentication() -> None:
    stored = encrypt_json(PURPOSE, {"token": PLAINTEXT})
    version, key_id, token = stored.split(":")
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    with pytest.raises(SecretKeyError, match="fails authentication"):
        decrypt_json(PURPOSE, f"{version}:{key_id}:{flipped}")
    with pytest.raises(SecretKeyError, match="not in the encrypted format"):
        decrypt_json(PURPOSE, json.dumps({"token": PLAINTEXT}))


def test_the_database_row_holds_no_plaintext(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        channel = do_create_channel(session, tenant.actor(), "webchat", "Web chat")
        channel_id, identity_secret = channel.id, channel.secrets["identity_secret"]
    with db.transaction(write=False) as session:
        raw = session.execute(text("SELECT secrets FROM channels WHERE id = :id"), {"id": channel_id}).scalar_one()
        assert isinstance(raw, str)
        assert raw.startswith("v1:")
        assert identity_secret not in raw
        assert "identity_secret" not in raw
        loaded = session.get(Channel, channel_id)
        assert loaded is not None
        assert loaded.secrets == {"identity_secret": identity_secret}


def test_loading_with_a_wrong_key_raises(db: Database, tenant: Tenant, instance_secret: pytest.MonkeyPatch) -> None:
    with db.transaction() as session:
        channel_id = do_create_channel(session, tenant.actor(), "webchat", "Web chat").id
    _use_secret(instance_secret, "a-different-secret")
    with db.transaction(write=False) as session, pytest.raises(SecretKeyError, match=r"channels\.secrets"):
        session.get(Channel, channel_id)


def test_rotation_reads_old_values_and_reencrypts_them(
    db: Database, tenant: Tenant, instance_secret: pytest.MonkeyPatch
) -> None:
    old = get_settings().resolved_secret_key()
    with db.transaction() as session:
        channel = do_create_channel(session, tenant.actor(), "webchat", "Web chat")
        channel_id, identity_secret = channel.id, channel.secrets["identity_secret"]
    _use_secret(instance_secret, "the-new-secret", previous=old)
    with db.transaction() as session:
        assert reencrypt_column(session.connection(), "channels", "secrets", PURPOSE) == 1
        assert reencrypt_column(session.connection(), "channels", "secrets", PURPOSE) == 0
    _use_secret(instance_secret, "the-new-secret")  # the old secret is no longer needed
    with db.transaction(write=False) as session:
        loaded = session.get(Channel, channel_id)
        assert loaded is not None
        assert loaded.secrets == {"identity_secret": identity_secret}


def test_the_cli_reencrypts_every_encrypted_column(
    db: Database, tenant: Tenant, instance_secret: pytest.MonkeyPatch
) -> None:
    old = get_settings().resolved_secret_key()
    with db.transaction() as session:
        channel_id = do_create_channel(session, tenant.actor(), "webchat", "Web chat").id
    before = _raw(db, channel_id)
    instance_secret.setenv("TERTULIA_DATABASE_URL", db.url)
    kit_db.get_database.cache_clear()
    _use_secret(instance_secret, "the-new-secret")
    refused = CliRunner().invoke(app, ["reencrypt-secrets"])
    assert refused.exit_code == 1
    assert "TERTULIA_PREVIOUS_SECRET_KEYS" in refused.output
    assert _raw(db, channel_id) == before
    _use_secret(instance_secret, "the-new-secret", previous=f"unrelated, {old}")
    done = CliRunner().invoke(app, ["reencrypt-secrets"])
    assert done.exit_code == 0, done.output
    assert "1 stored secret(s) re-encrypted" in done.output
    after = _raw(db, channel_id)
    assert after != before
    assert after.startswith(f"v1:{keyring(PURPOSE).current.key_id}:")
    kit_db.get_database().dispose()


def _raw(db: Database, channel_id: int) -> str:
    with db.transaction(write=False) as session:
        return str(
            session.execute(text("SELECT secrets FROM channels WHERE id = :id"), {"id": channel_id}).scalar_one()
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'secrets.db'}"
        return
    name = f"tertulia_test_{worker_name()}_secrets"
    yield fresh_postgres_database(name)
    drop_postgres_database(name)


def test_the_migration_encrypts_existing_rows_and_downgrades(empty_database_url: str) -> None:
    upgrade(empty_database_url, "0090_agents_see_unassigned")
    database = Database(empty_database_url)
    try:
        with database.transaction() as session:
            session.execute(
                text(
                    "INSERT INTO workspaces (id, name, name_key, timezone, default_language, created_at, updated_at) "
                    "VALUES (1, 'A', 'a', 'UTC', 'en', '2026-01-01', '2026-01-01')"
                )
            )
            session.execute(
                text(
                    "INSERT INTO channels (id, workspace_id, type, name, key, active, config, secrets, created_at,"
                    " updated_at) VALUES (7, 1, 'webchat', 'Chat', 'k7', true, '{}', :secrets, '2026-01-01',"
                    " '2026-01-01')"
                ),
                {"secrets": json.dumps({"identity_secret": PLAINTEXT})},
            )
        upgrade(empty_database_url, "0110_channel_secrets")
        with database.transaction(write=False) as session:
            raw = session.execute(text("SELECT secrets FROM channels WHERE id = 7")).scalar_one()
            assert PLAINTEXT not in raw
            assert decrypt_json(PURPOSE, raw) == {"identity_secret": PLAINTEXT}
            # Only the column of this revision: later migrations add columns the model has.
            loaded = session.get(Channel, 7, options=[load_only(Channel.secrets)])
            assert loaded is not None
            assert loaded.secrets == {"identity_secret": PLAINTEXT}
        command.downgrade(alembic_config(empty_database_url), "0090_agents_see_unassigned")
        with database.transaction(write=False) as session:
            raw = session.execute(text("SELECT secrets FROM channels WHERE id = 7")).scalar_one()
            assert (json.loads(raw) if isinstance(raw, str) else raw) == {"identity_secret": PLAINTEXT}
    finally:
        database.dispose()
