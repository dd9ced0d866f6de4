"""All SQL for segments. Every query is scoped to a workspace."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from tertulia.contacts.models import Contact, ContactTag, CustomField, FieldType, Tag
from tertulia.segments.models import Segment
from tertulia.workspaces.models import Workspace


def segments(session: Session, workspace_id: int) -> list[Segment]:
    return list(session.scalars(select(Segment).where(Segment.workspace_id == workspace_id).order_by(Segment.name_key)))


def segment_by_id(session: Session, workspace_id: int, segment_id: int) -> Segment | None:
    return session.scalar(select(Segment).where(Segment.workspace_id == workspace_id, Segment.id == segment_id))


def segment_by_name_key(session: Session, workspace_id: int, name_key: str) -> Segment | None:
    return session.scalar(select(Segment).where(Segment.workspace_id == workspace_id, Segment.name_key == name_key))


def count_contacts(session: Session, clause: ColumnElement[bool]) -> int:
    """`clause` comes from compiler.compile_filter, which carries the workspace scope."""
    return int(session.scalar(select(func.count()).select_from(Contact).where(clause)) or 0)


def contact_tag_keys(session: Session, contact_id: int) -> list[str]:
    return list(
        session.scalars(
            select(Tag.name_key)
            .join(ContactTag, ContactTag.tag_id == Tag.id)
            .where(ContactTag.contact_id == contact_id)
        )
    )


def store_counts(session: Session, workspace_id: int, counts: Sequence[tuple[int, int, object]]) -> None:
    for segment_id, count, computed_at in counts:
        session.execute(
            update(Segment)
            .where(Segment.workspace_id == workspace_id, Segment.id == segment_id)
            .values(contact_count=count, count_computed_at=computed_at)
            .execution_options(synchronize_session=False)
        )


def segment_versions(session: Session, workspace_id: int) -> list[tuple[int, str, datetime]]:
    rows = session.execute(
        select(Segment.id, Segment.name, Segment.updated_at)
        .where(Segment.workspace_id == workspace_id)
        .order_by(Segment.name_key)
    )
    return [(row[0], row[1], row[2]) for row in rows]


def segment_filters(session: Session, workspace_id: int) -> dict[int, dict[str, Any]]:
    rows = session.execute(select(Segment.id, Segment.filter).where(Segment.workspace_id == workspace_id))
    return {row[0]: row[1] for row in rows}


def workspace_timezone(session: Session, workspace_id: int) -> str | None:
    return session.scalar(select(Workspace.timezone).where(Workspace.id == workspace_id))


def custom_field_types(session: Session, workspace_id: int) -> dict[str, FieldType]:
    rows = session.execute(select(CustomField.key, CustomField.type).where(CustomField.workspace_id == workspace_id))
    return {row[0]: row[1] for row in rows}
