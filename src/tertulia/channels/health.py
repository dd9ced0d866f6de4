"""Whether a channel works, as Settings > Channels shows it: connected, in error or disconnected.

A channel is in error while its last error is newer than the last sign of life from the provider (a
callback received or a message it accepted). The timestamps are written by the callback task and the
outbox at most once a minute per channel (an UPDATE only when the stored one is older, or older than
the last error), so a busy channel's row is not rewritten by every message.
"""

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from tertulia.channels.models import Channel

TOUCH_EVERY = timedelta(minutes=1)
MAX_ERROR = 1000


class Health(enum.StrEnum):
    CONNECTED = "connected"
    ERROR = "error"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class ChannelHealth:
    state: Health
    last_callback_at: datetime | None
    last_sent_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


def health_of(channel: Channel) -> ChannelHealth:
    alive = max((t for t in (channel.last_callback_at, channel.last_sent_at) if t is not None), default=None)
    if not channel.active:
        state = Health.DISCONNECTED
    elif channel.last_error_at is not None and (alive is None or channel.last_error_at > alive):
        state = Health.ERROR
    else:
        state = Health.CONNECTED
    return ChannelHealth(
        state, channel.last_callback_at, channel.last_sent_at, channel.last_error, channel.last_error_at
    )


def _stale(column: InstrumentedAttribute[datetime | None], at: datetime) -> ColumnElement[bool]:
    """Worth writing: never written, older than TOUCH_EVERY, or older than the last error (so a
    channel that works again stops showing as in error at once)."""
    return or_(column.is_(None), column < at - TOUCH_EVERY, Channel.last_error_at > column)


def touch_callback(session: Session, channel_id: int, at: datetime) -> None:
    column = Channel.last_callback_at
    session.execute(update(Channel).where(Channel.id == channel_id, _stale(column, at)).values(last_callback_at=at))


def touch_sent(session: Session, channel_id: int, at: datetime) -> None:
    column = Channel.last_sent_at
    session.execute(update(Channel).where(Channel.id == channel_id, _stale(column, at)).values(last_sent_at=at))


def record_error(session: Session, channel_id: int, reason: str, at: datetime) -> None:
    session.execute(
        update(Channel).where(Channel.id == channel_id).values(last_error=reason[:MAX_ERROR], last_error_at=at)
    )
