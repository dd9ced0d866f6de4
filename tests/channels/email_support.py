"""Shared pieces of the email channel's tests: the real servers (tests/mailservers.py) per test
session, a channel pointed at them, and mail written the way customers' programs write it."""

from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import pytest
from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.channels.service import do_create_channel
from tertulia.conversations.ingress.callbacks import callback_spool, process_callbacks
from tertulia.conversations.ingress.mailbox import FetchReport, fetch_mailbox
from tertulia.conversations.models import Mailbox, Message
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.mailservers import PASSWORD, Dovecot, SmtpServer, dovecot, smtp_server

SUPPORT = "support@shop.example.com"
ANA = "ana@example.com"
BOB = "bob@example.net"


@dataclass
class MailServers:
    dovecot: Dovecot
    smtp: SmtpServer

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "address": SUPPORT,
            "from_name": "Shop support",
            "incoming_protocol": "imap",
            "incoming_host": "127.0.0.1",
            "incoming_port": self.dovecot.imap_port,
            "incoming_security": "plain",
            "smtp_host": "127.0.0.1",
            "smtp_port": self.smtp.port,
            "smtp_security": "plain",
            "poll_seconds": 10,
            **overrides,
        }

    def send(self, mail: EmailMessage, to: str = SUPPORT) -> None:
        """A customer's program sends `mail` through the SMTP server, which delivers it to `to`."""
        self.dovecot.deliver(to, mail.as_bytes())


@pytest.fixture(scope="session")
def mail_session() -> Iterator[MailServers]:
    with dovecot() as server, smtp_server(server) as smtp:
        yield MailServers(server, smtp)


@pytest.fixture
def mail(mail_session: MailServers) -> MailServers:
    mail_session.dovecot.clear()
    mail_session.smtp.received.clear()
    mail_session.smtp.rejected.clear()
    mail_session.smtp.fail_next.clear()
    return mail_session


def email_channel(db: Database, tenant: Tenant, mail: MailServers, **overrides: Any) -> Channel:
    with db.transaction() as session:
        channel = do_create_channel(
            session, tenant.actor(), "email", "Support mailbox", mail.config(**overrides), {"password": PASSWORD}
        )
        session.expunge(channel)
        return channel


def customer_mail(
    sender: str = ANA,
    subject: str = "Mi pedido no llegó",
    body: str = "Hola, mi pedido 1234 no ha llegado.",
    *,
    to: str = SUPPORT,
    name: str | None = "Ana Ruiz",
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"{name} <{sender}>" if name else sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid(domain=sender.partition("@")[2])
    for key, value in (headers or {}).items():
        message[key] = value
    message.set_content(body)
    return message


def fetch_and_write(db: Database, channel_id: int) -> FetchReport:
    """One look at the mailbox, then the spooled mail written (as the queued task does)."""
    report = fetch_mailbox(db, channel_id, enqueue=False)
    while callback_spool(db).waiting():
        if not process_callbacks(db):
            break
    return report


def messages_of(db: Database, channel_id: int) -> list[Message]:
    with db.transaction(write=False) as session:
        found = list(session.scalars(select(Message).where(Message.channel_id == channel_id).order_by(Message.id)))
        session.expunge_all()
        return found


def mailbox_state(db: Database, channel_id: int) -> Mailbox:
    with db.transaction(write=False) as session:
        state = session.get(Mailbox, channel_id)
        assert state is not None
        session.expunge(state)
        return state
