"""What each event-log consumer costs per customer's message: the worker's share after writing it.

`python -m bench consumers`. For each database (TERTULIA_BENCH_CONSUMERS_DBS, default
"postgresql,sqlite"): a workspace with AGENTS agents and a web-chat channel; SENDERS customers
write once and their conversations are assigned round-robin to the agents (as in the callbacks
bench, so each message notifies its agent); every consumer is then placed at the log's end, and
MESSAGES more messages are written in batches of 64 (the callback writer's batch). Each consumer
in turn is then fed the whole backlog, as the worker's dispatch task would (reads of 200 events),
and reported: events read, wall time, and this process's CPU per message (the client; SQLite runs
in the process, PostgreSQL's server CPU is not counted). The bot is off on the channel, as on most
channels; no workflow and no webhook endpoint exist, so those consumers measure their cost of
finding nothing to do.
"""

import os
import time
import uuid

from bench.databases import fresh_database_url
from tertulia import consumers
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.models import Conversation
from tertulia.conversations.service import do_assign
from tertulia.events import dispatcher
from tertulia.events import tasks as events_tasks
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.users.service import do_add_member, do_create_user
from tertulia.workflows import tasks as workflows_tasks

BATCH = 64
AGENTS = int(os.environ.get("TERTULIA_BENCH_CONSUMERS_AGENTS", "5"))
SENDERS = int(os.environ.get("TERTULIA_BENCH_CONSUMERS_SENDERS", "50"))
MESSAGES = int(os.environ.get("TERTULIA_BENCH_CONSUMERS_MESSAGES", "5000"))


def _write(db: Database, channel_id: int, senders: list[str]) -> None:
    for start in range(0, len(senders), BATCH):
        with db.transaction() as session:
            channel = session.get(Channel, channel_id)
            assert channel is not None
            do_receive_many(
                session,
                [
                    (channel, InboundMessage(sender_id=sender, provider_message_id=uuid.uuid4().hex, text=f"hola {n}"))
                    for n, sender in enumerate(senders[start : start + BATCH], start)
                ],
            )


def _setup(db: Database) -> int:
    """The channel's id, with every consumer placed after the setup's events."""
    with db.transaction() as session:
        created = do_create_workspace_with_owner(session, "Bench", "owner@example.com", "bench-password")
        workspace_id = created.workspace.id
        owner = Actor(workspace_id=workspace_id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        agents = []
        for n in range(AGENTS):
            agent = do_create_user(session, f"agent{n}@example.com", "bench-password")
            do_add_member(session, workspace_id, agent.id, Role.AGENT)
            agents.append(agent.id)
        channel_id = do_create_channel(session, owner, "webchat", "Web chat", {}).id
    senders = [f"{channel_id}:v:{n}" for n in range(SENDERS)]
    _write(db, channel_id, senders)
    with db.transaction() as session:
        conversations = session.query(Conversation).filter(Conversation.workspace_id == workspace_id).all()
        for n, conversation in enumerate(sorted(conversations, key=lambda c: c.id)):
            do_assign(session, owner, conversation, user_id=agents[n % AGENTS], team_id=None)
    with db.transaction() as session:
        for consumer in dispatcher.registered():
            dispatcher.start_after_written(session, consumer.name)
    return channel_id


def run(kind: str) -> dict[str, dict[str, float]]:
    db = Database(fresh_database_url(kind, "consumers"))
    consumers.install()
    queue.use_database(db)  # the consumers' handlers write through the tasks' database
    result: dict[str, dict[str, float]] = {}
    with events_tasks.nudges_paused(), workflows_tasks.nudges_paused():
        channel_id = _setup(db)
        _write(db, channel_id, [f"{channel_id}:v:{n % SENDERS}" for n in range(MESSAGES)])
        newest = dispatcher.newest_event_id(db)
        for consumer in dispatcher.registered():
            wall, cpu, read = time.perf_counter(), time.process_time(), 0
            while True:
                report = dispatcher.dispatch(db, [consumer], settle_wait=0.5)
                read += report.delivered
                position = {s.name: s.last_event_id for s in dispatcher.consumer_status(db)}[consumer.name]
                if position >= newest:
                    break
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            result[consumer.name] = {
                "events_read": read,
                "wall_s": round(wall, 2),
                "cpu_ms_per_message": round(cpu / MESSAGES * 1000, 3),
                "wall_ms_per_message": round(wall / MESSAGES * 1000, 3),
            }
    queue.use_database(None)
    db.dispose()
    return result


def main() -> None:
    for kind in os.environ.get("TERTULIA_BENCH_CONSUMERS_DBS", "postgresql,sqlite").split(","):
        total_cpu = total_wall = 0.0
        for name, figures in run(kind).items():
            total_cpu += figures["cpu_ms_per_message"]
            total_wall += figures["wall_ms_per_message"]
            print(f"{kind:10} {name:16} {figures}", flush=True)
        print(
            f"{kind:10} {'all':16} cpu {total_cpu:.3f} ms a message, wall {total_wall:.3f} ms a message "
            f"({MESSAGES} messages, {SENDERS} customers, {AGENTS} agents)",
            flush=True,
        )


if __name__ == "__main__":
    main()
