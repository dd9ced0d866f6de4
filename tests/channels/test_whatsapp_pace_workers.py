"""The pace holds across processes: two real `tertulia worker` processes (two threads each), the
pace kept in the database (not in Redis), take the same pending WhatsApp messages (each queues every
pending message when it starts, so every message is queued twice) and send them to the local Graph
API. One customer's messages reach Meta about 6 s apart and never twice; a burst to many customers
never passes the number's rate. On PostgreSQL (database and queue) and on SQLite (database, and a
queue file beside it)."""

import itertools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import Contact
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.models import Message
from tertulia.conversations.service import do_send
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.migrations import upgrade
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tests.channels import whatsapp_samples as wa
from tests.channels.whatsapp_graph import TOKEN, FakeGraph, fake_graph
from tests.conftest import drop_postgres_database, fresh_postgres_database, worker_name

ONE_CUSTOMER = "16505551234"
# The pace counts a send when a worker claims it; the fake stamps it when the request arrives, a
# commit and a new HTTPS client later, which on a loaded machine (the whole suite on two shared
# cores) varied by up to half a second. The exact bound is tested with a controllable clock in
# test_whatsapp_outbound.py; here the point is that two processes share one pace: with a pace per
# process, both would send their first four at once (eight in one instant) and both would send to
# the same customer together.
JITTER = timedelta(milliseconds=500)


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(database URL, queue URL) of a fresh, migrated database of this test's own."""
    if request.param == "postgresql":
        name = f"tertulia_test_{worker_name()}_pace"
        url = fresh_postgres_database(name)
        upgrade(url)
        yield url, url
        drop_postgres_database(name)
    else:
        url = f"sqlite:///{tmp_path / 'pace.db'}"
        upgrade(url)
        yield url, f"sqlite:///{tmp_path / 'queue.db'}"


def _messages(database: Database, graph: FakeGraph) -> list[int]:
    """Three messages to one customer and eight to eight others, pending, on a number paced at 4/s."""
    with database.transaction() as session:
        created = do_create_workspace_with_owner(session, "Pace", "owner@pace.example.com", "owner-password")
        owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        config = {
            "phone_number_id": wa.PHONE_NUMBER_ID,
            "business_account_id": wa.BUSINESS_ACCOUNT_ID,
            "api_base_url": graph.base_url,
            "messages_per_second": 4,
        }
        channel = do_create_channel(
            session, owner, "whatsapp", "Ventas", config, {"access_token": TOKEN, "app_secret": wa.APP_SECRET}
        )
        recipients = [ONE_CUSTOMER] * 3 + [f"52155{n:08d}" for n in range(8)]
        # Each customer has just written on the number, so its reply window is open.
        written = do_receive_many(
            session,
            [
                (channel, InboundMessage(sender_id=recipient, provider_message_id=f"wamid.in.{recipient}", text="hola"))
                for recipient in dict.fromkeys(recipients)
            ],
        )
        contacts: dict[str, Contact] = {
            recipient: item.contact for recipient, item in zip(dict.fromkeys(recipients), written, strict=True)
        }
        ids = []
        for index, recipient in enumerate(recipients):
            ids.append(do_send(session, owner, contacts[recipient], channel, text=f"mensaje {index}").id)
    return ids


def test_two_worker_processes_share_one_pace(database_url: tuple[str, str], tmp_path: Path) -> None:
    url, queue_url = database_url
    database = Database(url)
    # The messages are written here but sent only by the workers: nothing is queued in this process.
    queue.huey.immediate = False
    try:
        with fake_graph() as graph:
            ids = _messages(database, graph)
            queue.huey.flush()
            env = {
                **os.environ,
                "TERTULIA_DATABASE_URL": url,
                "TERTULIA_QUEUE_URL": queue_url,
                "TERTULIA_QUEUE_NAME": f"pace-{uuid.uuid4().hex[:8]}",
                # The pace is shared through the database; Redis only carries the workers' realtime
                # events (a separate worker refuses in-process realtime).
                "TERTULIA_REALTIME_URL": "redis://127.0.0.1:6379/0",
                "TERTULIA_REALTIME_PREFIX": f"pace-{uuid.uuid4().hex[:8]}",
                "TERTULIA_DATA_DIR": str(tmp_path),
                "TERTULIA_LOG_LEVEL": "warning",
            }
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "tertulia", "worker", "--workers", "2"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                for _ in range(2)
            ]
            try:
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    with database.transaction(write=False) as session:
                        waiting = session.scalar(
                            select(func.count()).where(Message.id.in_(ids), Message.status == "pending")
                        )
                    if not waiting:
                        break
                    assert all(w.poll() is None for w in workers), "a worker died"
                    time.sleep(0.2)
            finally:
                for worker in workers:
                    worker.terminate()
                for worker in workers:
                    worker.wait(timeout=30)
            sent = graph.sent()
    finally:
        queue.huey.immediate = True
        database.dispose()
    assert not waiting, "messages still pending"
    to_one = [r.at for r in sent if r.body["to"] == ONE_CUSTOMER]
    assert [r.body["text"]["body"] for r in sent if r.body["to"] == ONE_CUSTOMER] == [
        "mensaje 0",
        "mensaje 1",
        "mensaje 2",
    ]
    assert all(later - earlier >= timedelta(seconds=6) - JITTER for earlier, later in itertools.pairwise(to_one))
    assert len(sent) == len(ids)  # queued twice, sent once
    times = sorted(r.at for r in sent)
    offsets = [round((t - times[0]).total_seconds(), 3) for t in times]
    for index, start in enumerate(times):
        assert sum(1 for t in times[index:] if t - start < timedelta(seconds=1) - JITTER) <= 4, offsets
