"""Delivering the mail outbox: SMTP when `TERTULIA_SMTP_URL` is set, otherwise the log.

`deliver(database, ids)` is the unit of work and takes ids only; `mail.tasks` runs it on the queue.
Each row is claimed with one conditional UPDATE before it is sent (attempts goes up by one, and
only for the attempt count the claimer saw), so two deliverers racing over the same row send it
once. A row whose send failed keeps `last_error` and is retried by `deliver_pending` after a
backoff, up to MAX_ATTEMPTS. A crash between sending and recording leaves the row unsent, so it
may be sent again later: delivery is at least once, never silently dropped.

SMTP URLs: `smtp://user:password@host:port` (plain, port 25 by default),
`smtp+starttls://...` (STARTTLS, port 587) and `smtps://...` (TLS from the start, port 465).
User and password are percent-decoded.
"""

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import unquote, urlsplit

import structlog
from sqlalchemy import or_, select, update

from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings, get_settings
from tertulia.mail.models import OutgoingEmail

log = structlog.get_logger("tertulia.mail")

MAX_ATTEMPTS = 8
RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=1)
SMTP_TIMEOUT_SECONDS = 30
_SCHEMES = {"smtp": (25, "plain"), "smtp+starttls": (587, "starttls"), "smtps": (465, "tls")}


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    security: str  # "plain", "starttls" or "tls"
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise ValueError("TERTULIA_SMTP_URL must look like smtp://user:pass@host:port, smtp+starttls:// or smtps://")
    default_port, security = _SCHEMES[parts.scheme]
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def retry_delay(attempts: int) -> timedelta:
    """How long a row that has failed `attempts` times waits before the next try."""
    if attempts <= 0:
        return timedelta(0)
    delay: timedelta = RETRY_BASE * 2 ** min(attempts - 1, 30)
    return min(delay, RETRY_CAP)


def build_message(row: OutgoingEmail, settings: Settings) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = row.to_address
    message["Subject"] = row.subject
    message["Date"] = formatdate(localtime=False)
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(row.body)
    return message


def send_message(message: EmailMessage, settings: Settings) -> None:
    """Hand one message to the SMTP server, or print it to the log when no server is configured."""
    if not settings.smtp_url:
        # Without SMTP the log is the outbox a self-hoster reads (invitation and reset links).
        log.info("email_not_sent_no_smtp", to=message["To"], subject=message["Subject"], body=message.get_content())
        return
    target = parse_smtp_url(settings.smtp_url)
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if target.security == "tls":
        client = smtplib.SMTP_SSL(target.host, target.port, timeout=SMTP_TIMEOUT_SECONDS, context=context)
    else:
        client = smtplib.SMTP(target.host, target.port, timeout=SMTP_TIMEOUT_SECONDS)
    with client:
        if target.security == "starttls":
            client.starttls(context=context)
        if target.username:
            client.login(target.username, target.password or "")
        client.send_message(message)


def _claim(database: Database, email_id: int, now: datetime) -> OutgoingEmail | None:
    """Take one unsent, due row for this attempt, or None if it is sent, not due, or taken."""
    with database.transaction() as session:
        row = session.get(OutgoingEmail, email_id)
        if row is None or row.sent_at is not None or row.attempts >= MAX_ATTEMPTS:
            return None
        seen = row.attempts
        if seen and row.updated_at > now - retry_delay(seen):
            return None
        claimed = session.execute(
            update(OutgoingEmail)
            .where(OutgoingEmail.id == email_id, OutgoingEmail.sent_at.is_(None), OutgoingEmail.attempts == seen)
            .values(attempts=seen + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            return None
        session.expunge(row)
        return row


def deliver(database: Database, ids: Sequence[int], settings: Settings | None = None) -> int:
    """Send the given outbox rows that are still unsent and due; returns how many were sent."""
    settings = settings or get_settings()
    sent = 0
    for email_id in ids:
        row = _claim(database, email_id, utcnow())
        if row is None:
            continue
        error: str | None = None
        try:
            send_message(build_message(row, settings), settings)
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            log.warning("email_delivery_failed", email_id=email_id, attempts=row.attempts + 1, error=error)
        with database.transaction() as session:
            values: dict[str, object] = {"last_error": error}
            if error is None:
                values["sent_at"] = utcnow()
            session.execute(update(OutgoingEmail).where(OutgoingEmail.id == email_id).values(**values))
        sent += error is None
    return sent


def deliver_pending(database: Database, limit: int = 100, settings: Settings | None = None) -> int:
    """Send up to `limit` unsent rows whose retry time has come (oldest first)."""
    now = utcnow()
    with database.transaction(write=False) as session:
        rows = session.execute(
            select(OutgoingEmail.id, OutgoingEmail.attempts, OutgoingEmail.updated_at)
            .where(
                OutgoingEmail.sent_at.is_(None),
                OutgoingEmail.attempts < MAX_ATTEMPTS,
                # The shortest backoff in SQL, the exact one below: rows never due do not fill the page.
                or_(OutgoingEmail.attempts == 0, OutgoingEmail.updated_at <= now - retry_delay(1)),
            )
            .order_by(OutgoingEmail.id)
            .limit(limit)
        ).all()
    due = [email_id for email_id, attempts, updated_at in rows if updated_at <= now - retry_delay(attempts)]
    return deliver(database, due, settings)
