"""Notification emails: for the kinds a person chose, while they are away or offline.

A notification that wants an email is written `pending`. `send_due` (the queue, after the write and
every minute) looks at each person with pending notifications:
- shown online: nothing yet (they see the bell); what they read meanwhile is `skipped`;
- away, busy or offline, mode `immediate`: one email per notification;
- mode `digest`: one email with everything pending, at most once every DIGEST_EVERY.
Each email ends with a one-click link per kind (signed with the installation secret, no sign-in)
that stops emails of that kind; the kind stays in the app.
"""

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.kit.db import Database
from tertulia.kit.security import sign, signature_matches
from tertulia.mail.service import queue_email
from tertulia.notifications.models import (
    DEFAULTS,
    EmailMode,
    Notification,
    NotificationEmailSettings,
    NotificationKind,
    NotificationPreference,
)
from tertulia.notifications.texts import KIND_LABELS, formatter_for, title
from tertulia.users.models import ActivityStatus, User
from tertulia.web import i18n

DIGEST_EVERY = timedelta(hours=1)
UNSUBSCRIBE_PURPOSE = "notifications.unsubscribe"
BATCH = 500

SUBJECT_DIGEST = i18n.lazy("Tertulia: %(count)s notifications while you were away")
INTRO = i18n.lazy("Hello %(name)s, this happened while you were away:")
OPEN = i18n.lazy("Open: %(url)s")
UNSUBSCRIBE = i18n.lazy("Stop emails about \u201c%(kind)s\u201d: %(url)s")


def unsubscribe_signature(user_id: int, kind: str) -> str:
    return sign(UNSUBSCRIBE_PURPOSE, f"{user_id}:{kind}")


def unsubscribe_url(base_url: str, user_id: int, kind: str) -> str:
    return f"{base_url.rstrip('/')}/notifications/unsubscribe/{user_id}/{kind}/{unsubscribe_signature(user_id, kind)}"


def check_unsubscribe(user_id: int, kind: str, signature: str) -> bool:
    return kind in NotificationKind.__members__.values() and signature_matches(
        UNSUBSCRIBE_PURPOSE, f"{user_id}:{kind}", signature
    )


def current_settings(session: Session, user_id: int) -> NotificationEmailSettings | None:
    return session.scalar(select(NotificationEmailSettings).where(NotificationEmailSettings.user_id == user_id))


def email_settings(session: Session, user_id: int) -> NotificationEmailSettings:
    """The person's settings row, written with the defaults when there is none."""
    row = current_settings(session, user_id)
    if row is None:
        row = NotificationEmailSettings(user_id=user_id, mode=EmailMode.IMMEDIATE.value)
        session.add(row)
        session.flush()
    return row


def _body(session: Session, user: User, rows: list[Notification], base_url: str) -> tuple[str, str]:
    fmt = formatter_for(session, user.id)
    base = base_url.rstrip("/")
    lines: list[str] = []
    if len(rows) > 1:
        lines += [fmt.gettext(INTRO) % {"name": user.full_name}, ""]
    for row in rows:
        lines.append(f"- {title(row, fmt)}")
        excerpt = str((row.params or {}).get("excerpt") or "")
        if excerpt:
            lines.append(f"  \u201c{excerpt}\u201d")
        lines.append("  " + fmt.gettext(OPEN) % {"url": base + row.link})
    lines += ["", "-- "]
    for kind in dict.fromkeys(row.kind for row in rows):
        label = fmt.gettext(KIND_LABELS.get(kind, kind))
        lines.append(fmt.gettext(UNSUBSCRIBE) % {"kind": label, "url": unsubscribe_url(base_url, user.id, kind)})
    subject = title(rows[0], fmt) if len(rows) == 1 else fmt.gettext(SUBJECT_DIGEST) % {"count": len(rows)}
    return subject, "\n".join(lines) + "\n"


def send_due(db: Database, now: datetime, base_url: str) -> int:
    """Send what is due; how many emails were queued in the outbox."""
    queued = 0
    with db.transaction() as session:
        pending = list(
            session.scalars(
                select(Notification)
                .where(Notification.email_state == "pending")
                .order_by(Notification.user_id, Notification.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        by_user: dict[int, list[Notification]] = defaultdict(list)
        for row in pending:
            if row.read_at is not None:
                row.email_state = "skipped"  # seen in the app before an email was due
            else:
                by_user[row.user_id].append(row)
        for user_id, rows in by_user.items():
            user = session.get(User, user_id)
            if user is None or user.activity_status == ActivityStatus.ONLINE:
                continue
            settings = email_settings(session, user_id)
            if settings.mode == EmailMode.DIGEST:
                if settings.digest_sent_at is not None and now - settings.digest_sent_at < DIGEST_EVERY:
                    continue
                batches = [rows]
                settings.digest_sent_at = now
            else:
                batches = [[row] for row in rows]
            for batch in batches:
                subject, body = _body(session, user, batch, base_url)
                queue_email(session, user.email, subject, body)
                queued += 1
                for row in batch:
                    row.email_state = "sent"
        session.flush()
    return queued


def do_unsubscribe(session: Session, user_id: int, kind: str) -> None:
    """Stop emails of `kind` for `user_id` (the caller checked the signature); what was waiting to
    be emailed of that kind is not sent either."""
    row = session.scalar(
        select(NotificationPreference).where(
            NotificationPreference.user_id == user_id, NotificationPreference.kind == kind
        )
    )
    if row is None:
        default = DEFAULTS[NotificationKind(kind)]
        row = NotificationPreference(user_id=user_id, kind=kind, in_app=default.in_app, browser=default.browser)
        session.add(row)
    row.email = False
    for pending in session.scalars(
        select(Notification).where(
            Notification.user_id == user_id, Notification.kind == kind, Notification.email_state == "pending"
        )
    ):
        pending.email_state = "skipped"
    session.flush()
