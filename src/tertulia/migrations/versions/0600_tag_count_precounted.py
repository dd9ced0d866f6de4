"""contact_tags: a bulk insert can say its contacts' tag_count is already written (PostgreSQL)

The CSV import writes new contacts with COPY and their tag links with a second COPY. The statement
trigger of 0070 then updated every new contact just inserted to add its links; tag_count is
indexed, so none of those updates was HOT: each wrote the row again into every index of contacts
and left a dead tuple (75,000 of 100,000 rows in the import benchmark, its largest single cost).
The importer now writes tag_count in the contacts COPY and, for the COPY of those contacts' links
only, sets the transaction-local setting `tertulia.tag_links_precounted` to 'on'; the insert
trigger does nothing while it is on. Every other writer leaves it unset, so the trigger counts as
before. SQLite's row triggers are unchanged (its importer does not precount).

Revision ID: 0600_tag_count_precounted
Revises: 0580_assistant_reservations
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0600_tag_count_precounted"
down_revision: str | None = "0580_assistant_reservations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNT_NEW_LINKS = """
        UPDATE contacts SET tag_count = contacts.tag_count + added.n
        FROM (SELECT contact_id, count(*) AS n FROM new_links GROUP BY contact_id) AS added
        WHERE contacts.id = added.contact_id;"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """CREATE OR REPLACE FUNCTION contact_tags_count_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF current_setting('tertulia.tag_links_precounted', true) = 'on' THEN
            RETURN NULL;
        END IF;"""
        + _COUNT_NEW_LINKS
        + """
        RETURN NULL;
    END $$"""
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """CREATE OR REPLACE FUNCTION contact_tags_count_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN"""
        + _COUNT_NEW_LINKS
        + """
        RETURN NULL;
    END $$"""
    )
