"""What the email benchmarks share: a fresh SQLite data directory, a workspace whose email channels
read the private Dovecot (tests/mailservers.py), and a customer's mail.

`fresh_data_dir` must run before anything of tertulia is imported: the settings read the
environment once, at import.
"""

import os
import shutil
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any


def fresh_data_dir(data: Path) -> str:
    """Empty `data`, point tertulia's data directory and SQLite database at it, and migrate it."""
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    url = f"sqlite:///{data / 'tertulia.db'}"
    os.environ["TERTULIA_DATA_DIR"] = str(data)
    os.environ["TERTULIA_DATABASE_URL"] = url
    from tertulia.migrations import upgrade  # noqa: PLC0415 (after the environment is set)

    upgrade(url)
    return url


@dataclass(frozen=True)
class Mailbox:
    """An email channel to connect: its name, the test server's address it reads, how and where."""

    name: str
    address: str
    port: int
    protocol: str = "imap"
    options: dict[str, Any] = field(default_factory=dict)


def connect_mailboxes(db: Any, mailboxes: list[Mailbox]) -> list[int]:
    """A new workspace with one email channel per mailbox (plain IMAP/POP3 and SMTP on 127.0.0.1,
    the test server's password); the channels' ids, in order."""
    from tests.mailservers import PASSWORD  # noqa: PLC0415

    from tertulia.channels.service import do_create_channel  # noqa: PLC0415
    from tertulia.provisioning import do_create_workspace_with_owner  # noqa: PLC0415
    from tertulia.users.permissions import Actor  # noqa: PLC0415

    with db.transaction() as session:
        workspace = do_create_workspace_with_owner(session, "Bench", "owner@example.com", "owner-password")
        actor = Actor.system(workspace.workspace.id, "bench")
        ids = []
        for mailbox in mailboxes:
            config = {
                "address": mailbox.address,
                "incoming_protocol": mailbox.protocol,
                "incoming_host": "127.0.0.1",
                "incoming_port": mailbox.port,
                "incoming_security": "plain",
                "smtp_host": "127.0.0.1",
                "smtp_port": 25,
                "smtp_security": "plain",
                **mailbox.options,
            }
            channel = do_create_channel(session, actor, "email", mailbox.name, config, {"password": PASSWORD})
            ids.append(channel.id)
    return ids


def customer_mail(n: int, to: str, *, customer: int, idstring: str, body: str) -> EmailMessage:
    """Customer `customer`'s mail number `n` to `to`, about order `n`, with a unique Message-ID."""
    message = EmailMessage()
    message["From"] = f"Customer {customer} <customer{customer}@example.com>"
    message["To"] = to
    message["Subject"] = f"Order {n}"
    message["Message-ID"] = make_msgid(idstring=f"{idstring}{n}", domain="example.com")
    message.set_content(body)
    return message
