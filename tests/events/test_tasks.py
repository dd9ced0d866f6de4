"""The dispatcher on the job queue: a commit that wrote events nudges a dispatch; the periodic
catch-up and the prune task run the same code."""

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from tertulia.events import dispatcher, tasks
from tertulia.events.models import EventRecord
from tertulia.kit import queue
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.events.support import Recorder, all_events, registered, write_events


@pytest.fixture
def immediate_queue(db: Database) -> Iterator[None]:
    queue.huey.immediate = True
    queue.use_database(db)
    yield
    queue.huey.immediate = False
    queue.use_database(None)


@pytest.mark.usefixtures("immediate_queue")
def test_a_commit_that_wrote_events_gets_them_delivered(db: Database) -> None:
    recorder = Recorder("nudged")
    with registered(recorder.consumer()):
        ids = write_events(db, 3)
        deadline = time.monotonic() + 10  # a nudge right after another one is a trailing one
        while recorder.ids != ids and time.monotonic() < deadline:
            time.sleep(0.02)
    assert recorder.ids == ids


# No nudged dispatch beside the test's own: one running in a timer thread holds a consumer's lease,
# and the test's dispatch then leaves that consumer behind.
@pytest.mark.usefixtures("immediate_queue", "no_background_work")
def test_the_catch_up_delivers_what_no_nudge_announced(db: Database) -> None:
    ids = write_events(db, 2)
    dispatcher.dispatch(db)  # the consumers the app registers (webhooks) are up to date; "late" is not yet known
    recorder = Recorder("late")
    with registered(recorder.consumer()):
        assert tasks.catch_up.call_local() == 2
    assert recorder.ids == ids


@pytest.mark.usefixtures("immediate_queue", "no_background_work")
def test_the_prune_task_applies_the_retention_setting(db: Database) -> None:
    ids = write_events(db, 2)
    with db.transaction() as session:
        old = utcnow() - timedelta(days=31)
        session.execute(update(EventRecord).where(EventRecord.id == ids[0]).values(created_at=old))
    dispatcher.dispatch(db)  # the registered consumers (webhooks) have read them: only age decides
    assert tasks.prune_task.call_local() == 1
    assert [e.id for e in all_events(db)] == ids[1:]
