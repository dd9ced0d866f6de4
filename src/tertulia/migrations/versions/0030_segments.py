"""segments: saved segments, contacts.custom_folded, indexes for segment filters

Revision ID: 0030_segments
Revises: 0001
Create Date: 2026-11-25 04:00:00
"""

import json
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tertulia.kit.models

revision: str = "0030_segments"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Frozen copies: a migration must not change meaning when application code changes later.
DEFAULT_SEGMENTS = (
    (
        "Contacts created <7 days ago",
        {"match": "all", "groups": [{"match": "all", "conditions": [
            {"category": "contact_field", "field": "created_at", "operator": "less_than_ago",
             "value": {"amount": 7, "unit": "days"}}]}]},
    ),
    (
        "Contacts inactive >30 days",
        {"match": "all", "groups": [{"match": "all", "conditions": [
            {"category": "last_incoming_message", "operator": "more_than_ago",
             "value": {"amount": 30, "unit": "days"}}]}]},
    ),
    (
        "Contacts with tags",
        {"match": "all", "groups": [{"match": "all", "conditions": [{"category": "tag", "operator": "exists"}]}]},
    ),
    (
        "Country known",
        {"match": "all", "groups": [{"match": "all", "conditions": [
            {"category": "contact_field", "field": "country", "operator": "exists"}]}]},
    ),
    (
        "Language known",
        {"match": "all", "groups": [{"match": "all", "conditions": [
            {"category": "contact_field", "field": "language", "operator": "exists"}]}]},
    ),
)


def _fold(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def upgrade() -> None:
    op.add_column("contacts", sa.Column("custom_folded", JSON_TYPE, server_default=sa.text("'{}'"), nullable=False))
    bind = op.get_bind()
    contacts = sa.table("contacts", sa.column("id", ID_TYPE), sa.column("custom", JSON_TYPE),
                        sa.column("custom_folded", JSON_TYPE))
    last_id = 0
    while True:
        rows = bind.execute(
            sa.select(contacts.c.id, contacts.c.custom).where(contacts.c.id > last_id).order_by(contacts.c.id).limit(5000)
        ).all()
        if not rows:
            break
        for contact_id, custom in rows:
            values = json.loads(custom) if isinstance(custom, str) else (custom or {})
            folded = {k: _fold(v) for k, v in values.items() if isinstance(v, str)}
            if folded:
                bind.execute(sa.update(contacts).where(contacts.c.id == contact_id).values(custom_folded=folded))
        last_id = rows[-1][0]

    op.create_index("ix_contacts_workspace_id_created_at", "contacts", ["workspace_id", "created_at"])
    op.create_index("ix_contacts_workspace_id_updated_at", "contacts", ["workspace_id", "updated_at"])
    op.create_index("ix_contacts_workspace_id_last_incoming_at", "contacts", ["workspace_id", "last_incoming_at"])
    op.create_index("ix_contacts_workspace_id_last_outgoing_at", "contacts", ["workspace_id", "last_outgoing_at"])
    op.create_index("ix_contacts_workspace_id_country", "contacts", ["workspace_id", "country"])
    op.create_index("ix_contacts_workspace_id_language", "contacts", ["workspace_id", "language"])
    op.create_index("ix_contact_tags_tag_id_contact_id", "contact_tags", ["tag_id", "contact_id"])

    op.create_table(
        "segments",
        sa.Column("workspace_id", ID_TYPE, nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("name_key", sa.String(length=120), nullable=False),
        sa.Column("filter", JSON_TYPE, nullable=False),
        sa.Column("contact_count", sa.Integer(), nullable=True),
        sa.Column("count_computed_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by_user_id", ID_TYPE, nullable=True),
        sa.Column("id", ID_TYPE, nullable=False),
        sa.Column("created_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tertulia.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by_user_id"], ["users.id"],
                                name=op.f("fk_segments_created_by_user_id_users"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"],
                                name=op.f("fk_segments_workspace_id_workspaces"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint("workspace_id", "name_key", name=op.f("uq_segments_workspace_id_name_key")),
    )

    # Workspaces that exist before this revision get the default segments new ones are created with.
    workspaces = sa.table("workspaces", sa.column("id", ID_TYPE))
    segments = sa.table(
        "segments",
        sa.column("workspace_id", ID_TYPE),
        sa.column("name", sa.String()),
        sa.column("name_key", sa.String()),
        sa.column("filter", JSON_TYPE),
        sa.column("created_at", tertulia.kit.models.UTCDateTime(timezone=True)),
        sa.column("updated_at", tertulia.kit.models.UTCDateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    rows = [
        {"workspace_id": ws, "name": name, "name_key": name.casefold(), "filter": filter_,
         "created_at": now, "updated_at": now}
        for ws in bind.execute(sa.select(workspaces.c.id)).scalars()
        for name, filter_ in DEFAULT_SEGMENTS
    ]
    if rows:
        bind.execute(sa.insert(segments), rows)


def downgrade() -> None:
    op.drop_table("segments")
    op.drop_index("ix_contact_tags_tag_id_contact_id", table_name="contact_tags")
    for column in ("language", "country", "last_outgoing_at", "last_incoming_at", "updated_at", "created_at"):
        op.drop_index(f"ix_contacts_workspace_id_{column}", table_name="contacts")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("custom_folded")
