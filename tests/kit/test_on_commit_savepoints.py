"""on_commit callbacks belong to the whole transaction: a savepoint's release does not run them,
and a savepoint's rollback drops only the callbacks registered inside it."""

from tertulia.kit.db import Database, on_commit


def test_savepoint_release_waits_for_the_commit(db: Database) -> None:
    ran: list[str] = []
    with db.transaction() as session:
        on_commit(session, lambda: ran.append("before"))
        with session.begin_nested():
            on_commit(session, lambda: ran.append("inside"))
        assert ran == []
        failed = session.begin_nested()
        on_commit(session, lambda: ran.append("rolled back"))
        failed.rollback()
        on_commit(session, lambda: ran.append("after"))
        assert ran == []
    assert ran == ["before", "inside", "after"]


def test_rollback_drops_everything(db: Database) -> None:
    ran: list[str] = []
    try:
        with db.transaction() as session:
            on_commit(session, lambda: ran.append("x"))
            with session.begin_nested():
                on_commit(session, lambda: ran.append("y"))
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with db.transaction() as session:
        on_commit(session, lambda: ran.append("z"))
    assert ran == ["z"]
