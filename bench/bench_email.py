"""Email in: how many customers' messages a second the email channel reads from a real IMAP server
and writes into the inbox, and that none is lost or duplicated.

`python -m bench email`. A private Dovecot (the one the tests start, tests/mailservers.py; Debian's
dovecot-imapd must be installed) gets TERTULIA_BENCH_EMAILS messages (10,000) appended to the
support mailbox from TERTULIA_BENCH_SENDERS customers (200): a mix of plain text (60%), HTML with
a plain part (25%) and mail with a PDF attachment (15%). Then, timed, the fetcher reads the mailbox
(UID FETCH in batches into the callback spool) and the callback task writes the spool through the
inbox's batched writer (parse, threading, identities, files), on a fresh SQLite database in
TERTULIA_BENCH_DATA (./data/bench-email). The report has messages per second end to end (target
at least 200/s on SQLite), and the checks: every Message-ID stored once, nothing left in the spool,
and a second look at the mailbox spooling nothing. TERTULIA_BENCH_PROFILE=1 prints where the
writing half spends its time.
"""

import cProfile
import json
import os
import pstats
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from bench.email_setup import Mailbox, connect_mailboxes, customer_mail, fresh_data_dir

DATA = Path(os.environ.get("TERTULIA_BENCH_DATA", "./data/bench-email")).resolve()
EMAILS = int(os.environ.get("TERTULIA_BENCH_EMAILS", "10000"))
SENDERS = int(os.environ.get("TERTULIA_BENCH_SENDERS", "200"))
SUPPORT = "support@shop.example.com"


def _mail(n: int) -> EmailMessage:
    body = f"Hello, about order {n}: it has not arrived yet.\n\nThanks.\n"
    message = customer_mail(n, SUPPORT, customer=n % SENDERS, idstring="bench", body=body)
    message["Date"] = format_datetime(datetime.now(UTC))
    kind = n % 20
    if kind < 5:
        message.add_alternative(
            f"<p>Hello, about order <b>{n}</b>.</p><img src='https://t.example/p.gif'>", subtype="html"
        )
    elif kind < 8:
        message.add_attachment(b"%PDF-1.4 " + bytes(2048), maintype="application", subtype="pdf", filename=f"o{n}.pdf")
    return message


def main() -> None:
    url = fresh_data_dir(DATA)
    from sqlalchemy import func, select  # noqa: PLC0415 (after the environment is set)
    from tests.mailservers import dovecot  # noqa: PLC0415

    from tertulia.conversations.ingress.callbacks import callback_spool, process_callbacks  # noqa: PLC0415
    from tertulia.conversations.ingress.mailbox import fetch_mailbox  # noqa: PLC0415
    from tertulia.conversations.models import Message  # noqa: PLC0415
    from tertulia.kit.db import Database  # noqa: PLC0415

    db = Database(url)
    with dovecot() as server:
        started = time.perf_counter()
        client = server.imap(SUPPORT)
        ids = []
        for n in range(EMAILS):
            mail = _mail(n)
            ids.append(str(mail["Message-ID"]))
            client.append("INBOX", "", None, mail.as_bytes())
        client.logout()
        loaded = time.perf_counter() - started
        [channel_id] = connect_mailboxes(db, [Mailbox("Support", SUPPORT, server.imap_port)])
        started = time.perf_counter()
        spooled = fetch_mailbox(db, channel_id, batch=500, enqueue=False).spooled
        fetched = time.perf_counter() - started
        profile = cProfile.Profile() if os.environ.get("TERTULIA_BENCH_PROFILE") else None
        if profile:
            profile.enable()
        while process_callbacks(db):
            pass
        if profile:
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        elapsed = time.perf_counter() - started
        again = fetch_mailbox(db, channel_id, enqueue=False).spooled
    with db.transaction(write=False) as session:
        stored = int(session.scalar(select(func.count()).select_from(Message)) or 0)
        distinct = int(session.scalar(select(func.count(func.distinct(Message.provider_message_id)))) or 0)
        known = set(session.scalars(select(Message.provider_message_id)))
    report = {
        "emails": EMAILS,
        "senders": SENDERS,
        "appended_in_seconds": round(loaded, 1),
        "spooled": spooled,
        "fetch_seconds": round(fetched, 2),
        "total_seconds": round(elapsed, 2),
        "messages_per_second": round(EMAILS / elapsed, 1),
        "stored": stored,
        "distinct_message_ids": distinct,
        "missing": len(set(ids) - known),
        "left_in_spool": callback_spool(db).waiting(),
        "spooled_on_second_look": again,
    }
    print(json.dumps(report, indent=2))
    ok = stored == distinct == EMAILS and not report["missing"] and not report["left_in_spool"] and again == 0
    if not ok:
        raise SystemExit("email bench: messages lost or duplicated")
