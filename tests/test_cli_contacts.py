"""`tertulia contacts import/export` end to end through typer's CliRunner, against the test database
(SQLite and PostgreSQL), configured through TERTULIA_DATABASE_URL as a user would."""

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from tertulia.cli import app
from tertulia.contacts.import_models import ImportJob
from tertulia.contacts.models import Contact
from tertulia.kit import db as kit_db
from tertulia.kit import settings as kit_settings
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.reports.support import report
from tests.web.helpers import sign_in_as

CSV = (
    "Nombre;Correo;Teléfono;Etiquetas\n"
    "José;jose@example.com;55 1234 5678;vip\n"
    "[bold]Mala[/;no-es-correo;12;\n"
    "Emma;emma@example.com;;lead|vip\n"
)


@pytest.fixture
def cli_db(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.setenv("TERTULIA_DATABASE_URL", db.url)
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()
    yield db
    kit_db.get_database().dispose()
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()


def emails(db: Database, tenant: Tenant) -> list[str | None]:
    with db.transaction(write=False) as session:
        return list(
            session.scalars(
                select(Contact.email).where(Contact.workspace_id == tenant.workspace_id).order_by(Contact.id)
            )
        )


def jobs(db: Database, tenant: Tenant) -> list[tuple[str, str, int, int, int, int | None]]:
    with db.transaction(write=False) as session:
        found = session.scalars(
            select(ImportJob).where(ImportJob.workspace_id == tenant.workspace_id).order_by(ImportJob.id)
        )
        return [
            (j.status.value, j.filename, j.created_count, j.updated_count, j.rejected_count, j.user_id) for j in found
        ]


def test_import_dry_run_then_real_run_with_rejected_rows_file(
    cli_db: Database, client: TestClient, tenant: Tenant, tmp_path: Path
) -> None:
    source = tmp_path / "contactos.csv"
    source.write_bytes(CSV.encode("cp1252"))
    runner = CliRunner()
    dry = runner.invoke(app, ["contacts", "import", str(source), "--workspace", tenant.name, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Dry run" in dry.output
    assert "would be created: 2" in dry.output
    assert emails(cli_db, tenant) == []
    assert jobs(cli_db, tenant) == []  # a dry run leaves no record

    rejected = tmp_path / "rechazados.csv"
    real = runner.invoke(
        app,
        ["contacts", "import", str(source), "--workspace", tenant.name, "--rejected-out", str(rejected)],
    )
    assert real.exit_code == 0, real.output
    assert "created: 2" in real.output
    assert "rejected: 1" in real.output
    # The rejected row is printed with its reasons, as text: brackets are not terminal markup.
    assert "no-es-correo" in real.output
    assert "[bold]Mala[/" in real.output
    assert emails(cli_db, tenant) == ["jose@example.com", "emma@example.com"]
    rows = list(csv.reader(io.StringIO(rejected.read_text(encoding="utf-8"))))
    assert rows[0] == ["Nombre", "Correo", "Teléfono", "Etiquetas", "error"]
    assert rows[1][:2] == ["[bold]Mala[/", "no-es-correo"]
    assert rows[1][4].startswith("line 3: ")
    # Recorded as an import, so it shows in the history and the contacts report counts it.
    assert jobs(cli_db, tenant) == [("done", "contactos.csv", 2, 0, 1, None)]
    body = report(client, tenant, "contacts", range="today")
    added = {row[0]: row[1:] for row in body["tables"]["added_by_source"]["rows"]}
    assert added["import"] == [2]
    sign_in_as(client, cli_db, tenant.owner_id, "owner-password")
    history = client.get("/contacts/import")
    assert history.status_code == 200
    assert "contactos.csv" in history.text
    with cli_db.transaction(write=False) as session:
        job_id = session.scalars(select(ImportJob.id).where(ImportJob.workspace_id == tenant.workspace_id)).one()
    shown = client.get(f"/contacts/import/{job_id}")  # no stored file: the finished job's figures
    assert shown.status_code == 200
    assert "contactos.csv" in shown.text

    update = tmp_path / "update.csv"
    update.write_text("Correo,Apodo\njose@example.com,Pepe\n", encoding="utf-8")
    updated = runner.invoke(
        app,
        [
            "contacts",
            "import",
            str(update),
            "--workspace",
            tenant.name,
            "--update-existing",
            "--mapping",
            "Apodo=first_name",
        ],
    )
    assert updated.exit_code == 0, updated.output
    assert "updated: 1" in updated.output
    with cli_db.transaction(write=False) as session:
        names = session.scalars(select(Contact.first_name).where(Contact.email == "jose@example.com")).all()
    assert names == ["Pepe"]
    assert jobs(cli_db, tenant)[-1] == ("done", "update.csv", 0, 1, 0, None)


def test_import_fails_when_the_file_or_mapping_is_unusable(cli_db: Database, tenant: Tenant, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["contacts", "import", str(tmp_path / "nope.csv"), "--workspace", tenant.name])
    assert missing.exit_code == 1
    assert "cannot be read" in missing.output
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert runner.invoke(app, ["contacts", "import", str(empty), "--workspace", tenant.name]).exit_code == 1
    good = tmp_path / "good.csv"
    good.write_text(CSV, encoding="utf-8")
    bad_mapping = runner.invoke(
        app, ["contacts", "import", str(good), "--workspace", tenant.name, "--mapping", "Nombre=nickname"]
    )
    assert bad_mapping.exit_code == 1
    assert "nickname" in bad_mapping.output
    no_workspace = runner.invoke(app, ["contacts", "import", str(good), "--workspace", "Nope"])
    assert no_workspace.exit_code == 1
    assert emails(cli_db, tenant) == []


def test_export_to_stdout_and_to_a_file(cli_db: Database, tenant: Tenant, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(CSV, encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["contacts", "import", str(source), "--workspace", tenant.name]).exit_code == 0
    out = runner.invoke(app, ["contacts", "export", "--workspace", tenant.name, "--fields", "first_name,phone,tags"])
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == ["first_name,phone,tags", "José,+525512345678,vip", 'Emma,,"lead, vip"']
    target = tmp_path / "out.csv"
    to_file = runner.invoke(app, ["contacts", "export", "--workspace", tenant.name, "--output", str(target), "--bom"])
    assert to_file.exit_code == 0, to_file.output
    text = target.read_bytes().decode("utf-8")
    assert text.startswith("\ufeffid,first_name,last_name,email,phone")
    assert text.count("\r\n") == 3
    bad = runner.invoke(app, ["contacts", "export", "--workspace", tenant.name, "--fields", "nickname"])
    assert bad.exit_code == 1
