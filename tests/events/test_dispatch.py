"""Delivering the log: at least once, in order per conversation, a failing consumer retried without
holding the others back, its lag visible, and nothing read past a transaction still in flight."""

import random
import threading
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from tertulia.cli import app as cli
from tertulia.events import dispatcher
from tertulia.events.dispatcher import Consumer, Delivery
from tertulia.events.models import ConsumerPosition, EventRecord
from tertulia.events.service import Event, emit, write_pending
from tertulia.events.types import EventType
from tertulia.kit import db as kit_db
from tertulia.kit import settings as kit_settings
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.events.support import Recorder, all_events, event, registered, write_events

pytestmark = pytest.mark.usefixtures("no_background_work")


def test_each_consumer_gets_every_event_once_in_order(db: Database) -> None:
    first, second = Recorder("first"), Recorder("second")
    ids = write_events(db, 5) + write_events(db, 3)
    report = dispatcher.dispatch(db, [first.consumer(), second.consumer()])
    assert report.delivered == 16
    assert first.ids == second.ids == ids
    more = write_events(db, 2)
    dispatcher.dispatch(db, [first.consumer(), second.consumer()])
    assert first.ids == second.ids == ids + more


def test_a_consumer_is_given_only_its_types(db: Database) -> None:
    with db.transaction() as session:
        emit(session, event(n=1))
        emit(session, Event(EventType.CONTACT_CREATED, 1, {"contact_id": 1}))
    picky = Recorder("picky")
    dispatcher.dispatch(db, [picky.consumer(types=frozenset({EventType.CONTACT_CREATED}))])
    assert [e.type for e in picky.seen] == ["contact.created"]
    status = {s.name: s for s in dispatcher.consumer_status(db)}
    assert status["picky"].last_event_id == all_events(db)[-1].id


def test_a_consumer_with_none_of_its_types_ahead_moves_on_unless_leased(db: Database) -> None:
    picky = Recorder("picky")
    consumer = picky.consumer(types=frozenset({EventType.CONTACT_CREATED}))
    with db.transaction() as session:
        emit(session, Event(EventType.CONTACT_CREATED, 1, {"contact_id": 1}))
    dispatcher.dispatch(db, [consumer])
    assert len(picky.seen) == 1
    # Only types it ignores now: its position moves to the newest, no lease taken, nothing handled.
    ignored = write_events(db, 3)
    report = dispatcher.dispatch(db, [consumer])
    assert report.deliveries == []
    assert len(picky.seen) == 1
    assert {s.name: s.last_event_id for s in dispatcher.consumer_status(db)}["picky"] == ignored[-1]
    # Held by another dispatcher: left where it is, for the lease holder to move.
    write_events(db, 2)
    with db.transaction() as session:
        session.execute(
            update(ConsumerPosition)
            .where(ConsumerPosition.name == "picky")
            .values(lease_owner="elsewhere", lease_until=utcnow() + timedelta(seconds=60))
        )
    dispatcher.dispatch(db, [consumer])
    assert {s.name: s.last_event_id for s in dispatcher.consumer_status(db)}["picky"] == ignored[-1]
    # One of its types among the ignored ones: delivered, not skipped over.
    with db.transaction() as session:
        session.execute(update(ConsumerPosition).values(lease_owner=None, lease_until=None))
        emit(session, Event(EventType.CONTACT_CREATED, 1, {"contact_id": 2}))
    write_events(db, 2)
    dispatcher.dispatch(db, [consumer])
    assert [e.payload["contact_id"] for e in picky.seen] == [1, 2]
    assert {s.name: s.last_event_id for s in dispatcher.consumer_status(db)}["picky"] == all_events(db)[-1].id


def _when_due(db: Database, consumers: list[Consumer], name: str) -> Delivery:
    """Dispatch until `name` is leased again (its retry time has come): its delivery."""
    deadline = time.monotonic() + 15
    while True:
        delivery = next(d for d in dispatcher.dispatch(db, consumers).deliveries if d.consumer == name)
        if delivery.leased:
            return delivery
        assert time.monotonic() < deadline, f"{name} was never retried"
        time.sleep(0.05)


def test_a_failing_consumer_is_retried_with_backoff_and_blocks_no_other(db: Database) -> None:
    # A retry second long enough that the dispatch below comes before it, even on a loaded machine.
    flaky, steady = Recorder("flaky", fail_times=2), Recorder("steady")
    consumers = [flaky.consumer(retry_base_seconds=1.0), steady.consumer()]
    ids = write_events(db, 3)
    report = dispatcher.dispatch(db, consumers)
    assert steady.ids == ids
    assert flaky.ids == []
    failed = next(d for d in report.deliveries if d.consumer == "flaky")
    assert failed.error == f"RuntimeError: boom at {ids[0]}"
    assert failed.retry_in == 1.0
    with registered(*consumers):
        status = {s.name: s for s in dispatcher.consumer_status(db)}
    assert status["flaky"].behind == 3
    assert status["flaky"].attempts == 1
    assert status["flaky"].last_error == f"RuntimeError: boom at {ids[0]}"
    assert status["flaky"].retry_at is not None
    assert status["steady"].behind == 0
    assert status["steady"].last_error is None

    # Before its retry time nobody feeds it, even when new events arrive for the others.
    later = write_events(db, 1)
    early = next(d for d in dispatcher.dispatch(db, consumers).deliveries if d.consumer == "flaky")
    assert not early.leased
    assert flaky.ids == []
    assert steady.ids == ids + later
    second = _when_due(db, consumers, "flaky")
    assert second.retry_in == 2.0  # doubled
    _when_due(db, consumers, "flaky")
    assert flaky.ids == ids + later
    with registered(*consumers):
        recovered = {s.name: s for s in dispatcher.consumer_status(db)}["flaky"]
    assert (recovered.behind, recovered.attempts, recovered.last_error, recovered.retry_at) == (0, 0, None, None)


def test_a_failure_mid_batch_keeps_what_was_handled(db: Database) -> None:
    ids = write_events(db, 4)
    seen: list[int] = []

    def handle(record: EventRecord) -> None:
        if record.id == ids[2] and ids[2] not in seen:
            seen.append(record.id)
            raise RuntimeError("third one")
        seen.append(record.id)

    consumer = dispatcher.Consumer("mid", handle, retry_base_seconds=0.01)
    dispatcher.dispatch(db, [consumer])
    status = {s.name: s for s in dispatcher.consumer_status(db)}
    assert status["mid"].last_event_id == ids[1]
    time.sleep(0.02)
    dispatcher.dispatch(db, [consumer])
    assert seen == [ids[0], ids[1], ids[2], ids[2], ids[3]]


def test_a_batch_handler_takes_each_read_whole(db: Database) -> None:
    ids = write_events(db, dispatcher.BATCH_SIZE + 3)
    batches: list[list[int]] = []
    single = Recorder("whole")
    consumer = dispatcher.Consumer(
        "whole", single.handle, handle_batch=lambda rows: batches.append([row.id for row in rows])
    )
    report = dispatcher.dispatch(db, [consumer])
    assert report.delivered == len(ids)
    assert batches == [ids[: dispatcher.BATCH_SIZE], ids[dispatcher.BATCH_SIZE :]]
    assert single.ids == []
    assert {s.name: s for s in dispatcher.consumer_status(db)}["whole"].last_event_id == ids[-1]


def test_a_failing_batch_is_handled_again_one_event_at_a_time(db: Database) -> None:
    """The batch handler is all or nothing; when it raises, the events go through `handle` one by
    one, so those before the bad one count as handled and only the bad one waits for its retry."""
    ids = write_events(db, 5)
    seen: list[int] = []

    def handle_batch(rows: list[EventRecord]) -> None:
        raise RuntimeError("one of these is bad")

    def handle(record: EventRecord) -> None:
        if record.id == ids[3] and ids[3] not in seen:
            seen.append(record.id)
            raise RuntimeError("fourth one")
        seen.append(record.id)

    consumer = dispatcher.Consumer("split", handle, retry_base_seconds=0.01, handle_batch=handle_batch)
    report = dispatcher.dispatch(db, [consumer])
    assert (report.delivered, report.deliveries[0].error) == (3, "RuntimeError: fourth one")
    assert {s.name: s for s in dispatcher.consumer_status(db)}["split"].last_event_id == ids[2]
    time.sleep(0.02)
    dispatcher.dispatch(db, [consumer])  # ids[3] and ids[4]: a batch again, which fails again
    assert seen == [ids[0], ids[1], ids[2], ids[3], ids[3], ids[4]]
    assert {s.name: s for s in dispatcher.consumer_status(db)}["split"].last_event_id == ids[4]


def test_a_transaction_in_flight_holds_back_the_later_ids_not_lose_its_own(db: Database) -> None:
    """The commit-order gap: a lower id committed after a higher one is still delivered, first."""
    if db.dialect == "sqlite":
        pytest.skip("SQLite has one writer at a time: ids become visible in commit order, no gap")
    consumer = Recorder("gap")
    slow = db.session()
    try:
        emit(slow, event(n="slow"))
        write_pending(slow)  # its id is taken, not yet visible
        fast = write_events(db, 1)
        dispatcher.dispatch(db, [consumer.consumer()], settle_wait=0.05)
        assert consumer.ids == []  # not past the slow transaction's id
        slow.commit()
    finally:
        slow.close()
    dispatcher.dispatch(db, [consumer.consumer()])
    assert [e.payload["n"] for e in consumer.seen] == ["slow", 0]
    assert consumer.ids[1] == fast[0]


def test_concurrent_writers_and_dispatchers_lose_nothing_and_keep_each_conversation_in_order(db: Database) -> None:
    """Writers commit concurrently (on PostgreSQL ids then become visible out of order), while two
    dispatcher threads feed one consumer; each conversation's events are serialised by a lock, as
    its row lock serialises them in the inbox."""
    conversations = range(1, 6)
    locks = {c: threading.Lock() for c in conversations}
    counters = dict.fromkeys(conversations, 0)
    recorder = Recorder("ordered")
    consumer = recorder.consumer()
    writing = threading.Event()
    writing.set()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        chooser = random.Random(seed)
        try:
            for _ in range(40):
                conversation = chooser.choice(list(conversations))
                with locks[conversation], db.transaction() as session:
                    for _ in range(chooser.randint(1, 3)):
                        emit(session, event(conversation_id=conversation, seq=counters[conversation]))
                        counters[conversation] += 1
                    time.sleep(chooser.random() / 200)
        except BaseException as exc:
            errors.append(exc)

    def dispatch_loop() -> None:
        try:
            while writing.is_set():
                dispatcher.dispatch(db, [consumer], settle_wait=0.02)
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    dispatchers = [threading.Thread(target=dispatch_loop) for _ in range(2)]
    for thread in writers + dispatchers:
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    for thread in dispatchers:
        thread.join()
    dispatcher.dispatch(db, [consumer])
    assert errors == []
    per_conversation: dict[int, list[int]] = defaultdict(list)
    for record in recorder.seen:
        assert record.conversation_id is not None
        per_conversation[record.conversation_id].append(record.payload["seq"])
    for conversation, count in counters.items():
        assert per_conversation[conversation] == list(range(count)), conversation
    assert recorder.ids == sorted(recorder.ids)
    assert len(recorder.ids) == len(all_events(db))


def test_retention_prunes_only_old_events_every_consumer_has_processed(db: Database) -> None:
    ids = write_events(db, 4)
    dispatcher.dispatch(db)  # the consumers the app registers (webhooks) are up to date
    with db.transaction() as session:
        session.execute(
            update(EventRecord).where(EventRecord.id.in_(ids[:3])).values(created_at=utcnow() - timedelta(days=40))
        )
    ahead, behind = Recorder("ahead"), Recorder("behind")
    with registered(ahead.consumer(), behind.consumer()):
        assert dispatcher.prune(db, 30) == 0  # neither has a position yet: they will read from the start
        dispatcher.dispatch(db, [ahead.consumer()])
        dispatcher.dispatch(db, [Recorder("behind").consumer()])
        # ... and "behind" is put back to having handled the first two only.
        with db.transaction() as session:
            session.execute(
                update(dispatcher.ConsumerPosition)
                .where(dispatcher.ConsumerPosition.name == "behind")
                .values(last_event_id=ids[1])
            )
        assert dispatcher.prune(db, 30) == 2
        assert [e.id for e in all_events(db)] == ids[2:]
        dispatcher.dispatch(db, [behind.consumer()])
        # What "behind" was given after its position went back: the third and fourth again.
        assert behind.ids[-2:] == ids[2:]
        assert dispatcher.prune(db, 30) == 1  # the fourth is recent
        assert [e.id for e in all_events(db)] == ids[3:]
    # Once the consumers registered by the app (webhooks) have read them, age alone decides.
    with db.transaction() as session:
        session.execute(update(EventRecord).values(created_at=utcnow() - timedelta(days=31)))
    dispatcher.dispatch(db)
    assert dispatcher.prune(db, 30) == 1
    assert all_events(db) == []
    assert write_events(db, 1)[0] > ids[-1]  # ids are never handed out again


def test_the_cli_shows_each_consumers_lag(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    write_events(db, 3)
    broken = Recorder("broken", fail_times=1)
    monkeypatch.setenv("TERTULIA_DATABASE_URL", db.url)
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()
    try:
        with registered(broken.consumer(retry_base_seconds=60)):
            dispatcher.dispatch(db)
            result = CliRunner().invoke(cli, ["events", "status"], env={"COLUMNS": "250"})
    finally:
        kit_db.get_database().dispose()
        kit_settings.get_settings.cache_clear()
        kit_db.get_database.cache_clear()
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "broken" in line)
    assert [cell.strip() for cell in row.split("│")[1:6]] == ["broken", "yes", "0", "3", "1"]
    assert "RuntimeError: boom" in row
