"""Live inbox load: web-chat visitors and agents over WebSockets against real `tertulia serve` processes.

`python -m bench inbox`. Scenarios (TERTULIA_BENCH_INBOX, default "sqlite,postgresql"):
- sqlite: one `tertulia serve` on SQLite with the in-process realtime hub (the laptop setup);
- postgresql: `tertulia serve --workers 2` (two processes on one port) on PostgreSQL, with Redis
  for realtime and the queue (the production setup).

Every visitor gets a widget token (POST /widget/{key}/session), opens the widget socket and says
hello; each conversation is then assigned to one agent, round-robin, through the REST API, so every
agent follows VISITORS/AGENTS conversations and, like a real agent without view_all_conversations,
gets only their events. Then every visitor sends messages over its socket at RATE/VISITORS per second
(open loop: the schedule does not wait for the server) for SECONDS seconds. Latency is from just
before the visitor's frame is sent to the moment the assigned agent's socket receives the
message.created event (one process, one clock). After the run, the server's database must hold every
message once; lost = sent but never delivered to the agent, duplicated = delivered twice.

Knobs: TERTULIA_BENCH_VISITORS (200), TERTULIA_BENCH_AGENTS (20), TERTULIA_BENCH_RATE (500 messages/s
in all), TERTULIA_BENCH_SECONDS (20). Targets: at least 500 messages/s, p99 under 250 ms, none lost
or duplicated. The load generator runs on the same machine and competes for its cores.
"""

import os

os.environ.setdefault("TERTULIA_SECRET_KEY", "bench-secret-key")

import asyncio
import json
import random
import resource
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import func, select
from websockets.asyncio.client import ClientConnection, connect

from bench.bench_segments import RESULTS
from tertulia.channels.service import do_create_channel
from tertulia.conversations.models import Conversation, Direction, Message
from tertulia.kit.db import Database
from tertulia.migrations import upgrade
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.users.service import do_add_member, do_create_api_token, do_create_user
from tertulia.users.sessions import SESSION_COOKIE, do_sign_in

VISITORS = int(os.environ.get("TERTULIA_BENCH_VISITORS", "200"))
AGENTS = int(os.environ.get("TERTULIA_BENCH_AGENTS", "20"))
RATE = float(os.environ.get("TERTULIA_BENCH_RATE", "500"))
SECONDS = float(os.environ.get("TERTULIA_BENCH_SECONDS", "20"))
DRAIN_SECONDS = 15.0
SITE = "https://shop.example"
REDIS_URL = os.environ.get("TERTULIA_BENCH_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_ADMIN = os.environ.get("TERTULIA_BENCH_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
DATA = Path(__file__).resolve().parent.parent / "data" / "bench" / "inbox"
PASSWORD = "bench-password"
TARGET_RATE, TARGET_P99_MS = 500.0, 250.0


@dataclass
class Setup:
    url: str
    workspace_id: int
    channel_key: str
    api_token: str
    agent_cookies: list[str]
    agent_ids: list[int]


@dataclass
class Tally:
    sent_at: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    delivered: set[str] = field(default_factory=set)
    duplicates: int = 0
    ack_errors: int = 0
    last_delivery: float = 0.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _prepare(url: str) -> Setup:
    upgrade(url)
    db = Database(url)
    try:
        with db.transaction() as session:
            created = do_create_workspace_with_owner(session, "Bench inbox", "owner@bench.example", PASSWORD)
            workspace_id = created.workspace.id
            owner = Actor(workspace_id=workspace_id, kind="user", user_id=created.owner.id, role=Role.OWNER)
            channel = do_create_channel(session, owner, "webchat", "Web", {"allowed_origins": [SITE]})
            token = do_create_api_token(session, workspace_id, "bench").secret
            agent_ids = []
            for n in range(AGENTS):
                user = do_create_user(session, f"agent{n}@bench.example", PASSWORD, first_name=f"Agent{n}")
                do_add_member(session, workspace_id, user.id, Role.AGENT)
                agent_ids.append(user.id)
            key = channel.key
        cookies = []
        for n in range(AGENTS):
            with db.transaction() as session:
                cookies.append(do_sign_in(session, f"agent{n}@bench.example", PASSWORD, client_ip=None).token)
    finally:
        db.dispose()
    return Setup(url, workspace_id, key, token, cookies, agent_ids)


def _server_env(url: str, realtime: str, queue: str) -> dict[str, str]:
    return {
        **os.environ,
        "TERTULIA_DATABASE_URL": url,
        "TERTULIA_DATA_DIR": str(DATA),
        "TERTULIA_SECRET_KEY": os.environ["TERTULIA_SECRET_KEY"],
        "TERTULIA_REALTIME_URL": realtime,
        "TERTULIA_REALTIME_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
        "TERTULIA_QUEUE_URL": queue,
        "TERTULIA_QUEUE_NAME": f"bench-{uuid.uuid4().hex[:8]}",
        "TERTULIA_LOG_LEVEL": "warning",
        # The bench is one client machine: lift the per-visitor and per-address limits.
        "TERTULIA_WIDGET_MESSAGES_PER_MINUTE": "100000",
        "TERTULIA_WIDGET_SESSIONS_PER_MINUTE": "100000",
        "TERTULIA_WIDGET_CONVERSATIONS_PER_MINUTE": "100000",
        "TERTULIA_WIDGET_SOCKETS_PER_IP": "100000",
        "TERTULIA_API_RATE_LIMIT_PER_MINUTE": "100000",
    }


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextmanager
def _server(env: dict[str, str], workers: int) -> Iterator[tuple[str, list[int]]]:
    port = _free_port()
    command = [sys.executable, "-m", "tertulia", "serve", "--port", str(port), "--workers", str(workers)]
    # The server's output goes to a file, never to a pipe nobody reads while it runs: a full pipe
    # would block the server at its next log line.
    log = Path(env["TERTULIA_DATA_DIR"]) / f"server-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a busy shared machine can take minutes to start two workers
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise SystemExit(log.read_text(errors="replace") or "the server did not start")
            time.sleep(0.2)
        time.sleep(1.0 if workers > 1 else 0.2)  # let every worker process finish starting
        pids = [process.pid, *(_children(process.pid) if workers > 1 else [])]
        yield base, pids
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _frames(connection: ClientConnection) -> Any:
    async for raw in connection:
        yield json.loads(raw)


async def _agent(base_ws: str, cookie: str, tally: Tally, ready: asyncio.Event, count: list[int]) -> None:
    async with connect(f"{base_ws}/ws", additional_headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}) as connection:
        async for frame in _frames(connection):
            if frame.get("type") == "hello":
                count[0] += 1
                if count[0] == AGENTS:
                    ready.set()
                continue
            if frame.get("type") != "message.created":
                continue
            message = frame["data"]["message"]
            text = message.get("text") or ""
            if message.get("direction") != "incoming" or not text.startswith("b "):
                continue
            now = time.perf_counter()
            if text in tally.delivered:
                tally.duplicates += 1
                continue
            tally.delivered.add(text)
            tally.latencies.append(now - tally.sent_at[text])
            tally.last_delivery = now


class VisitorClient:
    def __init__(self, number: int, base: str, key: str) -> None:
        self.number = number
        self.base = base
        self.key = key
        self.connection: ClientConnection | None = None
        self.acked: asyncio.Event = asyncio.Event()

    async def open(self, http: httpx.AsyncClient) -> None:
        response = await http.post(f"{self.base}/widget/{self.key}/session", headers={"Origin": SITE}, json={})
        response.raise_for_status()
        token = response.json()["access_token"]
        ws = self.base.replace("http://", "ws://")
        self.connection = await connect(f"{ws}/widget/ws?key={self.key}", additional_headers={"Origin": SITE})
        await self.connection.send(json.dumps({"type": "auth", "token": token}))
        ready = json.loads(await self.connection.recv())
        assert ready["type"] == "ready", ready

    async def read(self, tally: Tally) -> None:
        assert self.connection is not None
        async for frame in _frames(self.connection):
            if frame.get("type") == "ack":
                self.acked.set()
            elif frame.get("type") == "error":
                tally.ack_errors += 1

    async def say(self, text: str) -> None:
        assert self.connection is not None
        frame = {"type": "message", "text": text, "client_msg_id": uuid.uuid4().hex}
        await self.connection.send(json.dumps(frame))

    async def run(self, tally: Tally, start: float, interval: float, end: float) -> None:
        sequence = 0
        due = start
        while due < end:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            text = f"b {self.number} {sequence}"
            tally.sent_at[text] = time.perf_counter()
            await self.say(text)
            sequence += 1
            due += interval


async def _drive(setup: Setup, base: str) -> dict[str, Any]:
    base_ws = base.replace("http://", "ws://")
    tally = Tally()
    visitors = [VisitorClient(n, base, setup.channel_key) for n in range(VISITORS)]
    async with httpx.AsyncClient(timeout=30) as http:
        for chunk in range(0, VISITORS, 20):
            await asyncio.gather(*(v.open(http) for v in visitors[chunk : chunk + 20]))
        readers = [asyncio.create_task(v.read(tally)) for v in visitors]
        for visitor in visitors:
            await visitor.say(f"hola {visitor.number}")
        await asyncio.wait_for(asyncio.gather(*(v.acked.wait() for v in visitors)), timeout=60)
        # Hand the conversations out to the agents, as a manager (or a workflow) would.
        db = Database(setup.url)
        with db.transaction(write=False) as session:
            conversation_ids = list(
                session.scalars(
                    select(Conversation.id).where(Conversation.workspace_id == setup.workspace_id).order_by("id")
                )
            )
        db.dispose()
        if len(conversation_ids) != VISITORS:
            raise SystemExit(f"expected {VISITORS} conversations, found {len(conversation_ids)}")
        headers = {"Authorization": f"Bearer {setup.api_token}"}
        for index, conversation_id in enumerate(conversation_ids):
            agent_id = setup.agent_ids[index % AGENTS]
            response = await http.post(
                f"{base}/api/v1/conversations/{conversation_id}/assign", headers=headers, json={"user_id": agent_id}
            )
            response.raise_for_status()
    ready = asyncio.Event()
    hellos = [0]
    agents = [asyncio.create_task(_agent(base_ws, cookie, tally, ready, hellos)) for cookie in setup.agent_cookies]
    await asyncio.wait_for(ready.wait(), timeout=30)
    await asyncio.sleep(1.0)  # let assignment events drain before measuring

    interval = VISITORS / RATE
    start = time.perf_counter() + 0.5
    end = start + SECONDS
    senders = [asyncio.create_task(v.run(tally, start + random.uniform(0, interval), interval, end)) for v in visitors]
    await asyncio.gather(*senders)
    sent_done = time.perf_counter()
    while len(tally.delivered) < len(tally.sent_at) and time.perf_counter() - sent_done < DRAIN_SECONDS:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # a late duplicate would show up here
    for task in [*agents, *readers]:
        task.cancel()
    await asyncio.gather(*agents, *readers, return_exceptions=True)
    for visitor in visitors:
        if visitor.connection is not None:
            await visitor.connection.close()
    return _summary(tally, start, sent_done)


def _summary(tally: Tally, start: float, sent_done: float) -> dict[str, Any]:
    latencies = sorted(tally.latencies)

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1) if latencies else 0.0

    elapsed = max(tally.last_delivery, sent_done) - start
    return {
        "sent": len(tally.sent_at),
        "delivered": len(tally.delivered),
        "lost": len(tally.sent_at) - len(tally.delivered),
        "duplicated": tally.duplicates,
        "errors": tally.ack_errors,
        "offered_per_s": round(len(tally.sent_at) / (sent_done - start), 1),
        "delivered_per_s": round(len(tally.delivered) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    }


def _count_in_database(setup: Setup) -> tuple[int, int]:
    db = Database(setup.url)
    try:
        with db.transaction(write=False) as session:
            rows = session.execute(
                select(func.count(), func.count(func.distinct(Message.text))).where(
                    Message.workspace_id == setup.workspace_id,
                    Message.direction == Direction.INCOMING,
                    Message.text.like("b %"),
                )
            ).one()
            return int(rows[0]), int(rows[1])
    finally:
        db.dispose()


def run_scenario(name: str) -> dict[str, Any]:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True, exist_ok=True)
    if name == "sqlite":
        url = f"sqlite:///{DATA / 'inbox.db'}"
        env = _server_env(url, "memory://", f"sqlite:///{DATA / 'queue.db'}")
        workers = 1
    elif name == "postgresql":
        database = "tertulia_bench_inbox"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
        url = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{database}"
        env = _server_env(url, REDIS_URL, REDIS_URL)
        workers = 2
    else:
        raise SystemExit(f"unknown scenario {name}: sqlite or postgresql")
    setup = _prepare(url)
    with _server(env, workers) as (base, pids):
        server_cpu = _cpu_seconds(pids)
        client_cpu = resource.getrusage(resource.RUSAGE_SELF)
        result = asyncio.run(_drive(setup, base))
        server_cpu = _cpu_seconds(pids) - server_cpu
        after = resource.getrusage(resource.RUSAGE_SELF)
    stored, distinct = _count_in_database(setup)
    result.update(
        scenario=name,
        server_processes=workers,
        visitors=VISITORS,
        agents=AGENTS,
        target_rate=RATE,
        seconds=SECONDS,
        stored=stored,
        stored_distinct=distinct,
        server_cpu_ms_per_message=round(server_cpu * 1000 / max(1, result["delivered"]), 2),
        client_cpu_s=round(after.ru_utime + after.ru_stime - client_cpu.ru_utime - client_cpu.ru_stime, 1),
    )
    meets = (
        result["delivered_per_s"] >= TARGET_RATE * 0.98
        and result["p99_ms"] < TARGET_P99_MS
        and result["lost"] == 0
        and result["duplicated"] == 0
        and stored == distinct == result["sent"]
    )
    result["meets_target"] = meets
    return result


def main() -> None:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up; the bench runs without it

        uvloop.install()
    except ImportError:
        pass
    chosen = [s.strip() for s in os.environ.get("TERTULIA_BENCH_INBOX", "sqlite,postgresql").split(",") if s.strip()]
    results = []
    for name in chosen:
        print(
            f"-- {name}: {VISITORS} visitors, {AGENTS} agents, {RATE:.0f} msg/s offered for {SECONDS:.0f} s", flush=True
        )
        result = run_scenario(name)
        results.append(result)
        print(json.dumps(result, indent=2), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "inbox.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
