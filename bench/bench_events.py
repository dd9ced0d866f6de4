"""What the durable event log costs the inbound writer: `do_receive_many` with and without it.

`python -m bench events`. For each database (TERTULIA_BENCH_EVENTS_DBS, default
"sqlite,postgresql"): a workspace with a web-chat channel and SENDERS known senders, then ROUNDS
transactions of one `do_receive_many` batch of 64 messages each (the writer's MAX_BATCH), rounds with
the event log on and off alternating so machine noise hits both alike. "Off" replaces
`events.service.emit` with a no-op for the round: the realtime events are built either way. Reported:
median and p90 wall time per batch, and process CPU per message (the client and, for SQLite, the
database run in this process; PostgreSQL's server CPU is not counted).
"""

import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.databases import fresh_database_url
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.conversations.inbound import do_receive_many
from tertulia.events import service as event_log
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.permissions import Actor

BATCH = 64
SENDERS = int(os.environ.get("TERTULIA_BENCH_EVENTS_SENDERS", "640"))
ROUNDS = int(os.environ.get("TERTULIA_BENCH_EVENTS_ROUNDS", "60"))


def _database(kind: str) -> Database:
    return Database(fresh_database_url(kind, "events"))


def _batch(channel: Channel, round_number: int) -> list[tuple[Channel, InboundMessage]]:
    first = (round_number * BATCH) % SENDERS
    return [
        (
            channel,
            InboundMessage(
                sender_id=f"{channel.id}:v:{(first + n) % SENDERS}",
                provider_message_id=uuid.uuid4().hex,
                text=f"message {n} of round {round_number}",
            ),
        )
        for n in range(BATCH)
    ]


def _run_round(db: Database, channel_id: int, round_number: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    with db.transaction() as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        do_receive_many(session, _batch(channel, round_number))
    return time.perf_counter() - wall, time.process_time() - cpu


def _no_event(_session: Any, _event: Any) -> None:
    pass


def run(kind: str) -> dict[str, dict[str, float]]:
    db = _database(kind)
    with db.transaction() as session:
        created = do_create_workspace_with_owner(session, "Bench", "owner@example.com", "bench-password")
        actor = Actor.system(created.workspace.id)
        channel_id = do_create_channel(session, actor, "webchat", "Web chat", {}).id
    for warm in range(SENDERS // BATCH + 2):  # every sender known, caches warm
        _run_round(db, channel_id, warm)
    real_emit: Callable[..., None] = event_log.emit
    samples: dict[str, list[tuple[float, float]]] = {"with events": [], "without": []}
    try:
        for round_number in range(ROUNDS * 2):
            on = round_number % 2 == 0
            event_log.emit = real_emit if on else _no_event  # type: ignore[assignment]
            samples["with events" if on else "without"].append(_run_round(db, channel_id, 100 + round_number))
    finally:
        event_log.emit = real_emit  # type: ignore[assignment]
    db.dispose()
    result: dict[str, dict[str, float]] = {}
    for mode, rows in samples.items():
        walls = sorted(w for w, _ in rows)
        result[mode] = {
            "batch_median_ms": round(statistics.median(walls) * 1000, 2),
            "batch_p90_ms": round(walls[int(len(walls) * 0.9) - 1] * 1000, 2),
            "cpu_per_message_ms": round(sum(c for _, c in rows) / (len(rows) * BATCH) * 1000, 3),
        }
    return result


def main() -> None:
    for kind in os.environ.get("TERTULIA_BENCH_EVENTS_DBS", "sqlite,postgresql").split(","):
        for mode, figures in run(kind).items():
            print(f"{kind:10} {mode:12} {figures}", flush=True)


if __name__ == "__main__":
    main()
