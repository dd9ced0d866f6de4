"""A fresh, migrated database for a benchmark: a new SQLite file under data/bench/NAME/, or a
PostgreSQL database `tertulia_bench_NAME` dropped and created again through the admin URL
(TERTULIA_BENCH_POSTGRES_ADMIN)."""

import os
from pathlib import Path

import psycopg

from tertulia.migrations import upgrade

POSTGRES_ADMIN = os.environ.get("TERTULIA_BENCH_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
DATA = Path(__file__).resolve().parent.parent / "data" / "bench"


def fresh_database_url(kind: str, name: str) -> str:
    """The URL of an empty database at the newest schema; `kind` is "sqlite" or "postgresql"."""
    if kind == "sqlite":
        folder = DATA / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        database = f"tertulia_bench_{name}"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
        base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        url = f"{base}/{database}"
    upgrade(url)
    return url
