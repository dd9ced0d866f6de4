from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tertulia.cli import app
from tertulia.kit import db as kit_db
from tertulia.kit import settings as kit_settings
from tertulia.users.models import ApiToken
from tertulia.users.service import find_active_api_token


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[kit_db.Database]:
    """The CLI on its own SQLite file, configured through the environment as a user would."""
    monkeypatch.setenv("TERTULIA_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()
    yield kit_db.get_database()
    kit_db.get_database().dispose()
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()


def test_migrate_workspace_and_token(cli_database: kit_db.Database) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    created = runner.invoke(
        app, ["workspace", "create", "Acme", "--owner-email", "o@example.com", "--owner-password", "long-password"]
    )
    assert created.exit_code == 0, created.output
    duplicate = runner.invoke(
        app, ["workspace", "create", "ACME", "--owner-email", "o@example.com", "--owner-password", "long-password"]
    )
    assert duplicate.exit_code == 1
    assert "already exists" in duplicate.output
    token = runner.invoke(app, ["token", "create", "--workspace", "acme", "--name", "zapier"])
    assert token.exit_code == 0
    secret = token.stdout.strip()
    assert secret.startswith("tt_")
    assert "\n" not in secret
    with cli_database.transaction() as session:
        found = find_active_api_token(session, secret)
        assert found is not None
        assert found.name == "zapier"
        assert session.scalars(select(ApiToken.token_hash)).all() != [secret]
    missing = runner.invoke(app, ["token", "create", "--workspace", "nope"])
    assert missing.exit_code == 1


def test_bad_owner_password_is_refused(cli_database: kit_db.Database) -> None:
    runner = CliRunner()
    runner.invoke(app, ["migrate"])
    short = runner.invoke(app, ["workspace", "create", "A", "--owner-email", "o@example.com", "--owner-password", "x"])
    assert short.exit_code == 1
    assert "password" in short.output
