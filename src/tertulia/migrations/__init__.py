"""Alembic history. One linear history upgrades SQLite and PostgreSQL from empty."""

from pathlib import Path

from alembic import command
from alembic.config import Config

SCRIPT_LOCATION = Path(__file__).parent


# The job queue may share the app's PostgreSQL database (kit/queue_postgres.py); its tables are
# created by the queue itself, so autogenerate must not offer to drop them.
QUEUE_TABLE_SUFFIXES = ("_queue_task", "_queue_schedule", "_queue_kv", "_queue_counter")


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:  # noqa: ARG001 (alembic's hook signature)
    queue_table = type_ == "table" and reflected and compare_to is None and (name or "").endswith(QUEUE_TABLE_SUFFIXES)
    return not queue_table


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(database_url), revision)
