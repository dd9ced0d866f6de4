"""`on_commit`: callbacks run once, in order, after the outermost transaction commits. Savepoints
(`begin_nested`, as `race_guard` and `statement_timeout` use on PostgreSQL) neither run them early
when released nor drop more than their own when rolled back."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tertulia.kit.db import Database, on_commit, race_guard
from tertulia.users.models import User


class ChangeFailed(Exception):
    pass


class CallbackFailed(Exception):
    pass


def recorder(ran: list[str]) -> Callable[[str], Callable[[], None]]:
    def callback(name: str) -> Callable[[], None]:
        return lambda: ran.append(name)

    return callback


@contextmanager
def failing_savepoint(session: Session) -> Iterator[None]:
    """A savepoint whose block ends by raising, so that it rolls back; the transaction goes on."""
    try:
        with session.begin_nested():
            yield
            raise ChangeFailed
    except ChangeFailed:
        pass


def flush_in_savepoint(session: Session, callback: Callable[[], None], email: str) -> None:
    with session.begin_nested():
        on_commit(session, callback)
        session.add(User(email=email))
        session.flush()


def test_a_released_savepoint_waits_for_the_outer_commit(db: Database) -> None:
    ran: list[str] = []
    cb = recorder(ran)
    with db.transaction() as session:
        on_commit(session, cb("before"))
        with session.begin_nested():
            on_commit(session, cb("inside"))
        assert ran == []  # released, not committed
        on_commit(session, cb("after"))
        assert ran == []
    assert ran == ["before", "inside", "after"]


def test_the_race_guard_savepoint_waits_for_the_outer_commit(db: Database) -> None:
    ran: list[str] = []
    cb = recorder(ran)
    with db.transaction() as session:
        with race_guard(session):
            session.add(User(email="guarded@example.com"))
            on_commit(session, cb("guarded"))
        assert ran == []
    assert ran == ["guarded"]


def test_an_outer_rollback_after_a_released_savepoint_runs_nothing(db: Database) -> None:
    ran: list[str] = []
    cb = recorder(ran)

    def change() -> None:
        with db.transaction() as session:
            on_commit(session, cb("before"))
            with session.begin_nested():
                on_commit(session, cb("inside"))
            raise ChangeFailed

    with pytest.raises(ChangeFailed):
        change()
    assert ran == []


def test_a_rolled_back_savepoint_drops_only_its_callbacks(db: Database) -> None:
    ran: list[str] = []
    cb = recorder(ran)
    with db.transaction() as session:
        on_commit(session, cb("before"))
        with failing_savepoint(session):
            on_commit(session, cb("dropped"))
        on_commit(session, cb("after"))
    assert ran == ["before", "after"]


def test_a_failed_flush_in_a_savepoint_drops_only_its_callbacks(db: Database) -> None:
    # A failed flush rolls the savepoint back in the database before the block's own rollback (the
    # path of a lost uniqueness race); the transaction goes on and commits.
    with db.transaction() as session:
        session.add(User(email="taken@example.com"))
    ran: list[str] = []
    cb = recorder(ran)
    with db.transaction() as session:
        on_commit(session, cb("before"))
        with pytest.raises(IntegrityError):
            flush_in_savepoint(session, cb("dropped"), "taken@example.com")
        on_commit(session, cb("after"))
        session.add(User(email="free@example.com"))
    assert ran == ["before", "after"]
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 2


def test_nested_savepoints(db: Database) -> None:
    ran: list[str] = []
    cb = recorder(ran)
    with db.transaction() as session:
        on_commit(session, cb("a"))
        with session.begin_nested():
            on_commit(session, cb("b"))
            with session.begin_nested():
                on_commit(session, cb("c"))
            with failing_savepoint(session):
                on_commit(session, cb("rolled back inside a released one"))
            on_commit(session, cb("d"))
        try:
            with session.begin_nested():
                on_commit(session, cb("rolled back"))
                with session.begin_nested():
                    on_commit(session, cb("released inside a rolled back one"))
                with session.begin_nested():
                    on_commit(session, cb("in a savepoint rolled back with its parent"))
                    raise ChangeFailed
        except ChangeFailed:
            pass
        assert ran == []
        on_commit(session, cb("e"))
    assert ran == ["a", "b", "c", "d", "e"]


def test_a_savepoint_rolled_back_by_hand_drops_its_inner_savepoints_too(db: Database) -> None:
    ran: list[str] = []
    cb = recorder(ran)
    with db.transaction() as session:
        on_commit(session, cb("a"))
        outer = session.begin_nested()
        on_commit(session, cb("outer"))
        session.begin_nested()  # left open: the outer rollback closes it
        on_commit(session, cb("inner"))
        outer.rollback()
        on_commit(session, cb("b"))
    assert ran == ["a", "b"]


def test_commit_from_inside_a_savepoint_runs_callbacks_once(db: Database) -> None:
    ran: list[str] = []
    cb = recorder(ran)
    session = db.session()
    try:
        on_commit(session, cb("a"))
        session.begin_nested()
        on_commit(session, cb("b"))
        session.begin_nested()
        on_commit(session, cb("c"))
        session.commit()  # releases both savepoints, then commits
        assert ran == ["a", "b", "c"]
        on_commit(session, cb("next"))
        session.commit()
        assert ran == ["a", "b", "c", "next"]
    finally:
        session.close()


def test_a_rolled_back_transaction_leaves_nothing_for_the_next_one(db: Database) -> None:
    ran: list[str] = []
    cb = recorder(ran)
    session = db.session()
    try:
        on_commit(session, cb("rolled back"))
        session.begin_nested()
        on_commit(session, cb("in a savepoint, rolled back"))
        session.rollback()
        on_commit(session, cb("kept"))
        session.commit()
    finally:
        session.close()
    assert ran == ["kept"]


def _commit_raising(session: Session, ran: list[str]) -> None:
    cb = recorder(ran)

    def fail() -> None:
        raise CallbackFailed

    on_commit(session, cb("first"))
    on_commit(session, fail)
    on_commit(session, cb("after the failure"))
    session.add(User(email="committed@example.com"))
    with pytest.raises(CallbackFailed):
        session.commit()


def test_a_callback_that_raises_stops_the_rest_and_leaves_commit_after_the_commit(db: Database) -> None:
    ran: list[str] = []
    session = db.session()
    try:
        _commit_raising(session, ran)
    finally:
        session.close()
    assert ran == ["first"]
    with db.transaction(write=False) as session:
        assert session.scalar(select(User.email)) == "committed@example.com"
    # The next transaction starts with no callbacks left over.
    with db.transaction() as session:
        on_commit(session, recorder(ran)("next"))
    assert ran == ["first", "next"]


def test_a_callback_registered_after_its_savepoint_failed_is_dropped_with_it(db: Database) -> None:
    with db.transaction() as session:
        session.add(User(email="taken@example.com"))
    ran: list[str] = []
    cb = recorder(ran)
    with db.transaction() as session:
        on_commit(session, cb("before"))
        with session.begin_nested():
            session.add(User(email="taken@example.com"))
            try:
                session.flush()
            except IntegrityError:
                on_commit(session, cb("registered in the failed savepoint"))
        on_commit(session, cb("after"))
    assert ran == ["before", "after"]
