"""Provider callbacks under load: how fast a signed callback is acknowledged, and that none is lost.

`python -m bench callbacks`. One real `tertulia serve` on SQLite with its embedded queue (the laptop
setup). The provider is the web-chat adapter's server callbacks (a site's backend posting its signed-in
users' messages, signed with the channel's identity secret; channels/adapters/webchat.py), the one
production adapter with signed callbacks today. Each callback carries one message from one of USERS
site users; RETRIES of them are sent a second time, as a provider retrying would.

Callbacks are posted open loop (the schedule does not wait for answers) at RATE per second for
SECONDS seconds. Latency is from just before a request is written to its 200 (verify + store +
answer). After the run the queue drains; the database must then hold every message exactly once
and no callback row left waiting.

Knobs: TERTULIA_BENCH_RATE (500 callbacks/s), TERTULIA_BENCH_SECONDS (10), TERTULIA_BENCH_USERS
(50), TERTULIA_BENCH_WORKER (0: the server's embedded queue consumer writes the messages; 1: a
separate `tertulia worker` process does, the server only acknowledges). Target: p99
acknowledgement under 20 ms at 500 callbacks/s. The load generator runs on the same machine and
competes for its cores; CPU figures are the server's and the worker's together.
"""

import os

os.environ.setdefault("TERTULIA_SECRET_KEY", "bench-secret-key")

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import select

from bench.bench_inbox import _cpu_seconds, _server, _server_env
from bench.bench_segments import RESULTS
from tertulia.channels.service import do_create_channel
from tertulia.conversations.ingress.callbacks import callback_spool
from tertulia.conversations.models import Direction, Message
from tertulia.kit.db import Database
from tertulia.migrations import upgrade
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor

RATE = float(os.environ.get("TERTULIA_BENCH_RATE", "500"))
SECONDS = float(os.environ.get("TERTULIA_BENCH_SECONDS", "10"))
USERS = int(os.environ.get("TERTULIA_BENCH_USERS", "50"))
SEPARATE_WORKER = os.environ.get("TERTULIA_BENCH_WORKER", "0") == "1"
RETRIES = 0.02  # the share of callbacks sent twice
DRAIN_SECONDS = 60.0
DATA = Path(__file__).resolve().parent.parent / "data" / "bench" / "callbacks"
TARGET_P99_MS = 20.0


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    sent_ids: set[str] = field(default_factory=set)
    late_starts: int = 0


def _prepare(url: str) -> tuple[str, int, str]:
    upgrade(url)
    db = Database(url)
    try:
        with db.transaction() as session:
            created = do_create_workspace_with_owner(
                session, "Bench callbacks", "owner@bench.example", "bench-password"
            )
            owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
            channel = do_create_channel(session, owner, "webchat", "Site", {"allowed_origins": []})
            found = channel.key, channel.id, str(channel.secrets["identity_secret"])
    finally:
        db.dispose()
    return found


def _body(number: int) -> tuple[str, bytes]:
    message_id = uuid.uuid4().hex
    payload = {"messages": [{"id": message_id, "user_id": f"user-{number % USERS}", "text": f"cb {number}"}]}
    return message_id, json.dumps(payload, separators=(",", ":")).encode()


class _Connections:
    """Keep-alive HTTP/1.1 connections to the server, reused by whichever request is next.

    A hand-written client because httpx's async pool spends milliseconds of the generator's CPU per
    request at these rates: the generator fell behind its own schedule and the figures measured it,
    not the server (the server sat idle while requests waited in the client)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle:
            return self.idle.pop()
        return await asyncio.open_connection(self.host, self.port)

    def give_back(self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append(connection)

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def _exchange(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes) -> int:
    """Send one request, read its whole answer; the status code."""
    reader, writer = connection
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _post(connections: _Connections, request: bytes, tally: Tally) -> None:
    started = time.perf_counter()
    try:
        connection = await connections.take()
        status = await _exchange(connection, request)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        tally.errors += 1
        return
    tally.latencies.append(time.perf_counter() - started)
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    connections.give_back(connection)


def _request(host: str, path: str, body: bytes, signature: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"X-Tertulia-Signature: sha256={signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _sign(secret: str, body: bytes) -> str:
    """What the site's server computes (the adapter's `callback_signature`)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def _load(base: str, key: str, secret: str, tally: Tally) -> float:
    address = httpx.URL(base)
    host, port = str(address.host), int(address.port or 80)
    path = f"/webhooks/{key}"
    total = int(RATE * SECONDS)
    bodies = [_body(n) for n in range(total)]
    retried = set(random.Random(7).sample(range(total), int(total * RETRIES)))
    requests = [_request(f"{host}:{port}", path, body, _sign(secret, body)) for _, body in bodies]
    connections = _Connections(host, port)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter() + 0.2
    try:
        for number, (message_id, _) in enumerate(bodies):
            due = start + number / RATE
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                tally.late_starts += 1
            tally.sent_ids.add(message_id)
            tasks.append(asyncio.create_task(_post(connections, requests[number], tally)))
            if number in retried:
                tasks.append(asyncio.create_task(_post(connections, requests[number], tally)))
        await asyncio.gather(*tasks)
        return time.perf_counter() - start
    finally:
        connections.close()


def _drained(url: str, channel_id: int, sent: set[str]) -> tuple[int, int, int, int]:
    """(stored, distinct stored, missing, callbacks still waiting)."""
    db = Database(url)
    try:
        with db.transaction(write=False) as session:
            ids = list(
                session.scalars(
                    select(Message.provider_message_id).where(
                        Message.channel_id == channel_id, Message.direction == Direction.INCOMING
                    )
                )
            )
        waiting = callback_spool(db).waiting()
    finally:
        db.dispose()
    mine = [i.rsplit(":", 1)[1] for i in ids if i]
    return len(mine), len(set(mine)), len(sent - set(mine)), waiting


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


@contextlib.contextmanager
def _worker(env: dict[str, str]) -> Iterator[list[int]]:
    """A `tertulia worker` process consuming the server's queue (nothing when SEPARATE_WORKER is off)."""
    if not SEPARATE_WORKER:
        yield []
        return
    command = [sys.executable, "-m", "tertulia", "worker", "--workers", "2"]
    log = DATA / "worker.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        # Measured from when it consumes: starting (imports) costs seconds of CPU, not the callbacks.
        deadline = time.monotonic() + 180
        while "Worker started" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(log.read_text(errors="replace") or "the worker did not start")
            time.sleep(0.2)
        yield [process.pid]
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    url = f"sqlite:///{DATA / 'bench.db'}"
    key, channel_id, secret = _prepare(url)
    env = _server_env(url, "memory://", f"sqlite:///{DATA / 'queue.db'}")
    if SEPARATE_WORKER:
        env["TERTULIA_QUEUE_EMBEDDED"] = "false"
    tally = Tally()
    with _server(env, 1) as (base, server_pids), _worker(env) as worker_pids:
        pids = server_pids + worker_pids
        cpu_before = _cpu_seconds(pids)
        elapsed = asyncio.run(_load(base, key, secret, tally))
        cpu_load = _cpu_seconds(pids) - cpu_before
        drain_started = time.perf_counter()
        stored = distinct = missing = waiting = 0
        while time.perf_counter() - drain_started < DRAIN_SECONDS:
            stored, distinct, missing, waiting = _drained(url, channel_id, tally.sent_ids)
            if missing == 0 and waiting == 0:
                break
            time.sleep(0.5)
        drain = time.perf_counter() - drain_started
        cpu_total = _cpu_seconds(pids) - cpu_before
    answered = len(tally.latencies)
    p50, p95, p99 = (_percentile(tally.latencies, q) for q in (0.50, 0.95, 0.99))
    report = {
        "processing": "separate worker process" if SEPARATE_WORKER else "embedded in the server",
        "rate_target": RATE,
        "seconds": SECONDS,
        "callbacks_posted": answered + tally.errors,
        "rate_achieved": round(answered / elapsed, 1),
        "statuses": tally.statuses,
        "transport_errors": tally.errors,
        "late_starts": tally.late_starts,
        "ack_ms": {"p50": round(p50, 2), "p95": round(p95, 2), "p99": round(p99, 2)},
        "ack_max_ms": round(max(tally.latencies) * 1000, 2),
        "ack_mean_ms": round(statistics.mean(tally.latencies) * 1000, 2),
        "messages_sent": len(tally.sent_ids),
        "messages_stored": stored,
        "stored_twice": stored - distinct,
        "missing": missing,
        "callbacks_waiting": waiting,
        "drain_seconds": round(drain, 2),
        "server_cpu_ms_per_callback_during_load": round(cpu_load / max(answered, 1) * 1000, 2),
        "server_cpu_ms_per_callback_total": round(cpu_total / max(answered, 1) * 1000, 2),
    }
    print(json.dumps(report, indent=2))
    ok = p99 < TARGET_P99_MS and missing == 0 and stored == distinct and waiting == 0 and set(tally.statuses) == {200}
    print(
        f"callbacks: {report['rate_achieved']}/s, ack p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms "
        f"(target < {TARGET_P99_MS:.0f}); stored {stored} of {len(tally.sent_ids)} messages, "
        f"{stored - distinct} twice, {missing} missing -> {'OK' if ok else 'MISSED'}",
        flush=True,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "callbacks.json").write_text(json.dumps(report, indent=2))
