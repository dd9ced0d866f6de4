"""How long after a message the reports count it, with messages arriving at a steady rate: issue 15's
"rollups within 60 s of the event at 500 messages/s".

`python -m bench rollup_lag`. Knobs: TERTULIA_BENCH_LAG_RATE (messages a second, 500),
TERTULIA_BENCH_LAG_SECONDS (how long they arrive, 30), TERTULIA_BENCH_LAG_SENDERS (different
customers, 5,000: the first message of each opens a conversation), TERTULIA_BENCH_LAG_DBS
(sqlite,postgresql).

This process writes the messages as the inbound writer does (`do_receive_many`, one batch of
rate/10 every 100 ms, on a web-chat channel); a second process runs the event dispatcher for the
reports' consumer alone, as a worker would, and notes the consumer's cursor after every pass. The lag
of a batch is from its commit to the first note of the cursor at or past its last event. Reported:
the messages a second actually written, events written, and the lag's median, p99 and maximum.
"""

import multiprocessing
import os
import statistics
import time
import uuid
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as StopSignal
from typing import Any

os.environ.setdefault("TERTULIA_SECRET_KEY", "bench-secret-key")

from sqlalchemy import func, select

from bench.databases import fresh_database_url
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.conversations.inbound import do_receive_many
from tertulia.events import dispatcher
from tertulia.events.models import EventRecord
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.reports import repository, rollups
from tertulia.users.permissions import Actor

RATE = int(os.environ.get("TERTULIA_BENCH_LAG_RATE", "500"))
SECONDS = int(os.environ.get("TERTULIA_BENCH_LAG_SECONDS", "30"))
SENDERS = int(os.environ.get("TERTULIA_BENCH_LAG_SENDERS", "5000"))
TICK = 0.1
CATCH_UP = 300.0  # seconds the consumer may take after the last message before the run gives up


def _consume(url: str, stop: StopSignal, out: Connection) -> None:
    """The worker's side: dispatch to the reports' consumer until told to stop and caught up."""
    db = Database(url)
    queue.use_database(db)  # the consumer writes through the tasks' database, as in a worker
    notes: list[tuple[float, int]] = []
    while True:
        report = dispatcher.dispatch(db, [rollups.CONSUMER])
        with db.transaction(write=False) as session:
            notes.append((time.time(), repository.cursor_position(session)))
        if stop.is_set() and not report.delivered and not report.unsettled:
            break
        if not report.delivered:
            time.sleep(0.05)
    db.dispose()
    out.send(notes)


def _setup(db: Database) -> int:
    with db.transaction() as session:
        created = do_create_workspace_with_owner(session, "Bench", "owner@example.com", "bench-password")
        workspace_id = created.workspace.id
        return do_create_channel(session, Actor.system(workspace_id), "webchat", "Web chat", {}).id


def _write(db: Database, channel_id: int) -> tuple[list[tuple[float, int]], int, float]:
    """Batches at the rate for SECONDS: (commit time, last event id) of each, messages, seconds."""
    per_tick = max(1, round(RATE * TICK))
    written: list[tuple[float, int]] = []
    messages = 0
    began = time.perf_counter()
    for tick in range(round(SECONDS / TICK)):
        due = began + tick * TICK
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        with db.transaction() as session:
            channel = session.get(Channel, channel_id)
            assert channel is not None
            do_receive_many(
                session,
                [
                    (
                        channel,
                        InboundMessage(
                            sender_id=f"{channel_id}:v:{(messages + n) % SENDERS}",
                            provider_message_id=uuid.uuid4().hex,
                            text="¿tienen envío a domicilio?",
                        ),
                    )
                    for n in range(per_tick)
                ],
            )
        committed = time.time()
        with db.transaction(write=False) as session:
            last = int(session.scalar(select(func.max(EventRecord.id))) or 0)
        written.append((committed, last))
        messages += per_tick
    return written, messages, time.perf_counter() - began


def _lags(written: list[tuple[float, int]], notes: list[tuple[float, int]]) -> list[float]:
    lags: list[float] = []
    index = 0
    for committed, last in written:
        while index < len(notes) and notes[index][1] < last:
            index += 1
        if index == len(notes):
            raise AssertionError(f"the consumer never reached event {last} (its last note: {notes[-1:]})")
        lags.append(max(0.0, notes[index][0] - committed))
    return lags


def run(kind: str) -> dict[str, Any]:
    url = fresh_database_url(kind, "rollup_lag")
    db = Database(url)
    channel_id = _setup(db)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    receiving, sending = context.Pipe(duplex=False)
    consumer = context.Process(target=_consume, args=(url, stop, sending))
    consumer.start()
    time.sleep(3.0)  # the consumer's imports, before the first message
    written, messages, seconds = _write(db, channel_id)
    stop.set()
    if not receiving.poll(CATCH_UP):
        consumer.kill()
        raise AssertionError(f"the consumer did not catch up within {CATCH_UP} s")
    notes: list[tuple[float, int]] = receiving.recv()
    consumer.join()
    with db.transaction(write=False) as session:
        events = int(session.scalar(select(func.count()).select_from(EventRecord)) or 0)
    db.dispose()
    lags = sorted(_lags(written, notes))
    return {
        "messages": messages,
        "messages_per_s": round(messages / seconds),
        "events": events,
        "lag_median_s": round(statistics.median(lags), 2),
        "lag_p99_s": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 2),
        "lag_max_s": round(lags[-1], 2),
        "load": os.getloadavg(),
    }


def main() -> None:
    for kind in os.environ.get("TERTULIA_BENCH_LAG_DBS", "sqlite,postgresql").split(","):
        print(f"{kind:10} {run(kind)}", flush=True)


if __name__ == "__main__":
    main()
