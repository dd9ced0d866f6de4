"""In-app notifications: who is told what, their preferences, reading and marking read.

The rows are written by the event-log consumer (`feed.py`); everything here is scoped to one person
in one workspace. Texts are kept as a kind and its parameters and put into words for the reader
(`title`), in their language.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from tertulia.kit import realtime
from tertulia.kit.clock import utcnow
from tertulia.kit.db import on_commit
from tertulia.kit.errors import NotFound, Unauthorized, ValidationFailed
from tertulia.notifications.models import DEFAULTS, Choice, Notification, NotificationKind, NotificationPreference
from tertulia.notifications.texts import formatter_for, title
from tertulia.users.permissions import Actor
from tertulia.web import i18n

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
EXCERPT = 140


def _user_id(actor: Actor) -> int:
    if actor.user_id is None:
        raise Unauthorized("Notifications belong to a signed-in person; sign in instead of using a token.")
    return actor.user_id


def out(notification: Notification, fmt: i18n.Formatter, choice: Choice | None = None) -> dict[str, Any]:
    return {
        "id": notification.id,
        "kind": notification.kind,
        "title": title(notification, fmt),
        "body": str((notification.params or {}).get("excerpt") or ""),
        "link": notification.link,
        "conversation_id": notification.conversation_id,
        "created_at": notification.created_at.isoformat(),
        "read_at": notification.read_at.isoformat() if notification.read_at else None,
        "browser": choice.browser if choice is not None else False,
    }


# ----- preferences ------------------------------------------------------------------------------


def preferences(session: Session, user_id: int) -> dict[str, Choice]:
    chosen = {
        row.kind: Choice(row.in_app, row.browser, row.email)
        for row in session.scalars(select(NotificationPreference).where(NotificationPreference.user_id == user_id))
    }
    return {kind: chosen.get(kind, default) for kind, default in DEFAULTS.items()}


def do_set_preferences(session: Session, actor: Actor, choices: dict[str, Choice]) -> dict[str, Choice]:
    user_id = _user_id(actor)
    unknown = [kind for kind in choices if kind not in DEFAULTS]
    if unknown:
        raise ValidationFailed.field(unknown[0], "is not a kind of notification")
    rows = {
        row.kind: row
        for row in session.scalars(select(NotificationPreference).where(NotificationPreference.user_id == user_id))
    }
    for kind, choice in choices.items():
        row = rows.get(kind)
        if row is None:
            row = NotificationPreference(user_id=user_id, kind=kind)
            session.add(row)
        row.in_app, row.browser, row.email = choice.in_app, choice.browser, choice.email
    session.flush()
    return preferences(session, user_id)


# ----- writing (the feed) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    user_id: int
    kind: NotificationKind
    params: dict[str, Any]
    link: str
    conversation_id: int | None = None
    # What makes it once-only when no event does (e.g. "waiting:<conversation>:<since>").
    key: str | None = None


def do_notify(session: Session, workspace_id: int, event_id: int | None, drafts: Sequence[Draft]) -> list[Notification]:
    """Write what the preferences let through; a draft already written for this event and kind (a
    re-fed event) is skipped. The new rows, published to their people's sockets after commit."""
    return do_notify_many(session, [(workspace_id, event_id, drafts)])


class _Readers:
    """What a batch of notifications reads once per person: their preferences and language."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._preferences: dict[int, dict[str, Choice]] = {}
        self._formatters: dict[int, i18n.Formatter] = {}

    def choice(self, user_id: int, kind: str) -> Choice:
        if user_id not in self._preferences:
            self._preferences[user_id] = preferences(self._session, user_id)
        return self._preferences[user_id][kind]

    def formatter(self, user_id: int) -> i18n.Formatter:
        if user_id not in self._formatters:
            self._formatters[user_id] = formatter_for(self._session, user_id)
        return self._formatters[user_id]


def do_notify_many(session: Session, batch: Sequence[tuple[int, int | None, Sequence[Draft]]]) -> list[Notification]:
    """`do_notify` for several (workspace id, event id, drafts), in order, in the caller's
    transaction: each person's preferences and language read once, and the unread counts the
    sockets get read once per person at the end (each notification carries the count as it was
    right after its own row)."""
    now = utcnow()
    readers = _Readers(session)
    rows: list[dict[str, Any]] = []
    for workspace_id, event_id, drafts in batch:
        for draft in drafts:
            choice = readers.choice(draft.user_id, draft.kind)
            if not (choice.in_app or choice.email):
                continue
            rows.append(
                {
                    "workspace_id": workspace_id,
                    "user_id": draft.user_id,
                    "kind": draft.kind.value,
                    "dedupe_key": draft.key or f"event:{event_id}:{draft.kind.value}",
                    "event_id": event_id,
                    "conversation_id": draft.conversation_id,
                    "params": draft.params,
                    "link": draft.link,
                    "created_at": now,
                    "in_app": choice.in_app,
                    "email_state": "pending" if choice.email else None,
                }
            )
    if not rows:
        return []
    insert = postgres_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # One statement for the whole read; a row already written (a re-fed event) comes back missing.
    table: Table = Notification.__table__  # type: ignore[assignment]
    statement = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["user_id", "dedupe_key"])
        .returning(Notification.id, Notification.user_id, Notification.dedupe_key)
    )
    new_ids = {(user_id, key): new_id for new_id, user_id, key in session.execute(statement, rows)}
    written: list[Notification] = []
    for values in rows:
        new_id = new_ids.pop((values["user_id"], values["dedupe_key"]), None)
        if new_id is not None:
            # The row as written, not read back: it is only shown and told of.
            written.append(Notification(id=new_id, read_at=None, **values))
    shown = [row for row in written if readers.choice(row.user_id, row.kind).in_app]
    if not shown:
        return written
    # Each person's count after their last new row; a row earlier in the batch is shown with the
    # count as it stood when it was written, one less for each of the same person's rows after it.
    later: dict[tuple[int, int], int] = {}
    counts_after: list[int] = []
    finals = _unread_counts(session, {(row.workspace_id, row.user_id) for row in shown})
    for row in reversed(shown):
        person = (row.workspace_id, row.user_id)
        counts_after.append(finals[person] - later.get(person, 0))
        later[person] = later.get(person, 0) + 1
    counts_after.reverse()
    events = [
        {
            "type": "notification.created",
            "workspace_id": row.workspace_id,
            "user_id": row.user_id,
            "data": {
                "notification": out(row, readers.formatter(row.user_id), readers.choice(row.user_id, row.kind)),
                "unread": unread,
            },
        }
        for row, unread in zip(shown, counts_after, strict=True)
    ]

    def publish() -> None:
        for event in events:
            realtime.publish(event)

    on_commit(session, publish)
    return written


def do_mark_ended(session: Session, workspace_id: int, kind: NotificationKind, link: str) -> int:
    """Mark read everyone's unread notifications of `kind` linking to `link`: what they told of has
    ended (a channel works again), so they leave the bell and no email is sent for them. Their
    people's bells are told after commit; how many were marked."""
    users = list(
        session.scalars(
            update(Notification)
            .where(
                Notification.workspace_id == workspace_id,
                Notification.kind == kind.value,
                Notification.link == link,
                Notification.read_at.is_(None),
            )
            .values(read_at=utcnow())
            .returning(Notification.user_id)
            .execution_options(synchronize_session=False)
        )
    )
    events = [
        {
            "type": "notification.read",
            "workspace_id": workspace_id,
            "user_id": user_id,
            "data": {"unread": unread_count(session, workspace_id, user_id)},
        }
        for user_id in sorted(set(users))
    ]
    if events:

        def publish() -> None:
            for event in events:
                realtime.publish(event)

        on_commit(session, publish)
    return len(users)


def wants_email(rows: Sequence[Notification]) -> bool:
    """Whether the caller should queue the email task after commit (tasks.queue_emails)."""
    return any(row.email_state == "pending" for row in rows)


# ----- reading and marking read -----------------------------------------------------------------


def unread_count(session: Session, workspace_id: int, user_id: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(
                Notification.workspace_id == workspace_id,
                Notification.user_id == user_id,
                Notification.read_at.is_(None),
            )
        )
        or 0
    )


def _unread_counts(session: Session, people: set[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """`unread_count` for several (workspace id, user id) in one query."""
    counts = dict.fromkeys(people, 0)
    rows = session.execute(
        select(Notification.workspace_id, Notification.user_id, func.count())
        .where(
            Notification.user_id.in_(sorted({user_id for _, user_id in people})),
            Notification.read_at.is_(None),
        )
        .group_by(Notification.workspace_id, Notification.user_id)
    )
    for workspace_id, user_id, count in rows:
        if (workspace_id, user_id) in counts:
            counts[(workspace_id, user_id)] = int(count)
    return counts


def list_notifications(
    session: Session, actor: Actor, *, before: int | None = None, limit: int = PAGE_SIZE, unread_only: bool = False
) -> list[Notification]:
    user_id = _user_id(actor)
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationFailed.field("limit", f"must be between 1 and {MAX_PAGE_SIZE}")
    query = select(Notification).where(
        Notification.workspace_id == actor.workspace_id, Notification.user_id == user_id, Notification.in_app
    )
    if before is not None:
        query = query.where(Notification.id < before)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    return list(session.scalars(query.order_by(Notification.id.desc()).limit(limit)))


def access_notification(session: Session, actor: Actor, notification_id: int) -> Notification:
    user_id = _user_id(actor)
    row = session.scalar(
        select(Notification).where(
            Notification.id == notification_id,
            Notification.workspace_id == actor.workspace_id,
            Notification.user_id == user_id,
        )
    )
    if row is None:
        raise NotFound("No such notification.")
    return row


def _published_count(session: Session, actor: Actor) -> int:
    user_id = _user_id(actor)
    count = unread_count(session, actor.workspace_id, user_id)
    event = {
        "type": "notification.read",
        "workspace_id": actor.workspace_id,
        "user_id": user_id,
        "data": {"unread": count},
    }
    on_commit(session, lambda: realtime.publish(event))
    return count


def do_mark_read(session: Session, actor: Actor, notification_id: int) -> Notification:
    row = access_notification(session, actor, notification_id)
    if row.read_at is None:
        row.read_at = utcnow()
        session.flush()
        _published_count(session, actor)
    return row


def do_mark_all_read(session: Session, actor: Actor) -> int:
    """Mark every unread notification of the person in this workspace read; how many were."""
    user_id = _user_id(actor)
    result = session.execute(
        update(Notification)
        .where(
            Notification.workspace_id == actor.workspace_id,
            Notification.user_id == user_id,
            Notification.read_at.is_(None),
        )
        .values(read_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    _published_count(session, actor)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
