"""Import 100,000 contacts from CSV into a fresh SQLite file and a fresh PostgreSQL database.

`python -m bench import` (`BENCH_IMPORT_ROWS` changes the size; `TERTULIA_BENCH_BACKEND=sqlite` or
`postgresql` runs one database only). The CSV looks like a real export:
Spanish and English names, emails, phones from five countries written the way people type them,
three custom fields (list, date, number) and a tags column. Committed batch by batch, as the CLI does.
"""

import csv
import os
import random
import tempfile
import time
import unicodedata
from pathlib import Path

import psycopg

from tertulia.contacts.exporter import export_contacts
from tertulia.contacts.importer import ImportOptions, import_contacts
from tertulia.contacts.models import FieldType
from tertulia.contacts.service import do_create_custom_field
from tertulia.demo import FIRST_NAMES_EN, FIRST_NAMES_ES, LAST_NAMES_EN, LAST_NAMES_ES, PLANS, TAGS
from tertulia.kit.db import Database
from tertulia.migrations import upgrade
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.permissions import Actor

ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "100000"))
POSTGRES_ADMIN = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
POSTGRES_DB = "tertulia_bench_import"
BACKENDS = os.environ.get("TERTULIA_BENCH_BACKEND", "sqlite,postgresql").split(",")
HEADERS = [
    "Nombre",
    "Apellidos",
    "Correo",
    "Teléfono",
    "País",
    "Idioma",
    "Plan",
    "Fecha de alta",
    "Puntos",
    "Etiquetas",
]


def _ascii(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()


def _phone(i: int, rng: random.Random) -> tuple[str, str]:
    """A unique, valid number per row, written in a local or international style."""
    a, b = divmod(i, 10_000)
    match i % 5:
        case 0:
            return "MX", f"+52 55 {1000 + a:04d} {b:04d}"
        case 1:
            digits = f"{i:08d}"
            return "ES", f"+34 6{digits[:2]} {digits[2:5]} {digits[5:]}"
        case 2:
            return "CO", f"+57 310 {a:03d} {b:04d}"
        case 3:
            return "AR", f"+54 9 11 {2000 + a:04d} {b:04d}"
        case _:
            return "US", f"+1 (415) {200 + a:03d}-{b:04d}" if rng.random() < 0.5 else f"+1 415 {200 + a:03d} {b:04d}"


def write_csv(path: Path, rows: int) -> None:
    rng = random.Random(2026)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(HEADERS)
        for i in range(rows):
            spanish = i % 3 != 2
            first = rng.choice(FIRST_NAMES_ES if spanish else FIRST_NAMES_EN)
            last = rng.choice(LAST_NAMES_ES if spanish else LAST_NAMES_EN)
            if spanish and rng.random() < 0.5:
                last += " " + rng.choice(LAST_NAMES_ES)
            country, phone = _phone(i, rng)
            writer.writerow(
                [
                    first,
                    last,
                    f"{_ascii(first)}.{_ascii(last).replace(' ', '.')}.{i}@example.com",
                    phone,
                    country,
                    "es" if spanish else "en",
                    rng.choice(PLANS),
                    f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2015, 2026)}",
                    f"{rng.randint(0, 5000)},{rng.randint(0, 9)}" if spanish else str(rng.randint(0, 5000)),
                    ", ".join(rng.sample(TAGS, rng.randint(0, 3))),
                ]
            )


def run(url: str, csv_path: Path) -> tuple[float, int, float, int]:
    """Import seconds, contacts created, then seconds and bytes to export them all back."""
    upgrade(url)
    database = Database(url)
    try:
        with database.transaction() as session:
            created = do_create_workspace_with_owner(
                session, "Bench", "owner@bench.example.com", "bench-password", default_country="MX"
            )
            actor = Actor.system(created.workspace.id, kind="import")
            do_create_custom_field(session, actor, "plan", "Plan", FieldType.LIST, PLANS)
            do_create_custom_field(session, actor, "signup", "Fecha de alta", FieldType.DATE)
            do_create_custom_field(session, actor, "points", "Puntos", FieldType.NUMBER)
        session = database.session()
        try:
            started = time.perf_counter()
            report = import_contacts(
                session, actor, csv_path, ImportOptions(), on_batch_written=lambda _report: session.commit()
            )
            session.commit()
            elapsed = time.perf_counter() - started
        finally:
            session.close()
        if report.rejected:
            first = report.rejected[0]
            raise SystemExit(f"{len(report.rejected)} rows rejected, e.g. line {first.line}: {first.error}")
        with database.transaction(write=False) as session:
            started = time.perf_counter()
            size = sum(len(chunk) for chunk in export_contacts(session, actor))
            exported = time.perf_counter() - started
        return elapsed, report.created, exported, size
    finally:
        database.dispose()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tertulia-bench-import-") as tmp:
        csv_path = Path(tmp) / "contacts.csv"
        write_csv(csv_path, ROWS)
        size = csv_path.stat().st_size / 1e6
        print(f"CSV: {ROWS} rows, {size:.1f} MB, ';'-separated, 3 custom fields and tags")
        sqlite_path = Path(tmp) / "bench.db"
        targets = [("SQLite", f"sqlite:///{sqlite_path}")] if "sqlite" in BACKENDS else []
        try:
            if "postgresql" not in BACKENDS:
                raise psycopg.OperationalError("not asked for (TERTULIA_BENCH_BACKEND)")
            with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{POSTGRES_DB}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{POSTGRES_DB}"')
            base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
            targets.append(("PostgreSQL", f"{base}/{POSTGRES_DB}"))
        except psycopg.OperationalError as exc:
            print(f"PostgreSQL skipped: {exc}")
        for name, url in targets:
            seconds, created, exported, size = run(url, csv_path)
            rate = created / seconds
            print(f"{name:>10}: import {created} contacts in {seconds:.1f} s ({rate:,.0f} rows/s)", flush=True)
            print(f"{name:>10}: export them (all fields and tags, {size / 1e6:.1f} MB) in {exported:.1f} s", flush=True)


if __name__ == "__main__":
    main()
