"""Outgoing webhooks under load, in two parts (TERTULIA_BENCH_WEBHOOKS: "throughput", "kill" or both,
the default "throughput,kill").

**throughput**: how many deliveries a second the webhook path sustains to a local receiver, beside
two baselines measured in the same run against the same receiver:
1. raw HTTP: the same signed bodies POSTed by a plain httpx client on SEND_THREADS threads (the
   ceiling the receiver, HTTP and this machine allow, with no database);
2. the send step alone: `webhooks.delivery.send` (address check, signing, POST) on the delivery
   pool, for rows that are never claimed or recorded;
3. the whole path: a backlog of TERTULIA_BENCH_BACKLOG (3000) `contact.tagged` events, written
   before the workers start, fanned out to 3 endpoints and delivered by TERTULIA_BENCH_WORKERS (2)
   worker processes (the event-log consumer and the delivery loop, as in the kill part).
The rate is the receiver's first receipts per second between 10 % and 90 % of the deliveries (the
start-up and the tail left out), and overall from the start signal to the last one.
TERTULIA_BENCH_PROFILE=1 runs the first worker under cProfile and prints its heaviest functions.

**kill**: events committed at a steady rate, fanned out to 3 endpoints served by a local receiver,
delivered by two worker processes, one of them killed (SIGKILL) halfway and replaced.

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

import cProfile
import io
import multiprocessing
import os
import pstats
import signal
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("TERTULIA_SECRET_KEY", "bench-secret-key")

import json

import httpx
from sqlalchemy import func, select

from bench.databases import DATA, fresh_database_url
from tertulia.contacts.models import Contact
from tertulia.events import dispatcher
from tertulia.events import service as event_log
from tertulia.events.types import EventType
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.permissions import Actor
from tertulia.webhooks import delivery, signing
from tertulia.webhooks import service as webhooks
from tertulia.webhooks.fanout import CONSUMER
from tertulia.webhooks.models import WebhookDelivery

RATE = float(os.environ.get("TERTULIA_BENCH_RATE", "500"))
SECONDS = float(os.environ.get("TERTULIA_BENCH_SECONDS", "10"))
BACKEND = os.environ.get("TERTULIA_BENCH_BACKEND", "postgresql")
DRAIN_SECONDS = float(os.environ.get("TERTULIA_BENCH_DRAIN_SECONDS", "180"))
PARTS = os.environ.get("TERTULIA_BENCH_WEBHOOKS", "throughput,kill").split(",")
BACKLOG = int(os.environ.get("TERTULIA_BENCH_BACKLOG", "3000"))
WORKERS = int(os.environ.get("TERTULIA_BENCH_WORKERS", "2"))
PROFILE = os.environ.get("TERTULIA_BENCH_PROFILE", "") == "1"
BASELINE_REQUESTS = 6000
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
        self.arrivals: list[float] = []  # first receipts' times, in order
        self.baseline = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                now = time.perf_counter()
                message = self.headers.get("webhook-id", "")
                with outer.lock:
                    if self.path.startswith("/baseline"):
                        outer.baseline += 1
                        outer.arrivals.append(now)
                    else:
                        outer.total += 1
                        key = (self.path, message)
                        if key not in outer.first:
                            outer.first[key] = now
                            outer.arrivals.append(now)
                            outer.seq[message] = int(json.loads(body)["data"]["tag"].removeprefix("b"))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # 5 by default: bursts of new connections were reset

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.first.clear()
            self.seq.clear()
            self.arrivals.clear()
            self.total = self.baseline = 0


def worker(url: str, ready: Any) -> None:
    """One worker process: the event-log consumer and the delivery loop, until killed."""
    db = Database(url)
    queue.use_database(db)  # the consumer's handler writes through the tasks' database, as in a worker
    rules = delivery.Policy(allow_private=True, retry_base_seconds=0.5, timeout_seconds=2.0, lease_margin_seconds=3.0)
    ready.set()
    _work(db, rules)


def _work(db: Database, rules: delivery.Policy, profiler: cProfile.Profile | None = None, profile_to: str = "") -> None:
    """A worker's loop, until killed: read the event log, deliver what is due, nap when idle. A
    profiler, if any, is stopped and written to `profile_to` once the worker has been idle for 2 s."""
    idle_since: float | None = None
    while True:
        report = dispatcher.dispatch(db, [CONSUMER], settle_wait=0.02)
        sent = delivery.deliver_until_idle(db, rules, budget_seconds=0.5)
        if sent or report.delivered:
            idle_since = None
            continue
        idle_since = idle_since or time.perf_counter()
        if profiler is not None and time.perf_counter() - idle_since > 2.0:
            profiler.disable()
            profiler.dump_stats(profile_to)
            profiler = None
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


# ----- throughput --------------------------------------------------------------------------------


def _rates(arrivals: list[float], started: float) -> tuple[float, float]:
    """(steady rate between 10 % and 90 % of the arrivals, overall rate from `started`), a second."""
    times = sorted(arrivals)
    if len(times) < 10:
        return 0.0, 0.0
    low, high = int(len(times) * 0.1), int(len(times) * 0.9)
    steady = (high - low) / max(times[high] - times[low], 1e-9)
    return steady, len(times) / max(times[-1] - started, 1e-9)


def _sample_body(n: int) -> bytes:
    """A body of the size and shape the fan-out writes for contact.tagged."""
    return json.dumps(
        {
            "id": f"msg_bench{n}",
            "type": "contact.tag_added",
            "timestamp": datetime.now(UTC).isoformat(),
            "workspace_id": 1,
            "data": {"contact_id": n, "tag": f"b{n}"},
        }
    ).encode()


def _baseline_raw_http(receiver: Receiver) -> tuple[float, float]:
    receiver.reset()
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    client = httpx.Client(
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8), trust_env=False, timeout=5
    )

    def post(n: int) -> str | None:
        body = _sample_body(n)
        headers = {"Content-Type": "application/json", **signing.headers([secret], f"msg_{n}", int(time.time()), body)}
        try:
            client.post(f"{receiver.url}/baseline", content=body, headers=headers).raise_for_status()
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=delivery.SEND_THREADS) as pool:
        failed = [error for error in pool.map(post, range(BASELINE_REQUESTS)) if error]
    client.close()
    if failed:
        print(f"  raw HTTP baseline: {len(failed)} of {BASELINE_REQUESTS} requests failed, first: {failed[0]}")
    with receiver.lock:
        return _rates(receiver.arrivals, started)


def _baseline_send_step(receiver: Receiver) -> tuple[float, float]:
    receiver.reset()
    rules = delivery.Policy(allow_private=True, timeout_seconds=5.0)
    now = datetime.now(UTC)
    claimed = [
        delivery.Claimed(
            id=n,
            endpoint_id=1,
            workspace_id=1,
            message_id=f"msg_{n}",
            body=_sample_body(n).decode(),
            attempt=1,
            first_attempt_at=now,
            url=f"{receiver.url}/baseline",
            secrets=["whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        )
        for n in range(BASELINE_REQUESTS)
    ]
    pool = delivery._resources()[1]  # the delivery loop's own pool and clients
    started = time.perf_counter()
    outcomes = list(pool.map(lambda c: delivery.send(c, rules), claimed))
    failed = [o.error for o in outcomes if not o.ok]
    if failed:
        print(f"  send step baseline: {len(failed)} of {len(claimed)} sends failed, first: {failed[0]}")
    with receiver.lock:
        return _rates(receiver.arrivals, started)


def throughput_worker(url: str, ready: Any, go: Any, profile_to: str | None) -> None:
    """A worker as in the kill part, that starts on a signal and may profile itself."""
    db = Database(url)
    queue.use_database(db)
    rules = delivery.Policy(allow_private=True, retry_base_seconds=0.5, timeout_seconds=5.0)
    profiler = cProfile.Profile() if profile_to else None
    ready.set()
    go.wait()
    if profiler is not None:
        profiler.enable()
    _work(db, rules, profiler, profile_to or "")


def _write_backlog(url: str, workspace_id: int, contacts: list[int], count: int) -> None:
    db = Database(url)
    for start in range(0, count, 500):
        with db.transaction() as session:
            for n in range(start, min(count, start + 500)):
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
    db.dispose()


def throughput() -> None:
    url = _database_url()
    receiver = Receiver()
    raw_steady, raw_overall = _baseline_raw_http(receiver)
    step_steady, step_overall = _baseline_send_step(receiver)
    receiver.reset()
    workspace_id, contacts = _setup(url, receiver)
    _write_backlog(url, workspace_id, contacts, BACKLOG)
    context = multiprocessing.get_context("spawn")
    readiness = [context.Event() for _ in range(WORKERS)]
    go = context.Event()
    profile_to = str(DATA / "webhooks" / "worker.prof") if PROFILE else None
    if profile_to:
        Path(profile_to).parent.mkdir(parents=True, exist_ok=True)
    workers = [
        context.Process(target=throughput_worker, args=(url, ready, go, profile_to if n == 0 else None))
        for n, ready in enumerate(readiness)
    ]
    for process in workers:
        process.start()
    for ready in readiness:
        ready.wait(120)
    expected = BACKLOG * ENDPOINTS
    started = time.perf_counter()
    go.set()
    deadline = started + DRAIN_SECONDS
    while time.perf_counter() < deadline:
        with receiver.lock:
            if len(receiver.first) >= expected:
                break
        time.sleep(0.05)
    time.sleep(3.0 if PROFILE else 0.0)  # the profiled worker writes its figures once idle for 2 s
    for process in workers:
        process.kill()
        process.join()
    with receiver.lock:
        received, total = len(receiver.first), receiver.total
        steady, overall = _rates(receiver.arrivals, started)
    receiver.server.shutdown()
    print(f"{BACKEND}: throughput to one local receiver ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    print(
        f"  raw HTTP baseline ({delivery.SEND_THREADS} threads, no database): {raw_steady:.0f}/s steady, "
        f"{raw_overall:.0f}/s overall, {BASELINE_REQUESTS} requests"
    )
    print(
        f"  send step baseline (delivery.send on the delivery pool, no database): {step_steady:.0f}/s steady, "
        f"{step_overall:.0f}/s overall"
    )
    print(
        f"  webhook path ({WORKERS} workers, backlog {BACKLOG} events x {ENDPOINTS} endpoints): "
        f"{steady:.0f} deliveries/s steady, {overall:.0f}/s overall; received {received} of {expected}, "
        f"duplicates {total - received}",
        flush=True,
    )
    if PROFILE and profile_to and Path(profile_to).exists():
        out = io.StringIO()
        pstats.Stats(profile_to, stream=out).sort_stats("tottime").print_stats(18)
        print(out.getvalue(), flush=True)


# ----- worker killed -----------------------------------------------------------------------------


def main() -> None:
    if "throughput" in PARTS:
        throughput()
    if "kill" in PARTS:
        kill()


def kill() -> None:
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
