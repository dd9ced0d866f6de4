"""Outbound WhatsApp messages under load: drained to the provider as fast as its limits allow, never faster.

`python -m bench outbound`. Real server processes against a fresh database and a local stand-in for
the Cloud API's send endpoint (`bench/fake_graph.py`) that logs when each request arrives. Replies
are posted through the REST API open loop at RATE per second for SECONDS seconds, spread over
NUMBERS WhatsApp numbers (channels), each reply to a different customer (so the one-message-per-6-s
per-user pacing does not bind) whose 24-hour window is open. Then the run waits for the provider to
have them all and reports, per number, the most requests in any one-second window (must never pass
the number's limit, LIMIT per second) and the sustained rate (within 10 % of the limit when the limit
is the bottleneck, i.e. when RATE > LIMIT x NUMBERS); every reply must arrive exactly once.

Backends (TERTULIA_BENCH_BACKEND): sqlite (default; one `tertulia serve` with its embedded queue) or
postgresql (PostgreSQL + Redis, `tertulia serve --workers 2` and one `tertulia worker`).
Knobs: TERTULIA_BENCH_RATE (500), TERTULIA_BENCH_SECONDS (10), TERTULIA_BENCH_NUMBERS (1),
TERTULIA_BENCH_LIMIT (80, the per-number limit configured on each channel), TERTULIA_BENCH_MODE
("api", or "drain": RATE x SECONDS replies already pending when the worker starts, a backlog such as a
broadcast leaves, queued by the consumer in batches at start-up; or "count", below), TERTULIA_BENCH_THREADS
(4, the separate worker's threads: `tertulia worker`'s default; sending waits on the provider and the
database, so threads overlap those waits).

"count" measures the work per reply instead of the rate, in one process (CPU time and SQL statements
do not depend on what else shares the machine, which throughput there does): RATE x SECONDS replies
are posted through the API one after the other (the app in process, the queue in memory and not
consumed); then the tasks they queued run in this thread, the sends first (paced ones when due),
the event log's dispatches set aside; then the event log's consumers catch up in one go. Each phase
prints its process CPU and statements per reply. The API's figure includes the in-process test
client's own cost, printed beside it as the CPU of a `GET /healthz`.
"""

import os

os.environ.setdefault("TERTULIA_SECRET_KEY", "bench-secret-key")
if os.environ.get("TERTULIA_BENCH_MODE") == "count":
    # One process: the queue and the realtime hub in memory, the queue run by hand (read at import).
    os.environ["TERTULIA_QUEUE_URL"] = "memory://"
    os.environ["TERTULIA_REALTIME_URL"] = "memory://"
    os.environ.setdefault("TERTULIA_LOG_LEVEL", "warning")

import asyncio
import bisect
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import event

from bench.bench_callbacks import _Connections, _exchange, _percentile, _worker
from bench.bench_inbox import POSTGRES_ADMIN, REDIS_URL, _cpu_seconds, _free_port, _server, _server_env
from bench.bench_segments import RESULTS
from tertulia import consumers
from tertulia.app import create_app
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.service import do_reply
from tertulia.events import dispatcher
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.kit.queue import huey
from tertulia.kit.settings import Settings
from tertulia.migrations import upgrade
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.users.service import do_create_api_token

RATE = float(os.environ.get("TERTULIA_BENCH_RATE", "500"))
SECONDS = float(os.environ.get("TERTULIA_BENCH_SECONDS", "10"))
NUMBERS = int(os.environ.get("TERTULIA_BENCH_NUMBERS", "1"))
LIMIT = int(os.environ.get("TERTULIA_BENCH_LIMIT", "80"))
BACKEND = os.environ.get("TERTULIA_BENCH_BACKEND", "sqlite")
THREADS = int(os.environ.get("TERTULIA_BENCH_THREADS", "4"))
# "api": replies posted through the REST API at RATE; "drain": RATE x SECONDS replies already
# written and pending when the worker starts (a backlog, as a broadcast leaves), drained in batches.
MODE = os.environ.get("TERTULIA_BENCH_MODE", "api")
DATA = Path(__file__).resolve().parent.parent / "data" / "bench" / "outbound"
SEED_BATCH = 500


@dataclass(frozen=True)
class Target:
    conversation_id: int
    customer: str  # the recipient's phone number, as the provider sees it in `to`


@dataclass
class Tally:
    accepted: int = 0
    refused: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    posted_at: dict[str, float] = field(default_factory=dict)  # recipient -> when its reply was posted


def _number(index: int) -> str:
    return f"10654035{index:07d}"


def _customer(index: int) -> str:
    return f"52155{index:08d}"


def _prepare(url: str, graph_base: str) -> tuple[str, list[Target]]:
    """(API token, one target per reply to post), the customers' windows open."""
    upgrade(url)
    db = Database(url)
    total = int(RATE * SECONDS)
    try:
        with db.transaction() as session:
            created = do_create_workspace_with_owner(session, "Bench outbound", "owner@bench.example", "bench-password")
            owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
            token = do_create_api_token(session, created.workspace.id, "bench").secret
            channels = [
                do_create_channel(
                    session,
                    owner,
                    "whatsapp",
                    f"WhatsApp {n}",
                    {
                        "phone_number_id": _number(n),
                        "business_account_id": "102290129340398",
                        "api_base_url": graph_base,
                        "messages_per_second": LIMIT,
                    },
                    {"access_token": "bench-token", "app_secret": "bench-app-secret"},
                )
                for n in range(NUMBERS)
            ]
            for channel in channels:
                session.expunge(channel)
        targets: list[Target] = []
        for start in range(0, total, SEED_BATCH):
            with db.transaction() as session:
                items = [
                    (
                        channels[n % NUMBERS],
                        InboundMessage(sender_id=_customer(n), provider_message_id=f"wamid.seed.{n}", text="hola"),
                    )
                    for n in range(start, min(total, start + SEED_BATCH))
                ]
                received = do_receive_many(session, items)
                if MODE == "drain":
                    for n, item in enumerate(received, start):
                        do_reply(session, owner, item.conversation, text=f"Su pedido {n} va en camino")
                targets += [
                    Target(item.conversation.id, inbound.sender_id)
                    for item, (_, inbound) in zip(received, items, strict=True)
                ]
        # The event log's consumers catch up on the seed (contacts, conversations, customers' messages)
        # here, so the worker's CPU during the run is the replies' alone.
        consumers.install()
        queue.use_database(db)  # the consumers write through the queue's database
        while (report := dispatcher.dispatch(db)).delivered or report.unsettled:
            pass
    finally:
        queue.use_database(None)
        db.dispose()
    return token, targets


def _request(host: str, token: str, target: Target, number: int) -> bytes:
    body = json.dumps({"type": "text", "text": f"Su pedido {number} va en camino"}).encode()
    return (
        f"POST /api/v1/conversations/{target.conversation_id}/messages HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _post(connections: _Connections, request: bytes, target: Target, tally: Tally) -> None:
    started = time.perf_counter()
    tally.posted_at[target.customer] = time.time()
    try:
        connection = await connections.take()
        status = await _exchange(connection, request)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        tally.errors += 1
        return
    connections.give_back(connection)
    tally.latencies.append(time.perf_counter() - started)
    if status == 201:
        tally.accepted += 1
    else:
        tally.refused[status] += 1


async def _load(base: str, token: str, targets: list[Target], tally: Tally) -> None:
    host_port = base.removeprefix("http://")
    host, port = host_port.split(":")
    connections = _Connections(host, int(port))
    requests = [_request(host_port, token, target, n) for n, target in enumerate(targets)]
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter() + 0.2
    try:
        for n, (target, request) in enumerate(zip(targets, requests, strict=True)):
            delay = start + n / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_post(connections, request, target, tally)))
        await asyncio.gather(*tasks)
    finally:
        connections.close()


def _arrivals(log: Path) -> list[tuple[float, str, str]]:
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        at, number, to = line.split(" ")
        rows.append((float(at), number, to))
    return rows


def _busiest_second(times: list[float]) -> int:
    """The most arrivals in any window of one second (windows starting at each arrival)."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered)), default=0)


@contextlib.contextmanager
def _fake_graph(log: Path) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.fake_graph", str(port), str(log)])  # noqa: S603
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the fake Graph API did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _database() -> tuple[str, dict[str, str], int]:
    if BACKEND == "sqlite":
        url = f"sqlite:///{DATA / 'bench.db'}"
        return url, _server_env(url, "memory://", f"sqlite:///{DATA / 'queue.db'}"), 1
    if BACKEND != "postgresql":
        raise SystemExit(f"unknown backend {BACKEND}: sqlite or postgresql")
    name = "tertulia_bench_outbound"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    return url, _server_env(url, REDIS_URL, REDIS_URL), 2


@dataclass
class _Phase:
    """Process CPU and SQL statements from when it starts."""

    statements: list[int]
    cpu: float = field(default_factory=time.process_time)
    first: int = 0

    def __post_init__(self) -> None:
        self.first = self.statements[0]

    def per(self, count: int) -> dict[str, float]:
        return {
            "cpu_ms": round((time.process_time() - self.cpu) * 1000 / count, 2),
            "statements": round((self.statements[0] - self.first) / count, 1),
        }


def _run_queued_sends(expected: int, log: Path, tasks: Counter[str]) -> None:
    """The queue's tasks in this thread, scheduled ones when due, until the provider has `expected`
    requests and nothing waits; the event log's dispatches are counted and set aside."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        task = huey.dequeue()
        if task is None:
            for due in huey.read_schedule(datetime.now(UTC).replace(tzinfo=None)):  # huey keeps naive UTC
                huey.enqueue(due)
            task = huey.dequeue()
        if task is None:
            if len(_arrivals(log)) >= expected and huey.scheduled_count() == 0:
                return
            time.sleep(0.01)
            continue
        tasks[task.name] += 1
        if task.name != "events.dispatch":
            huey.execute(task)
    raise SystemExit("the sends did not finish within 10 minutes")


def count() -> None:
    """TERTULIA_BENCH_MODE=count (the module's docstring)."""
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    log = DATA / "provider.log"
    url, _, _ = _database()
    os.environ["TERTULIA_DATA_DIR"] = str(DATA)
    warm = 20
    with _fake_graph(log) as graph_base:
        token, targets = _prepare(url, graph_base)
        if len(targets) <= warm:
            raise SystemExit(f"count needs more than {warm} replies (TERTULIA_BENCH_RATE x TERTULIA_BENCH_SECONDS)")
        db = Database(url)
        queue.use_database(db)
        statements = [0]

        def counted(*_: object) -> None:
            statements[0] += 1

        event.listen(db.engine, "before_cursor_execute", counted)
        settings = Settings(api_rate_limit_per_minute=1_000_000, presence_sweep_seconds=0, queue_embedded=False)
        headers = {"Authorization": f"Bearer {token}"}
        figures: dict[str, object] = {"backend": BACKEND, "replies": len(targets) - warm, "numbers": NUMBERS}
        with TestClient(create_app(settings, db)) as client:
            for n, target in enumerate(targets):
                if n == warm:
                    health = _Phase(statements)
                    for _ in range(100):
                        client.get("/healthz")
                    figures["healthz_cpu_ms"] = health.per(100)["cpu_ms"]
                    api = _Phase(statements)
                response = client.post(
                    f"/api/v1/conversations/{target.conversation_id}/messages",
                    json={"type": "text", "text": f"Su pedido {n} va en camino"},
                    headers=headers,
                )
                if response.status_code != 201:
                    raise SystemExit(f"reply refused: {response.status_code} {response.text}")
            figures["api"] = api.per(len(targets) - warm)
        tasks: Counter[str] = Counter()
        sends = _Phase(statements)
        _run_queued_sends(len(targets), log, tasks)
        figures["worker_sends"] = sends.per(len(targets))
        figures["tasks"] = dict(tasks)
        events = _Phase(statements)
        while (report := dispatcher.dispatch(db)).delivered or report.unsettled:
            pass
        figures["worker_events"] = events.per(len(targets))
        db.dispose()
    arrivals = _arrivals(log)
    received = Counter(to for _, _, to in arrivals)
    figures["at_provider"] = len(arrivals)
    figures["sent_twice"] = sum(n - 1 for n in received.values() if n > 1)
    print(json.dumps(figures, indent=2))
    print(
        f"outbound count ({BACKEND}): per reply, API {figures['api']} (GET /healthz {figures['healthz_cpu_ms']} ms), "
        f"worker sends {figures['worker_sends']} (tasks {figures['tasks']}), event log {figures['worker_events']}; "
        f"{len(arrivals)} at the provider, {figures['sent_twice']} twice",
        flush=True,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"outbound-count-{BACKEND}.json").write_text(json.dumps(figures, indent=2))


def main() -> None:
    if MODE == "count":
        count()
        return
    load_before = round(os.getloadavg()[0], 2)
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    log = DATA / "provider.log"
    url, env, web_processes = _database()
    separate_worker = BACKEND == "postgresql"
    if separate_worker:
        env["TERTULIA_QUEUE_EMBEDDED"] = "false"
    tally = Tally()
    total = int(RATE * SECONDS)
    bottleneck = LIMIT * NUMBERS
    with _fake_graph(log) as graph_base:
        token, targets = _prepare(url, graph_base)
        with (
            _server(env, web_processes) as (base, web_pids),
            _worker(env, DATA / "worker.log", separate_worker, THREADS) as worker_pids,
        ):
            cpu_before = (_cpu_seconds(web_pids), _cpu_seconds(worker_pids))
            if MODE == "drain":
                # The consumer queues the backlog it finds at start-up; nothing is posted.
                started = time.time()
                tally.accepted = total
                tally.posted_at = {target.customer: started for target in targets}
            else:
                asyncio.run(_load(base, token, targets, tally))
            deadline = time.monotonic() + total / min(bottleneck, RATE) * 1.5 + 60
            while len(_arrivals(log)) < tally.accepted and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(1.0)  # anything sent twice would arrive now
            web_cpu = _cpu_seconds(web_pids) - cpu_before[0]
            worker_cpu = _cpu_seconds(worker_pids) - cpu_before[1]
    arrivals = _arrivals(log)
    per_number: dict[str, list[float]] = defaultdict(list)
    for at, number, _ in arrivals:
        per_number[number].append(at)
    received = Counter(to for _, _, to in arrivals)
    delays = [at - tally.posted_at[to] for at, _, to in arrivals if to in tally.posted_at]
    numbers = {
        number: {
            "received": len(times),
            "busiest_second": _busiest_second(times),
            "sustained_per_second": round((len(times) - 1) / (max(times) - min(times)), 1) if len(times) > 1 else 0.0,
        }
        for number, times in sorted(per_number.items())
    }
    never_above = all(n["busiest_second"] <= LIMIT for n in numbers.values())
    limit_bound = MODE == "drain" or bottleneck < RATE  # a backlog is all there at once
    near_limit = all(float(n["sustained_per_second"]) >= 0.9 * LIMIT for n in numbers.values()) if limit_bound else True
    exactly_once = len(received) == tally.accepted == total and all(count == 1 for count in received.values())
    first_post = min(tally.posted_at.values()) if tally.posted_at else 0.0
    report = {
        "backend": BACKEND,
        "load_average_before": load_before,
        "mode": MODE,
        "drained_per_second": round(len(arrivals) / (max(t for t, _, _ in arrivals) - min(tally.posted_at.values())), 1)
        if arrivals and MODE == "drain"
        else None,
        "web_processes": web_processes,
        "worker_threads": THREADS if separate_worker else None,
        "rate_target": RATE,
        "seconds": SECONDS,
        "numbers": NUMBERS,
        "limit_per_number": LIMIT,
        "replies_posted": total,
        "accepted": tally.accepted,
        "refused": dict(tally.refused),
        "transport_errors": tally.errors,
        "api_ms": {f"p{round(q * 100)}": round(_percentile(tally.latencies, q), 1) for q in (0.5, 0.95, 0.99)}
        if tally.latencies
        else None,
        "at_provider": len(arrivals),
        "sent_twice": sum(count - 1 for count in received.values() if count > 1),
        "per_number": numbers,
        "drain_seconds": round(max(t for t, _, _ in arrivals) - first_post, 1) if arrivals else None,
        # Process CPU over the run (posting and draining) per message at the provider: the figure the
        # shared machine's noise moves least. With one process (SQLite) the worker's is in the web's.
        "cpu_ms_per_message": {
            "web": round(web_cpu * 1000 / max(1, len(arrivals)), 2),
            "worker": round(worker_cpu * 1000 / max(1, len(arrivals)), 2) if separate_worker else None,
        },
        "post_to_provider_s": {f"p{round(q * 100)}": round(_percentile(delays, q) / 1000, 2) for q in (0.5, 0.99)}
        if delays
        else None,
    }
    print(json.dumps(report, indent=2))
    ok = never_above and near_limit and exactly_once
    rates = ", ".join(f"{n['sustained_per_second']}/s (busiest second {n['busiest_second']})" for n in numbers.values())
    print(
        f"outbound ({BACKEND}): {tally.accepted} of {total} accepted, {len(arrivals)} at the provider, "
        f"{report['sent_twice']} twice; per number {rates}, limit {LIMIT:.0f}/s "
        f"{'(the bottleneck)' if limit_bound else '(not the bottleneck)'} -> {'OK' if ok else 'MISSED'}",
        flush=True,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"outbound-{BACKEND}.json").write_text(json.dumps(report, indent=2))
