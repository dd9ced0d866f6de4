"""Helpers for the event-log tests: a recording consumer and a way to write events."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from tertulia.events import dispatcher
from tertulia.events.models import EventRecord
from tertulia.events.service import Event, emit
from tertulia.events.types import EventType
from tertulia.kit.db import Database


@dataclass
class Recorder:
    """A consumer that remembers what it was given, and can be told to fail."""

    name: str
    fail_times: int = 0
    seen: list[EventRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, event: EventRecord) -> None:
        with self.lock:
            if self.fail_times > 0:
                self.fail_times -= 1
                raise RuntimeError(f"boom at {event.id}")
            self.seen.append(event)

    @property
    def ids(self) -> list[int]:
        with self.lock:
            return [e.id for e in self.seen]

    def consumer(self, **options: Any) -> dispatcher.Consumer:
        return dispatcher.Consumer(self.name, self.handle, **options)


def event(workspace_id: int = 1, conversation_id: int | None = None, **payload: Any) -> Event:
    return Event(EventType.MESSAGE_RECEIVED, workspace_id, payload, conversation_id=conversation_id)


def write_events(db: Database, count: int, conversation_id: int | None = None) -> list[int]:
    """`count` events in one transaction; their ids."""
    with db.transaction() as session:
        for n in range(count):
            emit(session, event(conversation_id=conversation_id, n=n))
    with db.transaction(write=False) as session:
        return list(session.scalars(select(EventRecord.id).order_by(EventRecord.id.desc()).limit(count)))[::-1]


def all_events(db: Database) -> list[EventRecord]:
    with db.transaction(write=False) as session:
        return list(session.scalars(select(EventRecord).order_by(EventRecord.id)))


@contextmanager
def registered(*consumers: dispatcher.Consumer) -> Iterator[None]:
    for consumer in consumers:
        dispatcher.register(consumer)
    try:
        yield
    finally:
        for consumer in consumers:
            dispatcher.unregister(consumer.name)
