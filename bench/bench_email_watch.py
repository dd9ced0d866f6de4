"""Email in, one mail at a time: how long after a mail lands in the mailbox it is a message in the
inbox, with the watchers every queue consumer runs (`MailWatchers`, conversations/ingress/mailbox.py).

`python -m bench email_watch`. A private Dovecot (tests/mailservers.py; Debian's dovecot-imapd and
dovecot-pop3d) and a fresh SQLite database in TERTULIA_BENCH_DATA (./data/bench-email-watch). Two
mailboxes, measured in the same run: one over IMAP, where the watcher keeps an IDLE connection, and
the baseline, the same server read over POP3 (no push), which the watcher reads every
`poll_seconds` (10, the lowest the settings allow). TERTULIA_BENCH_MAILS mails (30) are delivered to
the IMAP mailbox, each TERTULIA_BENCH_GAP seconds (1.0) after the previous one was stored; ten to the
POP3 one, each 0, 1, ... 9 s after the previous one was stored (so they fall at every point of the
interval); for each, the time from the end of its delivery to its message being stored. The queued
task that writes the mail runs inline (huey's immediate mode), so the figure is the watcher's
reaction plus reading and writing one mail. Checked: every mail stored once.
"""

import json
import os
import statistics
import time
from email.message import EmailMessage
from pathlib import Path

from bench.email_setup import Mailbox, connect_mailboxes, customer_mail, fresh_data_dir

DATA = Path(os.environ.get("TERTULIA_BENCH_DATA", "./data/bench-email-watch")).resolve()
MAILS = int(os.environ.get("TERTULIA_BENCH_MAILS", "30"))
GAP = float(os.environ.get("TERTULIA_BENCH_GAP", "1.0"))
POLL_MAILS = 10
IMAP_BOX = "support@shop.example.com"
POP3_BOX = "bob@example.net"  # another of the test server's mailboxes


def _mail(n: int, to: str) -> EmailMessage:
    return customer_mail(n, to, customer=n, idstring="watch", body=f"Hello, about order {n}.\n")


def main() -> None:
    url = fresh_data_dir(DATA)
    from sqlalchemy import select  # noqa: PLC0415 (after the environment is set)
    from tests.mailservers import dovecot  # noqa: PLC0415

    from tertulia.conversations.ingress.mailbox import MailWatchers  # noqa: PLC0415
    from tertulia.conversations.models import Message  # noqa: PLC0415
    from tertulia.kit import queue  # noqa: PLC0415
    from tertulia.kit.db import Database  # noqa: PLC0415

    db = Database(url)
    queue.huey.immediate = True
    queue.use_database(db)
    with dovecot() as server:
        options = {"sent_folder": "", "poll_seconds": 10}
        idle, poll = connect_mailboxes(
            db,
            [
                Mailbox("idle", IMAP_BOX, server.imap_port, "imap", options),
                Mailbox("poll", POP3_BOX, server.pop3_port, "pop3", options),
            ],
        )
        channels = {"idle": (idle, IMAP_BOX), "poll": (poll, POP3_BOX)}
        watchers = MailWatchers(db)
        watchers.start()
        try:
            deadline = time.monotonic() + 30
            while watchers.watching != {i for i, _ in channels.values()} and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2)  # the IDLE has begun, the first POP3 read is done
            report: dict[str, object] = {}
            for kind, (channel_id, box) in channels.items():
                delays: list[float] = []
                count = MAILS if kind == "idle" else POLL_MAILS
                for n in range(count):
                    mail = _mail(n, box)
                    server.deliver(box, mail.as_bytes())
                    delivered = time.monotonic()
                    wanted = str(mail["Message-ID"])
                    while True:
                        with db.transaction(write=False) as session:
                            found = session.scalar(
                                select(Message.id).where(
                                    Message.channel_id == channel_id, Message.provider_message_id == wanted
                                )
                            )
                        if found is not None:
                            break
                        if time.monotonic() - delivered > 120:
                            raise SystemExit(f"email_watch bench: mail {n} of {kind} never arrived")
                        time.sleep(0.01)
                    delays.append(time.monotonic() - delivered)
                    time.sleep(GAP if kind == "idle" else float(n % 10))
                with db.transaction(write=False) as session:
                    stored = list(
                        session.scalars(select(Message.provider_message_id).where(Message.channel_id == channel_id))
                    )
                ordered = sorted(delays)
                report[kind] = {
                    "mails": count,
                    "median_seconds": round(statistics.median(delays), 3),
                    "p90_seconds": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
                    "max_seconds": round(max(delays), 3),
                    "stored": len(stored),
                    "distinct": len(set(stored)),
                }
                if len(stored) != count or len(set(stored)) != count:
                    raise SystemExit(f"email_watch bench: {kind} lost or duplicated mail")
        finally:
            watchers.stop()
    print(json.dumps(report, indent=2))
