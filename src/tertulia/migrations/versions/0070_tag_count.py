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
POSTGRES_FUNCTION = """
CREATE FUNCTION contact_tags_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE contacts SET tag_count = tag_count - 1 WHERE id = OLD.contact_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE contacts SET tag_count = tag_count + 1 WHERE id = NEW.contact_id;
    END IF;
    RETURN NULL;
END
$$"""
POSTGRES_TRIGGER = """
CREATE TRIGGER contact_tags_count AFTER INSERT OR DELETE OR UPDATE OF contact_id ON contact_tags
FOR EACH ROW EXECUTE FUNCTION contact_tags_count()"""


def create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        for statement in SQLITE_TRIGGERS:
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
        op.execute("DROP TRIGGER IF EXISTS contact_tags_count ON contact_tags")
        op.execute("DROP FUNCTION IF EXISTS contact_tags_count()")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS contact_tags_count_{name}")
    op.drop_index("ix_contacts_workspace_id_tag_count", table_name="contacts")
    with op.batch_alter_table("contacts") as batch_op:
        batch_op.drop_column("tag_count")
