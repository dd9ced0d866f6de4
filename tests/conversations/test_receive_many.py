"""Inbound messages in batches: the group-commit writer and `do_receive_many` keep one message per
provider id, keep order, and never let one bad message cost another its place."""

import asyncio
import threading
import time

from sqlalchemy import func, select

from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.models import Conversation, Message
from tertulia.conversations.receiver import InboundWriter
from tertulia.kit.db import Database
from tertulia.kit.errors import ValidationFailed
from tests.conftest import Tenant
from tests.conversations.support import make_webchat


def _inbound(channel: Channel, sender: str, provider_id: str | None, text: str) -> InboundMessage:
    return InboundMessage(sender_id=f"{channel.id}:v:{sender}", provider_message_id=provider_id, text=text)


def test_a_batch_dedupes_within_itself_and_against_what_is_stored(db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    with db.transaction() as session:
        fresh = session.get(Channel, channel.id)
        assert fresh is not None
        do_receive_many(session, [(fresh, _inbound(fresh, "ana", "p1", "uno"))])
    with db.transaction() as session:
        fresh = session.get(Channel, channel.id)
        assert fresh is not None
        results = do_receive_many(
            session,
            [
                (fresh, _inbound(fresh, "ana", "p1", "uno")),  # stored before
                (fresh, _inbound(fresh, "ana", "p2", "dos")),
                (fresh, _inbound(fresh, "luis", "p3", "hola")),  # a new contact
                (fresh, _inbound(fresh, "ana", "p2", "dos")),  # repeated in this batch
                (fresh, _inbound(fresh, "ana", None, "sin id")),  # no provider id: never a duplicate
            ],
        )
        summary = [(r.message.text, r.duplicate) for r in results]
        ids = [r.message.id for r in results]
        contacts = [r.contact.id for r in results]
    assert summary == [("uno", True), ("dos", False), ("hola", False), ("dos", True), ("sin id", False)]
    assert ids[1] == ids[3]
    assert contacts[0] == contacts[1] == contacts[4] != contacts[2]
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 4
        assert session.scalar(select(func.count()).select_from(Conversation)) == 2
        ana = session.scalar(select(Conversation).where(Conversation.contact_id == contacts[0]))
        assert ana is not None
        assert ana.last_message_preview == "sin id"


def test_the_writer_keeps_good_messages_when_one_in_the_batch_fails(db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    writer = InboundWriter(db, threads=3)

    async def send_all() -> list[object]:
        jobs = [writer.receive(channel.id, _inbound(channel, f"v{n % 7}", f"m{n}", f"texto {n}")) for n in range(60)]
        # A message for a channel that does not exist fails inside a batch, not before it.
        jobs.insert(30, writer.receive(channel.id + 999, _inbound(channel, "x", "bad", "perdido")))
        return await asyncio.gather(*jobs, return_exceptions=True)

    try:
        outcomes = asyncio.run(send_all())
    finally:
        writer.stop()
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failures) == 1
    with db.transaction(write=False) as session:
        texts = set(session.scalars(select(Message.text)))
    assert texts == {f"texto {n}" for n in range(60)}


def test_the_writer_refuses_an_empty_message_before_queueing_it(db: Database, tenant: Tenant) -> None:
    channel = make_webchat(db, tenant)
    writer = InboundWriter(db)
    try:
        raised = asyncio.run(_expect_error(writer.receive(channel.id, _inbound(channel, "a", "e1", "  "))))
    finally:
        writer.stop()
    assert isinstance(raised, ValidationFailed)


async def _expect_error(job: "asyncio.Future[object] | object") -> BaseException | None:
    try:
        await job  # type: ignore[misc]
    except BaseException as exc:
        return exc
    return None


def test_a_writer_lingers_for_more_only_while_messages_come_in_together(db: Database) -> None:
    """After a batch of several, the next batch waits up to the linger for a message that comes a
    moment later; after a lone message, the next is written at once (the inbox is quiet)."""
    writer = InboundWriter(db, linger_seconds=0.5)

    def later(item: object) -> None:
        time.sleep(0.1)
        writer._queue.put(item)

    def batch_with_a_latecomer(last_batch_size: int) -> int:
        writer._last_batch_size = last_batch_size
        writer._queue.put("first")
        latecomer = threading.Thread(target=later, args=("second",))
        latecomer.start()
        batch, stopped = writer._next_batch()
        latecomer.join()
        assert not stopped
        size = len(batch)
        while len(batch) < 2:  # the latecomer that missed the batch
            batch.append(writer._queue.get(timeout=1))
        return size

    assert batch_with_a_latecomer(last_batch_size=3) == 2
    assert batch_with_a_latecomer(last_batch_size=1) == 1
    writer._last_batch_size = 5
    for item in ("a", "b", "c"):
        writer._queue.put(item)
    started = time.monotonic()
    assert writer._next_batch() == (["a", "b", "c"], False)
    assert 0.4 < time.monotonic() - started < 2  # waited for the linger: fewer than max_batch came
