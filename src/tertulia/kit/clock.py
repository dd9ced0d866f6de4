"""Aware UTC time only; naive datetimes never enter storage.

Everything that asks what time it is asks `utcnow()`, so a test can move the whole application's
clock (`travel`) and see what a day later looks like (a closed reply window) without sleeping. In a
running installation the offset is always zero: only tests call `travel`.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def utcnow() -> datetime:
    return datetime.now(UTC) + _offset


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@contextmanager
def travel(by: timedelta) -> Iterator[None]:
    """Within the block, `utcnow()` is `by` later (for every thread of this process: the app a test
    serves included); afterwards the clock is back where it was."""
    global _offset
    before = _offset
    _offset = before + by
    try:
        yield
    finally:
        _offset = before
