"""All SQL for conversations and messages. Every query is scoped to a workspace."""

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, bindparam, cast, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from tertulia.channels.protocol import STATUS_PREDECESSORS, DeliveryStatus
from tertulia.contacts.models import Contact
from tertulia.conversations.models import (
    ClosingCategory,
    Conversation,
    ConversationRead,
    ConversationStatus,
    Direction,
    Mention,
    Message,
    Snippet,
)
from tertulia.users.models import TeamMember


def conversation(
    session: Session, workspace_id: int, conversation_id: int, *, lock: bool = False
) -> Conversation | None:
    query = select(Conversation).where(Conversation.workspace_id == workspace_id, Conversation.id == conversation_id)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def open_conversation(
    session: Session, workspace_id: int, contact_id: int, *, lock: bool = False
) -> Conversation | None:
    query = select(Conversation).where(
        Conversation.workspace_id == workspace_id,
        Conversation.contact_id == contact_id,
        Conversation.status == ConversationStatus.OPEN,
    )
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def latest_conversation(session: Session, workspace_id: int, contact_id: int) -> Conversation | None:
    return session.scalar(
        select(Conversation)
        .where(Conversation.workspace_id == workspace_id, Conversation.contact_id == contact_id)
        .order_by(Conversation.id.desc())
        .limit(1)
    )


def insert_messages_unless_known(session: Session, rows: Sequence[dict[str, Any]]) -> list[Message | None]:
    """One INSERT ... ON CONFLICT (channel_id, provider_message_id) DO NOTHING RETURNING for all rows:
    the new Message for each row, in order, or None where that provider message is already stored.
    Rows without a provider id cannot conflict, but neither can they be told apart in what comes
    back, so each of those is inserted on its own."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    keyed = [row for row in rows if row.get("provider_message_id")]
    by_key = {
        (m.channel_id, m.provider_message_id): m for m in (_insert_messages(session, dialect, keyed) if keyed else [])
    }
    result: list[Message | None] = []
    for row in rows:
        if row.get("provider_message_id"):
            result.append(by_key.get((row["channel_id"], row["provider_message_id"])))
        else:
            result.append(_insert_messages(session, dialect, [row])[0])
    return result


def _insert_messages(session: Session, dialect: str, rows: Sequence[dict[str, Any]]) -> Sequence[Message]:
    """The inserted rows, in no particular order (none for a conflict)."""
    if dialect == "postgresql":
        inserted: Sequence[Message] = session.scalars(_UNNESTED_INSERT, _unnested_arrays(rows)).all()
        return inserted
    # One statement shape whatever the batch size, so it is compiled once and cached; SQLAlchemy's
    # "insertmanyvalues" sends the rows as multi-row VALUES.
    insert = sqlite.insert(Message).on_conflict_do_nothing(index_elements=["channel_id", "provider_message_id"])
    return session.scalars(insert.returning(Message), list(rows)).all()


_UNNEST_COLUMNS = (
    "workspace_id",
    "conversation_id",
    "contact_id",
    "channel_id",
    "direction",
    "sender_kind",
    "type",
    "text",
    "attachments",
    "payload",
    "provider_message_id",
    "created_at",
)
_JSON_COLUMNS = ("attachments", "payload")


def _unnested_insert() -> Executable:
    """INSERT ... SELECT FROM unnest(one array per column) ON CONFLICT DO NOTHING RETURNING, built
    once: the text is the same whatever the batch size, so psycopg converts it once and PostgreSQL
    runs it prepared (a multi-row VALUES of a 64-message batch has 768 parameters and a new text per
    size: converting it was a third of the inbound writer's time), and building it and its cache key
    anew for every batch cost half as much again as running it. Wrapped in `select(Message)
    .from_statement` so the rows come back as Messages in the session, as an ORM INSERT would
    give them."""
    table = Message.__table__
    arrays: list[ColumnElement[Any]] = []
    for name in _UNNEST_COLUMNS:
        if name in _JSON_COLUMNS:
            # JSON goes as text: an array of lists would be read as a multi-dimensional array.
            arrays.append(cast(bindparam(name, type_=postgresql.ARRAY(Text)), postgresql.ARRAY(postgresql.JSONB)))
        else:
            arrays.append(bindparam(name, type_=postgresql.ARRAY(table.c[name].type)))
    source = func.unnest(*arrays).table_valued(*_UNNEST_COLUMNS).render_derived()
    insert = (
        postgresql.insert(Message)
        .from_select(_UNNEST_COLUMNS, select(*(source.c[name] for name in _UNNEST_COLUMNS)))
        .on_conflict_do_nothing(index_elements=["channel_id", "provider_message_id"])
        .returning(Message)
    )
    return select(Message).from_statement(insert)


_UNNESTED_INSERT = _unnested_insert()


def _unnested_arrays(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    arrays: dict[str, list[Any]] = {}
    for name in _UNNEST_COLUMNS:
        values = [row.get(name) for row in rows]
        # None as JSON null, as the JSON type does.
        arrays[name] = [json.dumps(value) for value in values] if name in _JSON_COLUMNS else values
    return arrays


# Built once, their ids bound per call: the inbound writer asks both for every batch of messages,
# and building a statement and its cache key cost about half as much again as running it.
_MESSAGES_BY_PROVIDER_IDS = select(Message).where(
    tuple_(Message.channel_id, Message.provider_message_id).in_(bindparam("keys", expanding=True))
)
_OPEN_CONVERSATIONS = (
    select(Conversation)
    .where(
        Conversation.workspace_id == bindparam("workspace_id"),
        Conversation.contact_id.in_(bindparam("contact_ids", expanding=True)),
        Conversation.status == ConversationStatus.OPEN,
    )
    .order_by(Conversation.id)
)
_OPEN_CONVERSATIONS_LOCKED = _OPEN_CONVERSATIONS.with_for_update()


def messages_by_provider_ids(session: Session, keys: Sequence[tuple[int, str]]) -> list[Message]:
    if not keys:
        return []
    return list(session.scalars(_MESSAGES_BY_PROVIDER_IDS, {"keys": list(keys)}))


def open_conversations(
    session: Session, contacts: Iterable[tuple[int, int]], *, lock: bool = False
) -> dict[int, Conversation]:
    """The open conversation of each (contact id, workspace id), by contact id; locked in id order."""
    by_workspace: dict[int, list[int]] = {}
    for contact_id, workspace_id in contacts:
        by_workspace.setdefault(workspace_id, []).append(contact_id)
    query = _OPEN_CONVERSATIONS_LOCKED if lock else _OPEN_CONVERSATIONS
    found: dict[int, Conversation] = {}
    for workspace_id, contact_ids in by_workspace.items():
        rows = session.scalars(query, {"workspace_id": workspace_id, "contact_ids": contact_ids})
        found.update((c.contact_id, c) for c in rows)
    return found


def message_by_provider_id(session: Session, channel_id: int, provider_message_id: str) -> Message | None:
    return session.scalar(
        select(Message).where(Message.channel_id == channel_id, Message.provider_message_id == provider_message_id)
    )


def message(session: Session, workspace_id: int, message_id: int) -> Message | None:
    return session.scalar(select(Message).where(Message.workspace_id == workspace_id, Message.id == message_id))


def is_mentioned(session: Session, conversation_id: int, user_id: int) -> bool:
    found = session.scalar(
        select(Mention.id).where(Mention.user_id == user_id, Mention.conversation_id == conversation_id).limit(1)
    )
    return found is not None


def team_ids_of(session: Session, user_id: int) -> set[int]:
    return set(session.scalars(select(TeamMember.team_id).where(TeamMember.user_id == user_id)))


def visibility_clause(user_id: int | None, team_ids: Sequence[int], *, unassigned: bool) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = []
    if unassigned:
        clauses.append(and_(Conversation.assignee_id.is_(None), Conversation.team_id.is_(None)))
    if user_id is not None:
        clauses.append(Conversation.assignee_id == user_id)
    if team_ids:
        clauses.append(Conversation.team_id.in_(list(team_ids)))
    return or_(*clauses) if clauses else Conversation.id.is_(None)


def conversations_page(
    session: Session,
    workspace_id: int,
    *,
    status: ConversationStatus | None,
    visible: ColumnElement[bool] | None,
    assignee_id: int | None = None,
    unassigned: bool = False,
    team_id: int | None = None,
    contact_ids: Sequence[int] | None = None,
    contact_filter: ColumnElement[bool] | None = None,
    channel_id: int | None = None,
    changed_since: datetime | None = None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Conversation]:
    """Latest message first, keyset on (last_message_at, id); fetches limit+1. `changed_since`: a
    message came or the conversation itself changed (status, assignee, team) at or after it."""
    query = select(Conversation).where(Conversation.workspace_id == workspace_id)
    if status is not None:
        query = query.where(Conversation.status == status)
    if visible is not None:
        query = query.where(visible)
    if assignee_id is not None:
        query = query.where(Conversation.assignee_id == assignee_id)
    if unassigned:
        query = query.where(Conversation.assignee_id.is_(None))
    if team_id is not None:
        query = query.where(Conversation.team_id == team_id)
    if contact_ids is not None:
        query = query.where(Conversation.contact_id.in_(list(contact_ids)))
    if contact_filter is not None:
        matching = select(Contact.id).where(Contact.workspace_id == workspace_id, contact_filter)
        query = query.where(Conversation.contact_id.in_(matching))
    if channel_id is not None:
        query = query.where(Conversation.channel_id == channel_id)
    if changed_since is not None:
        query = query.where(
            or_(Conversation.last_message_at >= changed_since, Conversation.updated_at >= changed_since)
        )
    if after is not None:
        at, last_id = after
        query = query.where(
            or_(Conversation.last_message_at < at, and_(Conversation.last_message_at == at, Conversation.id < last_id))
        )
    query = query.order_by(Conversation.last_message_at.desc(), Conversation.id.desc()).limit(limit + 1)
    return list(session.scalars(query))


def unread_counts(session: Session, user_id: int, conversation_ids: Sequence[int]) -> dict[int, int]:
    if not conversation_ids:
        return {}
    marker = (
        select(ConversationRead.last_read_message_id)
        .where(ConversationRead.conversation_id == Message.conversation_id, ConversationRead.user_id == user_id)
        .correlate(Message)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Message.conversation_id, func.count())
        .where(
            Message.conversation_id.in_(list(conversation_ids)),
            Message.direction == Direction.INCOMING,
            Message.id > func.coalesce(marker, 0),
        )
        .group_by(Message.conversation_id)
    )
    return {conversation_id: int(count) for conversation_id, count in rows}


def messages_page(
    session: Session,
    conversation_ids: Sequence[int],
    *,
    before_id: int | None,
    limit: int,
    include_internal: bool = True,
    channel_id: int | None = None,
) -> list[Message]:
    """Newest first (the caller reverses for display); fetches limit+1."""
    query = select(Message).where(Message.conversation_id.in_(list(conversation_ids)))
    if before_id is not None:
        query = query.where(Message.id < before_id)
    if not include_internal:
        query = query.where(Message.direction.in_([Direction.INCOMING, Direction.OUTGOING]))
    if channel_id is not None:
        query = query.where(Message.channel_id == channel_id)
    return list(session.scalars(query.order_by(Message.id.desc()).limit(limit + 1)))


def contact_messages_page(
    session: Session,
    workspace_id: int,
    contact_id: int,
    *,
    before_id: int | None,
    limit: int,
    channel_id: int | None = None,
) -> list[Message]:
    """The customer-visible messages of a contact (on one channel, when given); newest first, limit+1."""
    query = select(Message).where(
        Message.workspace_id == workspace_id,
        Message.contact_id == contact_id,
        Message.direction.in_([Direction.INCOMING, Direction.OUTGOING]),
    )
    if channel_id is not None:
        query = query.where(Message.channel_id == channel_id)
    if before_id is not None:
        query = query.where(Message.id < before_id)
    return list(session.scalars(query.order_by(Message.id.desc()).limit(limit + 1)))


def advance_status(session: Session, message_id: int, status: DeliveryStatus, reason: str | None, at: datetime) -> bool:
    """Move a message's status forward atomically; a stale or backwards update changes nothing."""
    predecessors = STATUS_PREDECESSORS[status]
    if not predecessors:
        return False
    values: dict[str, object] = {"status": status, "status_at": at}
    if status == DeliveryStatus.FAILED:
        values["status_reason"] = reason
    result = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status.in_(list(predecessors)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def advance_statuses(
    session: Session, message_ids: Sequence[int], status: DeliveryStatus, reason: str | None, at: datetime
) -> set[int]:
    """`advance_status` for many messages at once: the ids it moved forward."""
    predecessors = STATUS_PREDECESSORS[status]
    if not predecessors or not message_ids:
        return set()
    values: dict[str, object] = {"status": status, "status_at": at}
    if status == DeliveryStatus.FAILED:
        values["status_reason"] = reason
    moved: set[int] = set()
    for start in range(0, len(message_ids), STATUS_BATCH):
        chunk = list(message_ids[start : start + STATUS_BATCH])
        statement = (
            update(Message)
            .where(Message.id.in_(chunk), Message.status.in_(list(predecessors)))
            .values(**values)
            .returning(Message.id)
            .execution_options(synchronize_session=False)
        )
        moved.update(int(message_id) for message_id in session.scalars(statement))
    return moved


STATUS_BATCH = 500


def snippets(session: Session, workspace_id: int) -> list[Snippet]:
    return list(session.scalars(select(Snippet).where(Snippet.workspace_id == workspace_id).order_by(Snippet.shortcut)))


def snippet(session: Session, workspace_id: int, snippet_id: int) -> Snippet | None:
    return session.scalar(select(Snippet).where(Snippet.workspace_id == workspace_id, Snippet.id == snippet_id))


def snippet_by_shortcut(session: Session, workspace_id: int, shortcut: str) -> Snippet | None:
    return session.scalar(select(Snippet).where(Snippet.workspace_id == workspace_id, Snippet.shortcut == shortcut))


def closing_categories(session: Session, workspace_id: int) -> list[ClosingCategory]:
    return list(
        session.scalars(
            select(ClosingCategory)
            .where(ClosingCategory.workspace_id == workspace_id)
            .order_by(ClosingCategory.position, ClosingCategory.id)
        )
    )


def closing_category(session: Session, workspace_id: int, category_id: int) -> ClosingCategory | None:
    return session.scalar(
        select(ClosingCategory).where(ClosingCategory.workspace_id == workspace_id, ClosingCategory.id == category_id)
    )


def last_channel_written(
    session: Session, contact_id: int, channel_ids: Sequence[int], direction: Direction
) -> int | None:
    """Of these channels, the one the contact's newest message in `direction` went through (walks
    the contact's messages newest first on (contact_id, id))."""
    if not channel_ids:
        return None
    found: int | None = session.scalar(
        select(Message.channel_id)
        .where(Message.contact_id == contact_id, Message.direction == direction, Message.channel_id.in_(channel_ids))
        .order_by(Message.id.desc())
        .limit(1)
    )
    return found


def last_incoming_on(session: Session, contact_id: int, channel_id: int) -> datetime | None:
    """When the contact last wrote on this channel: a reply window is per channel, not per person."""
    found: datetime | None = session.scalar(
        select(Message.created_at)
        .where(
            Message.contact_id == contact_id,
            Message.channel_id == channel_id,
            Message.direction == Direction.INCOMING,
        )
        .order_by(Message.id.desc())
        .limit(1)
    )
    return found
