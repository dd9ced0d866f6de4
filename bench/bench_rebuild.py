"""How fast the reports' data is rebuilt from the event log (`tertulia reports rebuild`), against
the live consumer applying the same events, on SQLite and PostgreSQL.

`python -m bench rebuild`. Knobs: TERTULIA_BENCH_REBUILD_CONVERSATIONS (2,000 by default),
TERTULIA_BENCH_REBUILD_DBS (sqlite,postgresql).

The events are written by the inbox itself on a web-chat channel: per conversation a customer's
message (64 customers per `do_receive_many` batch, as the inbound writer does), an assignment, a
reply of a person, a second message, a second reply and a closing: 8 events of the reports'
types. Then the live consumer applies them (`rollups.apply_events`, 200 a transaction as the
dispatcher delivers them), and the rebuild replays them all (`rebuild.rebuild`, every day, batches of
500), twice. Reported: events, seconds and events a second of each.
"""

import os
import time
import uuid
from typing import Any

os.environ.setdefault("TERTULIA_SECRET_KEY", "bench-secret-key")

from sqlalchemy import func, select

from bench.databases import fresh_database_url
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.conversations import service as inbox
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.models import Conversation
from tertulia.events.models import EventRecord
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.reports import rebuild, rollups
from tertulia.reports.models import ReportItem, Rollup
from tertulia.users.models import Role
from tertulia.users.permissions import Actor

CONVERSATIONS = int(os.environ.get("TERTULIA_BENCH_REBUILD_CONVERSATIONS", "2000"))
BATCH = 64
DELIVERY = 200  # the dispatcher's batch


def _receive(db: Database, channel_id: int, senders: list[str]) -> None:
    with db.transaction() as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        batch = [
            (channel, InboundMessage(sender_id=s, provider_message_id=uuid.uuid4().hex, text="hola")) for s in senders
        ]
        do_receive_many(session, batch)


def _open_conversations(db: Database, channel_id: int) -> list[int]:
    with db.transaction(write=False) as session:
        return list(
            session.scalars(
                select(Conversation.id).where(Conversation.channel_id == channel_id, Conversation.status == "open")
            )
        )


def _work(db: Database, owner: Actor, conversation_ids: list[int], *, close: bool) -> None:
    for conversation_id in conversation_ids:
        with db.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            assert conversation is not None
            if not close:
                inbox.do_assign(session, owner, conversation, user_id=owner.user_id, team_id=None)
            inbox.do_reply(session, owner, conversation, text="buenos días")
            if close:
                inbox.do_close(session, owner, conversation, category_id=None, summary=None)


def _history(db: Database) -> int:
    """The workspace's id, after CONVERSATIONS conversations of 8 events each."""
    with db.transaction() as session:
        created = do_create_workspace_with_owner(session, "Bench", "owner@example.com", "bench-password")
        workspace_id, owner_id = created.workspace.id, created.owner.id
        channel_id = do_create_channel(session, Actor.system(workspace_id), "webchat", "Web chat", {}).id
    owner = Actor(workspace_id=workspace_id, kind="user", user_id=owner_id, role=Role.OWNER)
    for first in range(0, CONVERSATIONS, BATCH):
        senders = [f"{channel_id}:v:{n}" for n in range(first, min(first + BATCH, CONVERSATIONS))]
        _receive(db, channel_id, senders)
        opened = _open_conversations(db, channel_id)
        _work(db, owner, opened, close=False)
        _receive(db, channel_id, senders)
        _work(db, owner, opened, close=True)
    return workspace_id


def _live(db: Database) -> tuple[int, float]:
    with db.transaction(write=False) as session:
        events = list(
            session.scalars(
                select(EventRecord).where(EventRecord.type.in_(sorted(rollups.TYPES))).order_by(EventRecord.id)
            )
        )
    began = time.perf_counter()
    for offset in range(0, len(events), DELIVERY):
        rollups.apply_events(db, events[offset : offset + DELIVERY])
    return len(events), time.perf_counter() - began


def _counts(db: Database, workspace_id: int) -> tuple[int, int]:
    with db.transaction(write=False) as session:
        rows = session.scalar(select(func.count()).select_from(Rollup).where(Rollup.workspace_id == workspace_id))
        items = session.scalar(
            select(func.count()).select_from(ReportItem).where(ReportItem.workspace_id == workspace_id)
        )
        return int(rows or 0), int(items or 0)


def run(kind: str) -> dict[str, Any]:
    db = Database(fresh_database_url(kind, "rebuild"))
    began = time.perf_counter()
    workspace_id = _history(db)
    generated = time.perf_counter() - began
    events, live_seconds = _live(db)
    live_counts = _counts(db, workspace_id)
    result: dict[str, Any] = {
        "conversations": CONVERSATIONS,
        "events": events,
        "generate_s": round(generated, 1),
        "live_s": round(live_seconds, 2),
        "live_events_per_s": round(events / live_seconds),
        "rollup_rows": live_counts[0],
        "items": live_counts[1],
    }
    for attempt in (1, 2):
        summary = rebuild.rebuild(db, workspace_id, retention_days=100_000)
        assert _counts(db, workspace_id) == live_counts
        result[f"rebuild_{attempt}_s"] = round(summary.seconds, 2)
        result[f"rebuild_{attempt}_events_per_s"] = round(summary.replayed / summary.seconds)
    db.dispose()
    return result


def main() -> None:
    for kind in os.environ.get("TERTULIA_BENCH_REBUILD_DBS", "sqlite,postgresql").split(","):
        print(f"{kind:10} {run(kind)}", flush=True)


if __name__ == "__main__":
    main()
