"""The Alembic history and the models describe the same schema, on both databases."""

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from tertulia.kit.db import Database
from tertulia.kit.queue import make_huey
from tertulia.migrations import alembic_config, include_object, upgrade
from tertulia.models import Base


def test_migrations_match_models(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_a_queue_sharing_the_database_is_not_schema_drift(db: Database) -> None:
    """The PostgreSQL queue may live in the app's database; autogenerate must leave its tables be."""
    if db.dialect != "postgresql":
        return
    huey = make_huey(db.engine.url.render_as_string(hide_password=False), "drift_check")
    huey.storage.initialize_schema()
    try:
        with db.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_object": include_object}
            )
            assert compare_metadata(context, Base.metadata) == []
            unfiltered = MigrationContext.configure(connection, opts={"compare_type": True})
            dropped = {d[1].name for d in compare_metadata(unfiltered, Base.metadata) if d[0] == "remove_table"}
        assert dropped == {
            "drift_check_queue_task",
            "drift_check_queue_schedule",
            "drift_check_queue_kv",
            "drift_check_queue_counter",
        }
    finally:
        with db.engine.begin() as connection:
            for table in ("task", "schedule", "kv", "counter"):
                connection.execute(text(f"DROP TABLE IF EXISTS drift_check_queue_{table}"))


def test_history_has_a_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, script.get_heads()


def test_upgrading_sqlite_keeps_child_rows_of_rebuilt_tables(tmp_path: Path) -> None:
    """SQLite batch migrations rebuild a table and drop the old one; with foreign keys enforced that
    DROP would cascade and silently delete every tag link, identity and activity row."""
    url = f"sqlite:///{tmp_path / 'upgrade.db'}"
    upgrade(url, "0001")
    database = Database(url)
    with database.transaction() as session:
        session.execute(
            text(
                "INSERT INTO workspaces (id, name, name_key, timezone, default_language, created_at, updated_at) "
                "VALUES (1, 'A', 'a', 'UTC', 'en', '2026-01-01', '2026-01-01')"
            )
        )
        session.execute(
            text(
                "INSERT INTO contacts (id, workspace_id, custom, created_at, updated_at) "
                "VALUES (1, 1, '{}', '2026-01-01', '2026-01-01')"
            )
        )
        session.execute(
            text(
                "INSERT INTO tags (id, workspace_id, name, name_key, created_at) "
                "VALUES (1, 1, 'vip', 'vip', '2026-01-01')"
            )
        )
        session.execute(text("INSERT INTO contact_tags (contact_id, tag_id, created_at) VALUES (1, 1, '2026-01-01')"))
        session.execute(
            text(
                "INSERT INTO contact_activities (workspace_id, contact_id, actor_kind, action, created_at) "
                "VALUES (1, 1, 'system', 'created', '2026-01-01')"
            )
        )
    upgrade(url)
    with database.transaction(write=False) as session:
        assert session.execute(text("SELECT count(*) FROM contact_tags")).scalar() == 1
        assert session.execute(text("SELECT count(*) FROM contact_activities")).scalar() == 1
        assert session.execute(text("SELECT tag_count FROM contacts WHERE id = 1")).scalar() == 1
    database.dispose()
