"""The mail outbox against a real SMTP server (aiosmtpd on 127.0.0.1, a free port) and the log."""

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from sqlalchemy import func, select, update
from structlog.testing import capture_logs

from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.settings import Settings
from tertulia.mail.delivery import MAX_ATTEMPTS, deliver, deliver_pending, parse_smtp_url, retry_delay
from tertulia.mail.models import OutgoingEmail
from tertulia.mail.service import queue_email

SMTP_USER, SMTP_PASSWORD = "mailer", "s3cret:pw"


@dataclass
class Mailbox:
    port: int
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    rejected: set[str] = field(default_factory=set)

    def settings(self, *, password: str = "s3cret%3Apw") -> Settings:  # noqa: S107
        return Settings(
            smtp_url=f"smtp://{SMTP_USER}:{password}@127.0.0.1:{self.port}", mail_from="Tertulia <t@example.org>"
        )

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        if address in self.rejected:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (SMTP_USER.encode(), SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    loop = asyncio.new_event_loop()
    box = Mailbox(port=0)

    def protocol() -> SMTP:
        return SMTP(box, hostname="tests.local", authenticator=_authenticate, auth_require_tls=False, loop=loop)

    server = loop.run_until_complete(loop.create_server(protocol, "127.0.0.1", 0))
    box.port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield box
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def add_rows(db: Database, *rows: tuple[str, str, str]) -> list[int]:
    """Outbox rows written directly, so no after-commit delivery races the test's own."""
    with db.transaction() as session:
        emails = [OutgoingEmail(to_address=to, subject=subject, body=body, attempts=0) for to, subject, body in rows]
        session.add_all(emails)
        session.flush()
        return [email.id for email in emails]


def row(db: Database, email_id: int) -> OutgoingEmail:
    with db.transaction(write=False) as session:
        found = session.get(OutgoingEmail, email_id)
        assert found is not None
        return found


def make_due(db: Database, email_id: int) -> None:
    with db.transaction() as session:
        session.execute(
            update(OutgoingEmail).where(OutgoingEmail.id == email_id).values(updated_at=utcnow() - timedelta(days=1))
        )


def test_smtp_delivery(db: Database, mailbox: Mailbox) -> None:
    ids = add_rows(
        db,
        ("ana@example.com", "Restablece tu contraseña", "Hola, Ana:\nhttps://crm.example.com/password-reset/abc\n"),
        ("bob@example.com", "Welcome", "Hello Bob"),
    )
    assert deliver_pending(db, settings=mailbox.settings()) == 2
    assert [(sender, rcpt) for sender, rcpt, _ in mailbox.messages] == [
        ("t@example.org", ["ana@example.com"]),
        ("t@example.org", ["bob@example.com"]),
    ]
    message = message_from_bytes(mailbox.messages[0][2], policy=policy.default)
    assert message["Subject"] == "Restablece tu contraseña"
    assert message["From"] == "Tertulia <t@example.org>"
    assert message["Message-ID"].endswith("@example.org>")
    assert "https://crm.example.com/password-reset/abc" in message.get_content()
    for email_id in ids:
        sent = row(db, email_id)
        assert sent.sent_at is not None
        assert (sent.attempts, sent.last_error) == (1, None)
    assert deliver_pending(db, settings=mailbox.settings()) == 0
    assert len(mailbox.messages) == 2


def test_failure_counts_attempts_and_retries_after_backoff(db: Database, mailbox: Mailbox) -> None:
    mailbox.rejected.add("gone@example.com")
    [email_id] = add_rows(db, ("gone@example.com", "Hi", "Body"))
    assert deliver_pending(db, settings=mailbox.settings()) == 0
    failed = row(db, email_id)
    assert (failed.attempts, failed.sent_at) == (1, None)
    assert failed.last_error is not None
    assert "No such mailbox" in failed.last_error
    # Not due yet: the backoff keeps it from being hammered.
    assert deliver_pending(db, settings=mailbox.settings()) == 0
    assert row(db, email_id).attempts == 1
    make_due(db, email_id)
    assert deliver_pending(db, settings=mailbox.settings()) == 0
    assert row(db, email_id).attempts == 2
    mailbox.rejected.clear()
    make_due(db, email_id)
    assert deliver_pending(db, settings=mailbox.settings()) == 1
    delivered = row(db, email_id)
    assert delivered.sent_at is not None
    assert (delivered.attempts, delivered.last_error) == (3, None)


def test_wrong_credentials_and_unreachable_server(db: Database, mailbox: Mailbox) -> None:
    [email_id] = add_rows(db, ("ana@example.com", "Hi", "Body"))
    assert deliver(db, [email_id], mailbox.settings(password="wrong")) == 0
    assert "SMTPAuthenticationError" in (row(db, email_id).last_error or "")
    make_due(db, email_id)
    closed = Settings(smtp_url="smtp://127.0.0.1:1")
    assert deliver(db, [email_id], closed) == 0
    failed = row(db, email_id)
    assert failed.attempts == 2
    assert "ConnectionRefusedError" in (failed.last_error or "")
    assert mailbox.messages == []


def test_gives_up_after_max_attempts(db: Database, mailbox: Mailbox) -> None:
    [email_id] = add_rows(db, ("ana@example.com", "Hi", "Body"))
    with db.transaction() as session:
        session.execute(update(OutgoingEmail).where(OutgoingEmail.id == email_id).values(attempts=MAX_ATTEMPTS))
    make_due(db, email_id)
    assert deliver_pending(db, settings=mailbox.settings()) == 0
    assert deliver(db, [email_id], mailbox.settings()) == 0
    assert mailbox.messages == []


def test_racing_deliverers_send_once(db: Database, mailbox: Mailbox) -> None:
    [email_id] = add_rows(db, ("ana@example.com", "Once", "Body"))
    barrier = threading.Barrier(4)
    results: list[int] = []

    def run() -> None:
        barrier.wait()
        results.append(deliver(db, [email_id], mailbox.settings()))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [0, 0, 0, 1]
    assert len(mailbox.messages) == 1


def test_without_smtp_the_message_goes_to_the_log_after_commit(db: Database) -> None:
    with capture_logs() as logs, db.transaction() as session:
        email = queue_email(session, "ana@example.com", "Your link", "Open https://t.example/invitations/xyz")
        email_id = email.id
        assert email.sent_at is None
    logged = [entry for entry in logs if entry["event"] == "email_not_sent_no_smtp"]
    assert len(logged) == 1
    assert logged[0]["to"] == "ana@example.com"
    assert "https://t.example/invitations/xyz" in logged[0]["body"]
    sent = row(db, email_id)
    assert sent.sent_at is not None
    assert sent.attempts == 1


def test_rolled_back_email_is_never_sent(db: Database) -> None:
    with capture_logs() as logs:
        session = db.session()
        try:
            queue_email(session, "ana@example.com", "Never", "Body")
            session.rollback()
        finally:
            session.close()
    assert [entry for entry in logs if entry["event"] == "email_not_sent_no_smtp"] == []
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(OutgoingEmail)) == 0


def test_queue_email_rejects_header_injection(db: Database) -> None:
    with db.transaction() as session:
        with pytest.raises(ValidationFailed):
            queue_email(session, "ana@example.com\r\nBcc: x@example.com", "Hi", "Body")
        email = queue_email(session, "ana@example.com", "Hi\r\nBcc: x@example.com", "Body")
        assert email.subject == "Hi Bcc: x@example.com"


def test_parse_smtp_url() -> None:
    plain = parse_smtp_url("smtp://user%40corp:p%3Ass@mail.example.com")
    assert (plain.host, plain.port, plain.security) == ("mail.example.com", 25, "plain")
    assert (plain.username, plain.password) == ("user@corp", "p:ss")
    assert parse_smtp_url("smtps://mail.example.com").port == 465
    starttls = parse_smtp_url("smtp+starttls://mail.example.com:2525")
    assert (starttls.port, starttls.security, starttls.username) == (2525, "starttls", None)
    for bad in ("http://mail.example.com", "smtp://", "mail.example.com"):
        with pytest.raises(ValueError, match="TERTULIA_SMTP_URL"):
            parse_smtp_url(bad)


def test_retry_delay_grows_and_is_capped() -> None:
    delays = [retry_delay(n) for n in range(MAX_ATTEMPTS + 40)]
    assert delays[0] == timedelta(0)
    assert delays == sorted(delays)
    assert delays[-1] == timedelta(hours=1)
