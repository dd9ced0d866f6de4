"""Broadcasts at scale: the dry run and the audience snapshot of a large audience out of N contacts,
and an end-to-end send to a local stand-in of the WhatsApp Cloud API.

`python -m bench broadcast`. TERTULIA_BENCH_CONTACTS picks N (default 1,000,000),
TERTULIA_BENCH_AUDIENCE the audience (default 100,000: the first contacts, tagged for it),
TERTULIA_BENCH_SEND how many of them the end-to-end send reaches (default 5,000: a second broadcast
to a smaller segment), TERTULIA_BENCH_DATABASES ("sqlite,postgresql") which databases run; the
datasets of `bench segments` are built once and reused. The send goes through the real WhatsApp
adapter, the outbox and its pace (the channel set to 1,000 messages a second, so what is measured is
the broadcast's own cost, not Meta's default 80/s), in this process with the queue run inline.
"""

import os

os.environ.setdefault("TERTULIA_SECRET_KEY", "bench-secret-key")

import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from bench.bench_outbound import _arrivals, _busiest_second, _fake_graph
from bench.bench_segments import database_urls, ensure_postgres_database
from bench.dataset import build_dataset
from tertulia.broadcasts import sender, service
from tertulia.broadcasts.models import BroadcastRecipient, RecipientState
from tertulia.channels.message_templates import do_store_templates
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ProviderTemplate
from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import Tag
from tertulia.conversations import outbox
from tertulia.conversations.models import Message
from tertulia.kit import queue
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.text import fold
from tertulia.segments.service import do_create_segment
from tertulia.users.models import Role
from tertulia.users.permissions import Actor

RESULTS = Path(__file__).parent / "results"
PHONE_NUMBER_ID = "106540352242922"


def _tag_first(db: Database, workspace_id: int, name: str, count: int) -> int:
    """Tag the workspace's first `count` contacts (one INSERT ... SELECT); the segment "has tag"."""
    with db.transaction() as session:
        tag = session.scalar(select(Tag).where(Tag.workspace_id == workspace_id, Tag.name_key == fold(name)))
        if tag is None:
            tag = Tag(workspace_id=workspace_id, name=name, name_key=fold(name))
            session.add(tag)
            session.flush()
        tag_id = tag.id
        # Exactly the first `count`, whatever an earlier run with another size tagged.
        first = "SELECT id FROM contacts WHERE workspace_id = :ws ORDER BY id LIMIT :n"
        session.execute(
            text(f"DELETE FROM contact_tags WHERE tag_id = :tag AND contact_id NOT IN ({first})"),
            {"tag": tag_id, "ws": workspace_id, "n": count},
        )
        session.execute(
            text(
                "INSERT INTO contact_tags (contact_id, tag_id, created_at) "
                f"SELECT id, :tag, :now FROM ({first}) AS first WHERE id NOT IN "
                "(SELECT contact_id FROM contact_tags WHERE tag_id = :tag)"
            ),
            {"tag": tag_id, "now": utcnow(), "ws": workspace_id, "n": count},
        )
    return tag_id


def _send_left_over(db: Database, broadcast_id: int) -> None:
    with db.transaction(write=False) as session:
        ids = list(
            session.scalars(
                select(Message.id)
                .join(BroadcastRecipient, BroadcastRecipient.message_id == Message.id)
                .where(BroadcastRecipient.broadcast_id == broadcast_id, Message.status == "pending")
                .order_by(Message.id)
            )
        )
    for start in range(0, len(ids), outbox.SEND_BATCH):
        outbox.process_outbound_batch(db, ids[start : start + outbox.SEND_BATCH])


def _identities(db: Database, workspace_id: int) -> None:
    """A WhatsApp number for every contact that has none (the dataset's contacts have no identity)."""
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO contact_identities (workspace_id, contact_id, channel, external_id, token_generation, "
                "created_at, updated_at) SELECT workspace_id, id, 'whatsapp', '5215' || (10000000 + id), 0, :now, "
                ":now FROM contacts c WHERE workspace_id = :ws AND NOT EXISTS (SELECT 1 FROM contact_identities i "
                "WHERE i.contact_id = c.id AND i.channel = 'whatsapp')"
            ),
            {"now": utcnow(), "ws": workspace_id},
        )
        if session.get_bind().dialect.name == "postgresql":
            # As autovacuum would have by the time a manager sends a broadcast to these contacts.
            session.execute(text("ANALYZE contact_identities"))


def _segment(db: Database, actor: Actor, name: str, tag: str) -> int:
    condition = {"category": "tag", "operator": "has_any_of", "value": [tag]}
    with db.transaction() as session:
        existing = session.scalar(
            text("SELECT id FROM segments WHERE workspace_id = :w AND name = :n"), {"w": actor.workspace_id, "n": name}
        )
        if existing is not None:
            return int(existing)
        return do_create_segment(
            session, actor, name, {"match": "all", "groups": [{"match": "all", "conditions": [condition]}]}
        ).id


def _channel(db: Database, actor: Actor, graph: str) -> Channel:
    with db.transaction() as session:
        channel = do_create_channel(
            session,
            actor,
            "whatsapp",
            f"Bench {time.time():.0f}",
            {
                "phone_number_id": PHONE_NUMBER_ID,
                "business_account_id": "102290129340398",
                "api_base_url": graph,
                "messages_per_second": 1000,
            },
            {"access_token": "EAAG-bench-token", "app_secret": "bench-app-secret"},
        )
        body = [{"type": "BODY", "text": "Hola {{1}}, 20% esta semana."}]
        do_store_templates(
            session, channel, [ProviderTemplate("1", "promo", "es_MX", "MARKETING", "APPROVED", "POSITIONAL", body)]
        )
        session.flush()
        session.expunge(channel)
    return channel


def _broadcast(db: Database, actor: Actor, name: str, segment_id: int, channel_id: int) -> int:
    template = {
        "name": "promo",
        "language": "es_MX",
        "components": [{"type": "body", "parameters": [{"variable": "contact.first_name", "fallback": "cliente"}]}],
    }
    with db.transaction() as session:
        return service.do_create_broadcast(
            session,
            actor,
            service.DraftFields(
                name=name, segment_id=segment_id, channel_id=channel_id, content={"whatsapp": {"template": template}}
            ),
        ).id


def _timed(action: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, round((time.perf_counter() - started) * 1000, 1)


def run_one(name: str, url: str, contacts: int, audience: int, send: int) -> dict[str, Any]:
    if name == "postgresql":
        ensure_postgres_database(url)
    else:
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    info = build_dataset(url, contacts)
    db = Database(url)
    actor = Actor(workspace_id=info.workspace_id, kind="user", user_id=info.owner_id, role=Role.OWNER)
    log = Path(tempfile.mkdtemp(prefix="bench-broadcast-")) / "provider.log"
    result: dict[str, Any] = {"database": name, "contacts": contacts, "audience": audience, "send": send}
    try:
        _tag_first(db, info.workspace_id, "bench-audience", audience)
        _tag_first(db, info.workspace_id, "bench-send", send)
        _identities(db, info.workspace_id)
        big = _segment(db, actor, "Bench audience", "bench-audience")
        small = _segment(db, actor, "Bench send", "bench-send")
        with _fake_graph(log) as graph:
            channel = _channel(db, actor, graph)
            broadcast_id = _broadcast(db, actor, "Bench dry run", big, channel.id)
            with db.transaction() as session:
                item = service.access_broadcast(session, actor, broadcast_id)
                dry, result["dry_run_ms"] = _timed(lambda: service.dry_run(session, actor, item))
                result["dry_run_recipients"] = dry.counts.recipients
                service.do_schedule(session, actor, item, None)
            # The snapshot: the start's INSERT ... SELECT and its exclusion UPDATEs, in one transaction.
            outcome, result["snapshot_ms"] = _timed(lambda: sender.start(db, broadcast_id))
            with db.transaction() as session:
                result["snapshot_rows"] = session.scalar(
                    select(func.count()).where(BroadcastRecipient.broadcast_id == broadcast_id)
                )
                item = service.access_broadcast(session, actor, broadcast_id)
                service.do_stop(session, actor, item)
            result["snapshot_outcome"] = outcome
            # End to end: a broadcast to the smaller segment, sent through the outbox.
            send_id = _broadcast(db, actor, "Bench send", small, channel.id)
            with db.transaction() as session:
                item = service.access_broadcast(session, actor, send_id)
                service.do_schedule(session, actor, item, None)
            queue.huey.immediate = True
            queue.use_database(db)
            started = time.perf_counter()
            try:
                sender.start(db, send_id)
                while True:
                    tick = sender.pump(db, send_id)
                    if tick.state in ("done", "stopped"):
                        break
                    if tick.written == 0:
                        # The inline queue runs no timetable: messages a batch left for later (their
                        # pace) or to retry are sent here, as a worker's scheduler would.
                        _send_left_over(db, send_id)
                        time.sleep(0.05)
            finally:
                queue.huey.immediate = False
                queue.use_database(None)
            seconds = time.perf_counter() - started
            with db.transaction(write=False) as session:
                sent = session.scalar(
                    select(func.count())
                    .select_from(BroadcastRecipient)
                    .join(Message, Message.id == BroadcastRecipient.message_id)
                    .where(BroadcastRecipient.broadcast_id == send_id, Message.status == "sent")
                )
                waiting = session.scalar(
                    select(func.count()).where(
                        BroadcastRecipient.broadcast_id == send_id, BroadcastRecipient.state == RecipientState.WAITING
                    )
                )
            time.sleep(0.5)  # the fake writes its log every 0.2 s
            arrivals = [at for at, _number, _to in _arrivals(log)]
            result.update(
                send_seconds=round(seconds, 2),
                sent=sent,
                still_waiting=waiting,
                provider_received=len(arrivals),
                provider_unique=len({to for _at, _number, to in _arrivals(log)}),
                messages_per_second=round((sent or 0) / seconds, 1) if seconds else None,
                busiest_second=_busiest_second(arrivals),
            )
    finally:
        db.dispose()
    return result


def main() -> None:
    contacts = int(os.environ.get("TERTULIA_BENCH_CONTACTS", "1000000"))
    audience = min(contacts, int(os.environ.get("TERTULIA_BENCH_AUDIENCE", "100000")))
    send = min(audience, int(os.environ.get("TERTULIA_BENCH_SEND", "5000")))
    results = []
    for name, url in database_urls(contacts).items():
        row = run_one(name, url, contacts, audience, send)
        print(json.dumps(row), flush=True)
        results.append(row)
    RESULTS.mkdir(exist_ok=True)
    with contextlib.suppress(OSError):
        (RESULTS / f"broadcast-{contacts}.json").write_text(json.dumps(results, indent=2) + "\n")
