"""contacts.tag_count kept by triggers on contact_tags

"Has any tag" over a million contacts is a scan of contact_tags (300-800 ms measured); a count on
the contact row, indexed with the workspace, answers it from the index. Triggers, not application
code, keep the count, so every path that writes contact_tags (API, import, merge, deleting a tag or a
contact through ON DELETE CASCADE) stays correct.

Note for later migrations: on SQLite, a batch migration that recreates contact_tags drops these
triggers; recreate them afterwards with create_triggers().

Revision ID: 0070_tag_count
Revises: 0060_import_jobs
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0070_tag_count"
down_revision: str | None = "0060_import_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_TRIGGERS = (
    """CREATE TRIGGER contact_tags_count_insert AFTER INSERT ON contact_tags BEGIN
        UPDATE contacts SET tag_count = tag_count + 1 WHERE id = NEW.contact_id;
    END""",
    """CREATE TRIGGER contact_tags_count_delete AFTER DELETE ON contact_tags BEGIN
        UPDATE contacts SET tag_count = tag_count - 1 WHERE id = OLD.contact_id;
    END""",
    """CREATE TRIGGER contact_tags_count_update AFTER UPDATE OF contact_id ON contact_tags BEGIN
        UPDATE contacts SET tag_count = tag_count - 1 WHERE id = OLD.contact_id;
        UPDATE contacts SET tag_count = tag_count + 1 WHERE id = NEW.contact_id;
    END""",
)
# PostgreSQL: statement-level triggers with transition tables, so a bulk insert of tag links (CSV
# import) updates each contact once per statement instead of once per link.
POSTGRES_STATEMENTS = (
    """CREATE FUNCTION contact_tags_count_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE contacts SET tag_count = contacts.tag_count + added.n
        FROM (SELECT contact_id, count(*) AS n FROM new_links GROUP BY contact_id) AS added
        WHERE contacts.id = added.contact_id;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION contact_tags_count_remove() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE contacts SET tag_count = contacts.tag_count - removed.n
        FROM (SELECT contact_id, count(*) AS n FROM old_links GROUP BY contact_id) AS removed
        WHERE contacts.id = removed.contact_id;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION contact_tags_count_move() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE contacts SET tag_count = contacts.tag_count - removed.n
        FROM (SELECT contact_id, count(*) AS n FROM old_links GROUP BY contact_id) AS removed
        WHERE contacts.id = removed.contact_id;
        UPDATE contacts SET tag_count = contacts.tag_count + added.n
        FROM (SELECT contact_id, count(*) AS n FROM new_links GROUP BY contact_id) AS added
        WHERE contacts.id = added.contact_id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER contact_tags_count_insert AFTER INSERT ON contact_tags
    REFERENCING NEW TABLE AS new_links FOR EACH STATEMENT EXECUTE FUNCTION contact_tags_count_add()""",
    """CREATE TRIGGER contact_tags_count_delete AFTER DELETE ON contact_tags
    REFERENCING OLD TABLE AS old_links FOR EACH STATEMENT EXECUTE FUNCTION contact_tags_count_remove()""",
    """CREATE TRIGGER contact_tags_count_update AFTER UPDATE ON contact_tags
    REFERENCING OLD TABLE AS old_links NEW TABLE AS new_links
    FOR EACH STATEMENT EXECUTE FUNCTION contact_tags_count_move()""",
)


def create_triggers() -> None:
    statements = POSTGRES_STATEMENTS if op.get_bind().dialect.name == "postgresql" else SQLITE_TRIGGERS
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch_op:
        batch_op.add_column(sa.Column("tag_count", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.execute(
        "UPDATE contacts SET tag_count = "
        "(SELECT count(*) FROM contact_tags WHERE contact_tags.contact_id = contacts.id)"
    )
    op.create_index("ix_contacts_workspace_id_tag_count", "contacts", ["workspace_id", "tag_count"])
    create_triggers()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS contact_tags_count_{name} ON contact_tags")
        for function in ("add", "remove", "move"):
            op.execute(f"DROP FUNCTION IF EXISTS contact_tags_count_{function}()")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS contact_tags_count_{name}")
    op.drop_index("ix_contacts_workspace_id_tag_count", table_name="contacts")
    with op.batch_alter_table("contacts") as batch_op:
        batch_op.drop_column("tag_count")
