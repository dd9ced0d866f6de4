"""Outgoing webhooks under load: events committed at a steady rate, fanned out to 3 endpoints served
by a local receiver, delivered by two worker processes, one of them killed (SIGKILL) halfway and
replaced.

`python -m bench webhooks`. Knobs: TERTULIA_BENCH_RATE (events a second, 500),
TERTULIA_BENCH_SECONDS (10), TERTULIA_BENCH_BACKEND (postgresql or sqlite, postgresql),
TERTULIA_BENCH_POSTGRES_ADMIN, TERTULIA_BENCH_DRAIN_SECONDS (how long to wait for the rest, 180).

What runs: the producer (this process) writes `contact.tagged` events with `events.service.emit`,
a batch per 10 ms tick, and notes each event's commit time. Each worker process runs what the
`events.dispatch` and `webhooks.deliver` tasks run, in a loop (the event-log consumer, then the
delivery loop), without the job queue in between: the figures are the webhook path's, not huey's.
The receiver (a thread here, HTTP/1.1 keep-alive) notes when each (endpoint, webhook-id) first
arrives. Reported: events written, deliveries expected (events x 3) and received, lost (expected
but never received) and duplicates (received more than once: the at-least-once price of the kill),
and latency from commit to first receipt (p50, p99, max).

A killed worker may hold the event-log consumer's lease (60 s) and its claimed deliveries' leases
(timeout + margin, 5 s here): the drain phase waits them out. Those waits are in the max latency.
"""

import multiprocessing
import os
import signal
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

os.environ.setdefault("TERTULIA_SECRET_KEY", "bench-secret-key")

import json

from sqlalchemy import func, select

from bench.databases import fresh_database_url
from tertulia.contacts.models import Contact
from tertulia.events import dispatcher
from tertulia.events import service as event_log
from tertulia.events.types import EventType
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.permissions import Actor
from tertulia.webhooks import delivery
from tertulia.webhooks import service as webhooks
from tertulia.webhooks.fanout import CONSUMER
from tertulia.webhooks.models import WebhookDelivery

RATE = float(os.environ.get("TERTULIA_BENCH_RATE", "500"))
SECONDS = float(os.environ.get("TERTULIA_BENCH_SECONDS", "10"))
BACKEND = os.environ.get("TERTULIA_BENCH_BACKEND", "postgresql")
DRAIN_SECONDS = float(os.environ.get("TERTULIA_BENCH_DRAIN_SECONDS", "180"))
ENDPOINTS = 3
CONTACTS = 200
TICK = 0.01


def _database_url() -> str:
    return fresh_database_url(BACKEND, "webhooks")


class Receiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first: dict[tuple[str, str], float] = {}
        self.seq: dict[str, int] = {}
        self.total = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                now = time.perf_counter()
                message = self.headers.get("webhook-id", "")
                with outer.lock:
                    outer.total += 1
                    key = (self.path, message)
                    if key not in outer.first:
                        outer.first[key] = now
                        outer.seq[message] = int(json.loads(body)["data"]["tag"].removeprefix("b"))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def worker(url: str, ready: Any) -> None:
    """One worker process: the event-log consumer and the delivery loop, until killed."""
    db = Database(url)
    queue.use_database(db)  # the consumer's handler writes through the tasks' database, as in a worker
    rules = delivery.Policy(allow_private=True, retry_base_seconds=0.5, timeout_seconds=2.0, lease_margin_seconds=3.0)
    ready.set()
    while True:
        report = dispatcher.dispatch(db, [CONSUMER], settle_wait=0.02)
        sent = delivery.deliver_until_idle(db, rules, budget_seconds=0.5)
        if not sent and not report.delivered:
            time.sleep(0.005)


def _setup(url: str, receiver: Receiver) -> tuple[int, list[int]]:
    db = Database(url)
    with db.transaction() as session:
        created = do_create_workspace_with_owner(session, "Bench", "owner@example.com", "bench-password")
        workspace_id = created.workspace.id
        actor = Actor.system(workspace_id)
        for n in range(ENDPOINTS):
            values = webhooks.check_endpoint_values(
                f"{receiver.url}/e{n}", ["contact.tag_added"], f"endpoint {n}", allow_private=True
            )
            webhooks.do_create_endpoint(session, actor, values)
        contacts = [Contact(workspace_id=workspace_id, first_name=f"C{n}") for n in range(CONTACTS)]
        session.add_all(contacts)
        session.flush()
        ids = [c.id for c in contacts]
    db.dispose()
    return workspace_id, ids


def _produce(url: str, workspace_id: int, contacts: list[int], committed: dict[int, float]) -> int:
    db = Database(url)
    seq = 0
    start = time.perf_counter()
    owed = 0.0
    while (now := time.perf_counter()) - start < SECONDS:
        owed = RATE * (now - start) - seq
        count = int(owed)
        if count > 0:
            batch = list(range(seq, seq + count))
            with db.transaction() as session:
                for n in batch:
                    contact_id = contacts[n % len(contacts)]
                    event_log.emit(
                        session,
                        event_log.Event(
                            EventType.CONTACT_TAGGED,
                            workspace_id,
                            {"contact_id": contact_id, "tag": f"b{n}"},
                            contact_id=contact_id,
                            actor="system",
                        ),
                    )
            at = time.perf_counter()
            for n in batch:
                committed[n] = at
            seq += count
        time.sleep(TICK)
    db.dispose()
    return seq


def main() -> None:
    url = _database_url()
    receiver = Receiver()
    workspace_id, contacts = _setup(url, receiver)
    context = multiprocessing.get_context("spawn")
    readiness = [context.Event() for _ in range(2)]
    workers = [context.Process(target=worker, args=(url, ready), daemon=True) for ready in readiness]
    for process in workers:
        process.start()
    for ready in readiness:  # started processes take seconds to import the app; time starts after
        ready.wait(120)
    committed: dict[int, float] = {}

    def kill_one() -> None:
        time.sleep(SECONDS / 2)
        victim = workers[0]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        readiness.append(context.Event())  # kept referenced until the child has unpickled it
        replacement = context.Process(target=worker, args=(url, readiness[-1]), daemon=True)
        replacement.start()
        workers.append(replacement)

    killer = threading.Thread(target=kill_one)
    killer.start()
    written = _produce(url, workspace_id, contacts, committed)
    killer.join()
    expected = written * ENDPOINTS
    deadline = time.perf_counter() + DRAIN_SECONDS
    while time.perf_counter() < deadline:
        with receiver.lock:
            if len(receiver.first) >= expected:
                break
        time.sleep(0.1)
    db = Database(url)
    settle = time.perf_counter() + 30  # the workers record what they sent (a dead one's rows: after its lease)
    while time.perf_counter() < settle:
        with db.transaction(write=False) as session:
            still_open = session.scalar(select(func.count()).where(WebhookDelivery.state.in_(("pending", "sending"))))
        if not still_open:
            break
        time.sleep(0.2)
    for process in workers:
        if process.is_alive():
            process.kill()
            process.join()
    receiver.server.shutdown()
    with db.transaction(write=False) as session:
        states = dict(
            session.execute(select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)).all()
        )
    db.dispose()
    with receiver.lock:
        latencies = sorted(at - committed[receiver.seq[message]] for (_path, message), at in receiver.first.items())
        received, total = len(receiver.first), receiver.total
    print(
        f"{BACKEND}: {written} events in {SECONDS:g} s ({written / SECONDS:.0f}/s) x {ENDPOINTS} endpoints, "
        f"one of two workers killed at {SECONDS / 2:g} s",
        flush=True,
    )
    print(
        f"deliveries expected {expected}, received {received}, lost {expected - received}, "
        f"duplicates {total - received}; rows by state {states}",
        flush=True,
    )
    if latencies:
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"commit to delivery: p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {latencies[-1] * 1000:.1f} ms",
            flush=True,
        )


if __name__ == "__main__":
    main()
