"""channels.secrets: encrypted at rest (JSON -> TEXT holding `v1:<key id>:<Fernet token>`)

The column becomes TEXT, then every existing row is encrypted in place with the key the app uses
(kit/crypto.py: HKDF of the instance secret, TERTULIA_SECRET_KEY or data/secret.key), so this must
run with the installation's own secret. Downgrading decrypts back to JSON with the same key.
On SQLite the type change rebuilds the table (batch mode, foreign keys off during migrations).

Revision ID: 0110_channel_secrets
Revises: 0100_event_log
Create Date: 2026-11-26
"""

import json
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from tertulia.kit.crypto import decrypt_json, encrypt_json

revision: str = "0110_channel_secrets"
down_revision: str | None = "0100_event_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PURPOSE = "channels.secrets"
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
channels = sa.table("channels", sa.column("id", sa.BigInteger()), sa.column("secrets", sa.Text()))


def _rewrite(convert: Callable[[str], str]) -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(channels.c.id, channels.c.secrets)).all()
    for row_id, stored in rows:
        if stored is None:
            continue
        connection.execute(sa.update(channels).where(channels.c.id == row_id).values(secrets=convert(stored)))


def upgrade() -> None:
    with op.batch_alter_table("channels") as batch:
        batch.alter_column(
            "secrets",
            existing_type=JSON_TYPE,
            type_=sa.Text(),
            existing_nullable=False,
            postgresql_using="secrets::text",
        )
    _rewrite(lambda stored: encrypt_json(PURPOSE, json.loads(stored)))


def downgrade() -> None:
    _rewrite(lambda stored: json.dumps(decrypt_json(PURPOSE, stored)))
    with op.batch_alter_table("channels") as batch:
        batch.alter_column(
            "secrets",
            existing_type=sa.Text(),
            type_=JSON_TYPE,
            existing_nullable=False,
            postgresql_using="secrets::jsonb",
        )
