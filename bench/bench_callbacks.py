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
- telegram: Bot API updates (X-Telegram-Bot-Api-Secret-Token), one private-chat text message each;
  Telegram sends no delivery statuses.
- twilio: Twilio's SMS webhook (form-encoded, X-Twilio-Signature over the URL and the sorted
  parameters), one SMS each; no status callbacks.

Backends (TERTULIA_BENCH_BACKEND):
- sqlite (default): one `tertulia serve` with its embedded queue (the laptop setup), or with
  TERTULIA_BENCH_WORKER=1 a separate `tertulia worker` process writing the messages (and Redis
  realtime, which a separate worker needs).
- postgresql: PostgreSQL + Redis (realtime and queue), `tertulia serve --workers 2` and one
  `tertulia worker`.

Other knobs: TERTULIA_BENCH_RATE (500 message callbacks/s), TERTULIA_BENCH_SECONDS (10),
TERTULIA_BENCH_USERS (50), TERTULIA_BENCH_STATUSES (1: status callbacks per message callback,
whatsapp only), TERTULIA_BENCH_AGENTS (5), TERTULIA_BENCH_THREADS (4, a separate worker's threads:
`tertulia worker`'s default). Targets: p99 acknowledgement under 20 ms for web chat at
500/s on SQLite (the message spine), under 50 ms for WhatsApp.

With WhatsApp and Telegram, each customer's conversation exists before the run and is assigned round-robin to one
of AGENTS agents, each signed in with a socket open on /ws; a message's visibility latency is from
just before its callback is written to the moment its assigned agent's socket receives it (target
p99 under 1 s), and every message must reach exactly one socket once. The load generator runs on the same machine and
competes for its cores; CPU figures are the servers' and the worker's together.

The load starts once the event log's consumers have caught up with the events the setup wrote
(`settle_seconds` in the report), as a running installation's would have: a worker that has just
started spends its first seconds on that backlog, and callbacks arriving then wait behind it.
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
from urllib.parse import parse_qsl, urlencode

import httpx
import psycopg
from sqlalchemy import func, select
from websockets.asyncio.client import connect

from bench.bench_inbox import PASSWORD, POSTGRES_ADMIN, REDIS_URL, _cpu_seconds, _frames, _server, _server_env
from bench.bench_segments import RESULTS
from tertulia import consumers
from tertulia.channels.adapters.twilio import signature as twilio_signature
from tertulia.channels.adapters.whatsapp import signature as whatsapp_signature
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, InboundMessage, MessageType
from tertulia.channels.service import do_create_channel
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.ingress.callbacks import callback_spool
from tertulia.conversations.models import Direction, Message, SenderKind
from tertulia.conversations.service import do_assign
from tertulia.events.dispatcher import consumer_status
from tertulia.kit.db import Database
from tertulia.migrations import upgrade
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.users.service import do_add_member, do_create_user
from tertulia.users.sessions import SESSION_COOKIE, do_sign_in

RATE = float(os.environ.get("TERTULIA_BENCH_RATE", "500"))
SECONDS = float(os.environ.get("TERTULIA_BENCH_SECONDS", "10"))
USERS = int(os.environ.get("TERTULIA_BENCH_USERS", "50"))
PROVIDER = os.environ.get("TERTULIA_BENCH_PROVIDER", "webchat")
BACKEND = os.environ.get("TERTULIA_BENCH_BACKEND", "sqlite")
STATUSES = float(os.environ.get("TERTULIA_BENCH_STATUSES", "1")) if PROVIDER == "whatsapp" else 0.0
AGENTS = int(os.environ.get("TERTULIA_BENCH_AGENTS", "5")) if PROVIDER in ("whatsapp", "telegram", "twilio") else 0
# A Redis or PostgreSQL queue is always consumed by a worker process.
SEPARATE_WORKER = os.environ.get("TERTULIA_BENCH_WORKER", "0") == "1" or BACKEND == "postgresql"
THREADS = int(os.environ.get("TERTULIA_BENCH_THREADS", "4"))
WHATSAPP_NUMBER = "106540352242922"
RETRIES = 0.02  # the share of callbacks sent twice
DRAIN_SECONDS = 60.0
DATA = Path(__file__).resolve().parent.parent / "data" / "bench" / "callbacks"
TARGET_P99_MS = 50.0 if PROVIDER in ("whatsapp", "telegram", "twilio") else 20.0
TWILIO_ACCOUNT = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "bench0token0bench0token0bench012"
TWILIO_NUMBER = "+14155550100"
TELEGRAM_SECRET = "bench-telegram-secret"
CONTENT_TYPE = "application/x-www-form-urlencoded" if PROVIDER == "twilio" else "application/json"
TARGET_VISIBLE_P99_MS = 1000.0
SETTLE_SECONDS = 120.0  # at most, for the consumers to catch up before the load
SOCKET_GRACE_SECONDS = 5.0  # after the database holds every message, for the last socket frames


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    redeliveries: int = 0
    sent_ids: set[str] = field(default_factory=set)
    status_ids: set[str] = field(default_factory=set)
    late_starts: int = 0
    posted_at: dict[str, float] = field(default_factory=dict)  # message text -> first post started
    visible_after: dict[str, float] = field(default_factory=dict)  # message text -> seconds to a socket
    shown_twice: int = 0


@dataclass
class Drain:
    """What the database holds once the queue has drained (or DRAIN_SECONDS passed)."""

    stored: int = 0
    distinct: int = 0
    missing: int = 0
    unapplied: int = 0  # status callbacks whose status did not reach the message
    waiting: int = 0  # callbacks still in the spool
    seconds: float = 0.0


@dataclass(frozen=True)
class Setup:
    key: str
    channel_id: int
    signer: Channel  # the channel as stored, to sign callbacks the way its provider does
    outgoing: list[str]  # provider ids of messages we sent, for status callbacks
    agent_cookies: list[str]


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
            elif PROVIDER == "twilio":
                config = {"account_sid": TWILIO_ACCOUNT, "from_number": TWILIO_NUMBER}
                channel = do_create_channel(session, owner, "twilio", "SMS", config, {"auth_token": TWILIO_TOKEN})
            elif PROVIDER == "telegram":
                secrets = {"bot_token": "123456789:AAE" + "b" * 32, "webhook_secret": TELEGRAM_SECRET}
                channel = do_create_channel(session, owner, "telegram", "Telegram", {}, secrets)
            else:
                channel = do_create_channel(session, owner, "webchat", "Site", {"allowed_origins": []})
            session.expunge(channel)
        outgoing, cookies = _seed(db, channel, owner) if AGENTS else ([], [])
    finally:
        db.dispose()
    return Setup(channel.key, channel.id, channel, outgoing, cookies)


def _seed(db: Database, channel: Channel, owner: Actor) -> tuple[list[str], list[str]]:
    """Each customer's conversation, assigned round-robin to AGENTS signed-in agents, and messages we
    sent to them (status `sent`) for the run's status callbacks to move: (their provider ids, the
    agents' session cookies)."""
    count = int(RATE * SECONDS * STATUSES)
    with db.transaction() as session:
        first = [
            (channel, InboundMessage(sender_id=_sender(n), provider_message_id=f"wamid.seed.{n}", text="hola"))
            for n in range(USERS)
        ]
        received = do_receive_many(session, first)
        agents = []
        for n in range(AGENTS):
            user = do_create_user(session, f"agent{n}@bench.example", PASSWORD, first_name=f"Agent{n}")
            do_add_member(session, channel.workspace_id, user.id, Role.AGENT)
            agents.append(user.id)
        for n, item in enumerate(received):
            do_assign(session, owner, item.conversation, user_id=agents[n % AGENTS], team_id=None)
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
    cookies = []
    for n in range(AGENTS):
        with db.transaction() as session:
            cookies.append(do_sign_in(session, f"agent{n}@bench.example", PASSWORD, client_ip=None).token)
    return ids, cookies


def _sender(number: int) -> str:
    """The customer's id on the channel: SMS numbers are E.164 (Spanish mobiles, which phonenumbers
    takes as valid)."""
    return f"+3461{number % USERS:07d}" if PROVIDER == "twilio" else _customer(number)


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
    if PROVIDER == "twilio":
        # twilio.com/docs/messaging/guides/webhook-request: an incoming SMS's parameters.
        sid = f"SM{message_id}"
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": f"cb {number}",
            "FromCountry": "ES",
            "To": TWILIO_NUMBER,
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": TWILIO_ACCOUNT,
            "From": _sender(number),
            "ApiVersion": "2010-04-01",
        }
        return sid, urlencode(params).encode()
    if PROVIDER == "telegram":
        # https://core.telegram.org/bots/api#update and #message: a private chat's id is the user's.
        user = int(_customer(number))
        sender = {"id": user, "is_bot": False, "first_name": f"Cliente {number % USERS}", "language_code": "es"}
        message = {
            "message_id": number + 1,
            "from": sender,
            "chat": {"id": user, "first_name": sender["first_name"], "type": "private"},
            "date": 1764950000,
            "text": f"cb {number}",
        }
        return f"{user}:{number + 1}", _json({"update_id": 800000000 + number, "message": message})
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


def _sign(setup: Setup, body: bytes, url: str = "") -> str:
    """The signing header, as the provider computes it."""
    if PROVIDER == "whatsapp":
        return f"X-Hub-Signature-256: sha256={whatsapp_signature(setup.signer, body)}"
    if PROVIDER == "telegram":
        return f"X-Telegram-Bot-Api-Secret-Token: {TELEGRAM_SECRET}"
    if PROVIDER == "twilio":
        return f"X-Twilio-Signature: {twilio_signature(TWILIO_TOKEN, url, parse_qsl(body.decode()))}"
    secret = str(setup.signer.secrets["identity_secret"])
    return f"X-Tertulia-Signature: sha256={hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}"


class _Connections:
    """Keep-alive HTTP/1.1 connections to the server, reused by whichever request is next.

    A hand-written client because httpx's async pool spends milliseconds of the generator's CPU per
    request at these rates: the generator fell behind its own schedule and the figures measured it,
    not the server (the server sat idle while requests waited in the client). Like httpx, it lets a
    connection idle for KEEP_ALIVE_EXPIRY go instead of reusing one the server may be closing."""

    KEEP_ALIVE_EXPIRY = 4.0  # seconds; the server closes idle connections after 5

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        while self.idle:
            reader, writer, since = self.idle.pop()
            if now - since < self.KEEP_ALIVE_EXPIRY:
                return reader, writer
            writer.close()
        return await self.fresh()

    async def fresh(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    def give_back(self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append((*connection, time.monotonic()))

    def close(self) -> None:
        for _, writer, _ in self.idle:
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
    """Deliver one callback the way a provider does: a delivery that fails in transport (a kept-alive
    connection the server closed as idle just as it was reused) is delivered again at once on a new
    connection, counted as a redelivery, its latency measured from the first attempt."""
    started = time.perf_counter()
    try:
        connection = await connections.take()
        try:
            status = await _exchange(connection, request)
        except (OSError, asyncio.IncompleteReadError):
            connection[1].close()
            tally.redeliveries += 1
            connection = await connections.fresh()
            status = await _exchange(connection, request)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        tally.errors += 1
        return
    tally.latencies.append(time.perf_counter() - started)
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    connections.give_back(connection)


def _request(host: str, path: str, body: bytes, signature_header: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {CONTENT_TYPE}\r\n"
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
    url = f"http://{host}:{port}{path}"
    requests = [_request(f"{host}:{port}", path, body, _sign(setup, body, url)) for _, body in bodies]
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
                tally.posted_at.setdefault(f"cb {number}", time.perf_counter())
            if status_id is not None:
                tally.status_ids.add(status_id)
            tasks.append(asyncio.create_task(_post(connections, request, tally)))
            if number in retried:
                tasks.append(asyncio.create_task(_post(connections, request, tally)))
        await asyncio.gather(*tasks)
        return time.perf_counter() - start
    finally:
        connections.close()


async def _agent(base: str, cookie: str, tally: Tally, ready: asyncio.Event, hellos: list[int]) -> None:
    """One agent's inbox socket: when each customer message first shows on it."""
    base_ws = base.replace("http://", "ws://", 1)
    async with connect(f"{base_ws}/ws", additional_headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}) as socket:
        async for frame in _frames(socket):
            if frame.get("type") == "hello":
                hellos[0] += 1
                if hellos[0] == AGENTS:
                    ready.set()
                continue
            if frame.get("type") != "message.created":
                continue
            text = frame["data"]["message"].get("text") or ""
            if text not in tally.posted_at:
                continue
            if text in tally.visible_after:
                tally.shown_twice += 1
                continue
            tally.visible_after[text] = time.perf_counter() - tally.posted_at[text]


async def _drain_then_grace(url: str, setup: Setup, tally: Tally) -> Drain:
    """Wait (off the event loop) for the database to hold everything, then for the last socket frames."""
    started = time.perf_counter()
    drain = Drain()
    while time.perf_counter() - started < DRAIN_SECONDS:
        counts = await asyncio.to_thread(_drained, url, setup.channel_id, tally)
        drain = Drain(*counts, seconds=time.perf_counter() - started)
        if drain.missing == 0 and drain.unapplied == 0 and drain.waiting == 0:
            break
        await asyncio.sleep(0.5)
    grace_until = time.perf_counter() + SOCKET_GRACE_SECONDS
    while AGENTS and len(tally.visible_after) < len(tally.sent_ids) and time.perf_counter() < grace_until:
        await asyncio.sleep(0.1)
    return drain


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


def _never_shown(tally: Tally) -> int:
    return len(tally.posted_at) - len(tally.visible_after)


def _visible_p99(tally: Tally) -> float:
    return _percentile(list(tally.visible_after.values()), 0.99) if tally.visible_after else float("inf")


def _visibility(tally: Tally) -> dict[str, float] | None:
    if not AGENTS or not tally.visible_after:
        return None
    seen = list(tally.visible_after.values())
    return {f"p{round(q * 100)}": round(_percentile(seen, q), 1) for q in (0.50, 0.95, 0.99)}


def _visibility_line(tally: Tally) -> str:
    if not AGENTS:
        return "no agent sockets"
    shown = _visibility(tally) or {}
    return (
        f"on the agent's socket p50 {shown.get('p50')} ms, p99 {shown.get('p99')} ms (target < "
        f"{TARGET_VISIBLE_P99_MS:.0f}), {_never_shown(tally)} never shown, "
        f"{tally.shown_twice} twice"
    )


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


@contextlib.contextmanager
def _worker(env: dict[str, str], log: Path, enabled: bool = True, threads: int = 2) -> Iterator[list[int]]:
    """A `tertulia worker` process with `threads` threads consuming the server's queue, its output in
    `log` (nothing when not `enabled`)."""
    if not enabled:
        yield []
        return
    command = [sys.executable, "-m", "tertulia", "worker", "--workers", str(threads)]
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
        # A separate worker publishes its events through Redis (it refuses in-process realtime).
        realtime = REDIS_URL if SEPARATE_WORKER else "memory://"
        return url, _server_env(url, realtime, f"sqlite:///{DATA / 'queue.db'}"), 1
    if BACKEND != "postgresql":
        raise SystemExit(f"unknown backend {BACKEND}: sqlite or postgresql")
    name = DATABASE_NAME
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    return url, _server_env(url, REDIS_URL, REDIS_URL), 2


DATABASE_NAME = "tertulia_bench_callbacks"


def _database_backends() -> list[int]:
    """The PostgreSQL server processes serving the bench's database (the server is shared with
    other work: its total CPU would count that too)."""
    if BACKEND != "postgresql":
        return []
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (DATABASE_NAME,)).fetchall()
    return [int(pid) for (pid,) in rows]


@dataclass
class Processes:
    """The processes whose CPU time is counted, by role, and their CPU seconds when the load began."""

    roles: dict[str, list[int]]
    before: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.roles["postgresql"] = _database_backends()
        self.before = self._now()

    def _now(self) -> dict[str, float]:
        now = {role: _cpu_seconds(pids) for role, pids in self.roles.items()}
        now["generator"] = time.process_time()
        return now

    def spent(self) -> dict[str, float]:
        """CPU seconds of each role since `start`; database processes that connected meanwhile count
        from zero."""
        started = set(self.roles.get("postgresql", []))
        joined = [pid for pid in _database_backends() if pid not in started]
        self.roles["postgresql"] = [*self.roles.get("postgresql", []), *joined]
        now = self._now()
        return {role: now[role] - self.before.get(role, 0.0) for role in now}


async def _measure(
    base: str, url: str, setup: Setup, tally: Tally, pids: list[int], processes: Processes
) -> tuple[float, dict[str, float], float, Drain]:
    """The load with the agents' sockets open from before it until the drain is done: (server CPU
    seconds during the load, each role's CPU seconds during the load, load seconds, the drain's
    outcome)."""
    ready, hellos = asyncio.Event(), [0]
    agents = [asyncio.create_task(_agent(base, cookie, tally, ready, hellos)) for cookie in setup.agent_cookies]
    try:
        if agents:
            await asyncio.wait_for(ready.wait(), timeout=30)
        cpu_before = _cpu_seconds(pids)
        await asyncio.to_thread(processes.start)
        elapsed = await _load(base, setup, tally)
        cpu_load = _cpu_seconds(pids) - cpu_before
        by_role = await asyncio.to_thread(processes.spent)
        drain = await _drain_then_grace(url, setup, tally)
    finally:
        for agent in agents:
            agent.cancel()
        await asyncio.gather(*agents, return_exceptions=True)
    return cpu_load, by_role, elapsed, drain


def _settle(url: str) -> float:
    """Seconds until every event-log consumer is past the events written so far (at most
    SETTLE_SECONDS)."""
    consumers.install()
    db = Database(url)
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < SETTLE_SECONDS:
            if all(status.behind == 0 for status in consumer_status(db) if status.registered):
                break
            time.sleep(0.2)
    finally:
        db.dispose()
    return time.perf_counter() - started


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    url, env, web_processes = _database()
    setup = _prepare(url)
    if SEPARATE_WORKER:
        env["TERTULIA_QUEUE_EMBEDDED"] = "false"
    tally = Tally()
    with (
        _server(env, web_processes) as (base, server_pids),
        _worker(env, DATA / "worker.log", SEPARATE_WORKER, THREADS) as worker_pids,
    ):
        pids = server_pids + worker_pids
        settle_seconds = _settle(url)
        cpu_before = _cpu_seconds(pids)
        processes = Processes({"web": server_pids, "worker": worker_pids})
        cpu_load, by_role, elapsed, drain = asyncio.run(_measure(base, url, setup, tally, pids, processes))
        stored, distinct, missing, unapplied, waiting = (
            drain.stored,
            drain.distinct,
            drain.missing,
            drain.unapplied,
            drain.waiting,
        )
        cpu_total = _cpu_seconds(pids) - cpu_before
    answered = len(tally.latencies)
    p50, p95, p99 = (_percentile(tally.latencies, q) for q in (0.50, 0.95, 0.99))
    report = {
        "provider": PROVIDER,
        "worker_threads": THREADS if SEPARATE_WORKER else None,
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
        "redelivered_after_transport_error": tally.redeliveries,
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
        "agents": AGENTS,
        "visible_on_agent_socket_ms": _visibility(tally),
        "not_shown_on_a_socket": _never_shown(tally) if AGENTS else None,
        "shown_twice": tally.shown_twice,
        "settle_seconds": round(settle_seconds, 2),
        "drain_seconds": round(drain.seconds, 2),
        "cpu_ms_per_callback_during_load": round(cpu_load / max(answered, 1) * 1000, 2),
        "cpu_ms_per_callback_total": round(cpu_total / max(answered, 1) * 1000, 2),
        # During the load, by process: robust to the machine's other work, unlike the latencies.
        "cpu_ms_per_callback_during_load_by_process": {
            role: round(seconds / max(answered, 1) * 1000, 3) for role, seconds in by_role.items()
        },
        "load_average": os.getloadavg(),
    }
    print(json.dumps(report, indent=2))
    ok = (
        p99 < TARGET_P99_MS
        and missing == 0
        and unapplied == 0
        and stored == distinct
        and waiting == 0
        and set(tally.statuses) == {200}
        and (
            not AGENTS
            or (_visible_p99(tally) < TARGET_VISIBLE_P99_MS and len(tally.visible_after) == len(tally.posted_at))
        )
        and tally.shown_twice == 0
    )
    print(
        f"callbacks ({PROVIDER}, {BACKEND}): {report['callbacks_per_second_achieved']}/s, ack p50 {p50:.1f} ms, "
        f"p95 {p95:.1f} ms, p99 {p99:.1f} ms (target < {TARGET_P99_MS:.0f}); stored {stored} of "
        f"{len(tally.sent_ids)} messages, {stored - distinct} twice, {missing} missing, {unapplied} statuses "
        f"not applied; {_visibility_line(tally)} -> {'OK' if ok else 'MISSED'}",
        flush=True,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"callbacks-{PROVIDER}-{BACKEND}.json").write_text(json.dumps(report, indent=2))
