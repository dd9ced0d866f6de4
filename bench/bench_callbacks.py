"""Provider callbacks under load: how fast a signed callback is acknowledged, and that none is lost.

`python -m bench callbacks`. Real server processes against a fresh database. Callbacks are posted
open loop (the schedule does not wait for answers) at RATE per second for SECONDS seconds; each
carries one message from one of USERS customers, and RETRIES of them are sent a second time, as a
provider retrying would. Latency is from just before a request is written to its 200 (verify +
store + answer). After the run the queue drains; the database must then hold every message exactly
once, every status applied, and no callback left waiting.

Providers (TERTULIA_BENCH_PROVIDER):
- webchat (default): the web-chat adapter's server callbacks (a site's backend posting its
  signed-in users' messages, signed with the channel's identity secret).
- whatsapp: Meta's WhatsApp callbacks (X-Hub-Signature-256), one message each, plus STATUSES status
  callbacks per message ("delivered" for messages we sent, created before the run), interleaved.

Backends (TERTULIA_BENCH_BACKEND):
- sqlite (default): one `tertulia serve` with its embedded queue (the laptop setup), or with
  TERTULIA_BENCH_WORKER=1 a separate `tertulia worker` process writing the messages.
- postgresql: PostgreSQL + Redis (realtime and queue), `tertulia serve --workers 2` and one
  `tertulia worker`.

Other knobs: TERTULIA_BENCH_RATE (500 message callbacks/s), TERTULIA_BENCH_SECONDS (10),
TERTULIA_BENCH_USERS (50), TERTULIA_BENCH_STATUSES (1: status callbacks per message callback,
whatsapp only). Targets: p99 acknowledgement under 20 ms for web chat at 500/s on SQLite (the
message spine), under 50 ms for WhatsApp. The load generator runs on the same machine and
competes for its cores; CPU figures are the servers' and the worker's together.
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
import psycopg
from sqlalchemy import func, select

from bench.bench_inbox import POSTGRES_ADMIN, REDIS_URL, _cpu_seconds, _server, _server_env
from bench.bench_segments import RESULTS
from tertulia.channels.adapters.whatsapp import signature as whatsapp_signature
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, InboundMessage, MessageType
from tertulia.channels.service import do_create_channel
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.ingress.callbacks import callback_spool
from tertulia.conversations.models import Direction, Message, SenderKind
from tertulia.kit.db import Database
from tertulia.migrations import upgrade
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor

RATE = float(os.environ.get("TERTULIA_BENCH_RATE", "500"))
SECONDS = float(os.environ.get("TERTULIA_BENCH_SECONDS", "10"))
USERS = int(os.environ.get("TERTULIA_BENCH_USERS", "50"))
PROVIDER = os.environ.get("TERTULIA_BENCH_PROVIDER", "webchat")
BACKEND = os.environ.get("TERTULIA_BENCH_BACKEND", "sqlite")
STATUSES = float(os.environ.get("TERTULIA_BENCH_STATUSES", "1")) if PROVIDER == "whatsapp" else 0.0
# A Redis or PostgreSQL queue is always consumed by a worker process.
SEPARATE_WORKER = os.environ.get("TERTULIA_BENCH_WORKER", "0") == "1" or BACKEND == "postgresql"
WHATSAPP_NUMBER = "106540352242922"
RETRIES = 0.02  # the share of callbacks sent twice
DRAIN_SECONDS = 60.0
DATA = Path(__file__).resolve().parent.parent / "data" / "bench" / "callbacks"
TARGET_P99_MS = 50.0 if PROVIDER == "whatsapp" else 20.0


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    sent_ids: set[str] = field(default_factory=set)
    status_ids: set[str] = field(default_factory=set)
    late_starts: int = 0


@dataclass(frozen=True)
class Setup:
    key: str
    channel_id: int
    signer: Channel  # the channel as stored, to sign callbacks the way its provider does
    outgoing: list[str]  # provider ids of messages we sent, for status callbacks


def _prepare(url: str) -> Setup:
    upgrade(url)
    db = Database(url)
    try:
        with db.transaction() as session:
            created = do_create_workspace_with_owner(
                session, "Bench callbacks", "owner@bench.example", "bench-password"
            )
            owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
            if PROVIDER == "whatsapp":
                config = {"phone_number_id": WHATSAPP_NUMBER, "business_account_id": "102290129340398"}
                secrets = {"access_token": "bench-token", "app_secret": "bench-app-secret"}
                channel = do_create_channel(session, owner, "whatsapp", "WhatsApp", config, secrets)
            else:
                channel = do_create_channel(session, owner, "webchat", "Site", {"allowed_origins": []})
            session.expunge(channel)
        outgoing = _sent_messages(db, channel) if STATUSES else []
    finally:
        db.dispose()
    return Setup(channel.key, channel.id, channel, outgoing)


def _sent_messages(db: Database, channel: Channel) -> list[str]:
    """Messages we sent to each customer (status `sent`), for the run's status callbacks to move."""
    count = int(RATE * SECONDS * STATUSES)
    with db.transaction() as session:
        first = [
            (channel, InboundMessage(sender_id=_customer(n), provider_message_id=f"wamid.seed.{n}", text="hola"))
            for n in range(USERS)
        ]
        received = do_receive_many(session, first)
        ids = [f"wamid.out.{n}" for n in range(count)]
        session.add_all(
            Message(
                workspace_id=channel.workspace_id,
                conversation_id=received[n % USERS].conversation.id,
                contact_id=received[n % USERS].contact.id,
                channel_id=channel.id,
                direction=Direction.OUTGOING,
                sender_kind=SenderKind.API,
                type=MessageType.TEXT,
                text="¿Le ayudo en algo más?",
                attachments=[],
                payload={},
                provider_message_id=provider_id,
                status=DeliveryStatus.SENT,
                attempts=1,
            )
            for n, provider_id in enumerate(ids)
        )
    return ids


def _customer(number: int) -> str:
    return f"52155{number % USERS:08d}"


def _json(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _whatsapp_value(**value: object) -> bytes:
    metadata = {"display_phone_number": "15550783881", "phone_number_id": WHATSAPP_NUMBER}
    change = {"value": {"messaging_product": "whatsapp", "metadata": metadata, **value}, "field": "messages"}
    return _json({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [change]}]})


def _body(number: int) -> tuple[str, bytes]:
    """One customer message: its provider id and the callback body."""
    message_id = uuid.uuid4().hex
    if PROVIDER == "whatsapp":
        wamid = f"wamid.{message_id}"
        customer = _customer(number)
        message = {
            "from": customer,
            "id": wamid,
            "timestamp": "1764950000",
            "type": "text",
            "text": {"body": f"cb {number}"},
        }
        contacts = [{"profile": {"name": f"Cliente {number % USERS}"}, "wa_id": customer}]
        return wamid, _whatsapp_value(contacts=contacts, messages=[message])
    payload = {"messages": [{"id": message_id, "user_id": f"user-{number % USERS}", "text": f"cb {number}"}]}
    return message_id, _json(payload)


def _status_body(provider_id: str, number: int) -> bytes:
    status = {"id": provider_id, "status": "delivered", "timestamp": "1764950001", "recipient_id": _customer(number)}
    return _whatsapp_value(statuses=[status])


def _sign(setup: Setup, body: bytes) -> str:
    """The signing header, as the provider computes it."""
    if PROVIDER == "whatsapp":
        return f"X-Hub-Signature-256: sha256={whatsapp_signature(setup.signer, body)}"
    secret = str(setup.signer.secrets["identity_secret"])
    return f"X-Tertulia-Signature: sha256={hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}"


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


def _request(host: str, path: str, body: bytes, signature_header: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{signature_header}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _load(base: str, setup: Setup, tally: Tally) -> float:
    address = httpx.URL(base)
    host, port = str(address.host), int(address.port or 80)
    path = f"/webhooks/{setup.key}"
    total = int(RATE * SECONDS)
    bodies = [_body(n) for n in range(total)]
    retried = set(random.Random(7).sample(range(total), int(total * RETRIES)))
    requests = [_request(f"{host}:{port}", path, body, _sign(setup, body)) for _, body in bodies]
    # Status callbacks, spread evenly between the message callbacks.
    receipts = [
        (n / STATUSES, _request(f"{host}:{port}", path, body, _sign(setup, body)), provider_id)
        for n, provider_id in enumerate(setup.outgoing)
        for body in [_status_body(provider_id, n)]
    ]
    schedule = sorted(
        [(float(n), requests[n], None, n) for n in range(total)] + [(at, r, pid, None) for at, r, pid in receipts],
        key=lambda item: item[0],
    )
    connections = _Connections(host, port)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter() + 0.2
    try:
        for slot, request, status_id, number in schedule:
            due = start + slot / RATE
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                tally.late_starts += 1
            if number is not None:
                tally.sent_ids.add(bodies[number][0])
            if status_id is not None:
                tally.status_ids.add(status_id)
            tasks.append(asyncio.create_task(_post(connections, request, tally)))
            if number in retried:
                tasks.append(asyncio.create_task(_post(connections, request, tally)))
        await asyncio.gather(*tasks)
        return time.perf_counter() - start
    finally:
        connections.close()


def _drained(url: str, channel_id: int, tally: Tally) -> tuple[int, int, int, int, int]:
    """(stored, distinct stored, missing, statuses not applied, callbacks still waiting)."""
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
            delivered = session.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.channel_id == channel_id, Message.status == DeliveryStatus.DELIVERED)
            )
        waiting = callback_spool(db).waiting()
    finally:
        db.dispose()
    # Web chat's provider ids carry the channel and user before the site's own id.
    mine = [i.rsplit(":", 1)[1] if PROVIDER == "webchat" else i for i in ids if i and not i.startswith("wamid.seed.")]
    unapplied = len(tally.status_ids) - int(delivered or 0)
    return len(mine), len(set(mine)), len(tally.sent_ids - set(mine)), unapplied, waiting


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


def _database() -> tuple[str, dict[str, str], int]:
    """(database URL, server environment, web processes) for BACKEND, freshly created."""
    if BACKEND == "sqlite":
        url = f"sqlite:///{DATA / 'bench.db'}"
        return url, _server_env(url, "memory://", f"sqlite:///{DATA / 'queue.db'}"), 1
    if BACKEND != "postgresql":
        raise SystemExit(f"unknown backend {BACKEND}: sqlite or postgresql")
    name = "tertulia_bench_callbacks"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    return url, _server_env(url, REDIS_URL, REDIS_URL), 2


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    url, env, web_processes = _database()
    setup = _prepare(url)
    if SEPARATE_WORKER:
        env["TERTULIA_QUEUE_EMBEDDED"] = "false"
    tally = Tally()
    with _server(env, web_processes) as (base, server_pids), _worker(env) as worker_pids:
        pids = server_pids + worker_pids
        cpu_before = _cpu_seconds(pids)
        elapsed = asyncio.run(_load(base, setup, tally))
        cpu_load = _cpu_seconds(pids) - cpu_before
        drain_started = time.perf_counter()
        stored = distinct = missing = unapplied = waiting = 0
        while time.perf_counter() - drain_started < DRAIN_SECONDS:
            stored, distinct, missing, unapplied, waiting = _drained(url, setup.channel_id, tally)
            if missing == 0 and unapplied == 0 and waiting == 0:
                break
            time.sleep(0.5)
        drain = time.perf_counter() - drain_started
        cpu_total = _cpu_seconds(pids) - cpu_before
    answered = len(tally.latencies)
    p50, p95, p99 = (_percentile(tally.latencies, q) for q in (0.50, 0.95, 0.99))
    report = {
        "provider": PROVIDER,
        "backend": BACKEND,
        "web_processes": web_processes,
        "processing": "separate worker process" if SEPARATE_WORKER else "embedded in the server",
        "message_rate_target": RATE,
        "status_callbacks_per_message": STATUSES,
        "seconds": SECONDS,
        "callbacks_posted": answered + tally.errors,
        "callbacks_per_second_achieved": round(answered / elapsed, 1),
        "http_statuses": tally.statuses,
        "transport_errors": tally.errors,
        "late_starts": tally.late_starts,
        "ack_ms": {"p50": round(p50, 2), "p95": round(p95, 2), "p99": round(p99, 2)},
        "ack_max_ms": round(max(tally.latencies) * 1000, 2),
        "ack_mean_ms": round(statistics.mean(tally.latencies) * 1000, 2),
        "messages_sent": len(tally.sent_ids),
        "messages_stored": stored,
        "stored_twice": stored - distinct,
        "missing": missing,
        "status_callbacks_sent": len(tally.status_ids),
        "statuses_not_applied": unapplied,
        "callbacks_waiting": waiting,
        "drain_seconds": round(drain, 2),
        "cpu_ms_per_callback_during_load": round(cpu_load / max(answered, 1) * 1000, 2),
        "cpu_ms_per_callback_total": round(cpu_total / max(answered, 1) * 1000, 2),
    }
    print(json.dumps(report, indent=2))
    ok = (
        p99 < TARGET_P99_MS
        and missing == 0
        and unapplied == 0
        and stored == distinct
        and waiting == 0
        and set(tally.statuses) == {200}
    )
    print(
        f"callbacks ({PROVIDER}, {BACKEND}): {report['callbacks_per_second_achieved']}/s, ack p50 {p50:.1f} ms, "
        f"p95 {p95:.1f} ms, p99 {p99:.1f} ms (target < {TARGET_P99_MS:.0f}); stored {stored} of "
        f"{len(tally.sent_ids)} messages, {stored - distinct} twice, {missing} missing, {unapplied} statuses "
        f"not applied -> {'OK' if ok else 'MISSED'}",
        flush=True,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"callbacks-{PROVIDER}-{BACKEND}.json").write_text(json.dumps(report, indent=2))
