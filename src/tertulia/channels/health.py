"""Whether a channel works, as Settings > Channels shows it: connected, in error or disconnected.

A channel is in error while its last error is newer than the last sign of life from the provider (a
callback received or a message it accepted). An error a status callback reported (the provider
accepted the send and failed it later: an unpaid or locked account) is ended only by a callback, a
delivered or read status or a customer's message: the next send being accepted proves nothing,
since that is how the failure began (`last_error_from_status`). Without that, an account that
accepts every send and fails it later would go into error and out of it with each message.

The timestamps are written by the callback task and the outbox at most once a minute per channel
(an UPDATE only when the stored one is older, or older than the last error or the start of a run of
provider failures), so a busy channel's row is not rewritten by every message.

The moments the state changes are events (`channel.errored`, `channel.recovered`), emitted once per
change, not once per failed message: the UPDATE that makes the change is conditional on the state
before it, so of two workers recording errors at once only the first one's matches (PostgreSQL
re-checks the condition on the row the other committed; SQLite has one writer at a time). A
channel a person disconnected is neither: its state is "disconnected" whatever fails.

Only a failure of the channel itself counts (`record_failure`): the provider refused its
credentials, its account is misconfigured, suspended or rate-limited as a whole, or the provider
cannot be reached. A refusal of one message (a bad or opted-out number, a customer who blocked the
bot, the 24-hour window) is that message's failure, recorded on the message alone: the channel
stays connected and no one is told (`ChannelError.fault`, mapped by each adapter from its
provider's error codes). A failure the provider reports later, in a status callback (WhatsApp's
failed statuses with their errors, Twilio's ErrorCode, Vonage's err-code and error, Bird's failure),
counts the same way (`status_failure`, recorded by the callback task at the time the callback
arrived, `from_status`; such a callback is no sign of life).

Refused credentials and a broken account put the channel in error at once. A provider that cannot
be reached or fails (`Fault.PROVIDER`: timeouts, connection errors, 5xx) does only when it keeps
failing: a run of provider failures with no sign of life since its first one, at least
PROVIDER_OUTAGE_AFTER long and PROVIDER_OUTAGE_FAILURES failures strong. A blip (one timeout, a
5xx that the retry gets past) changes nothing anyone sees. The run lives on the channel's row
(`first_provider_failure_at`, `provider_failures`), counted by one UPDATE that reads the row as it
is when it writes (two workers failing at once count two, PostgreSQL re-reading the row the other
committed), and ended by any sign of life newer than its start; the UPDATE that then puts the
channel in error is the same conditional one as for any other error, so a run still emits once.
While a run goes on, Settings > Channels and the channels API show it (`ChannelHealth.provider_run`):
the channel is still connected, but whoever looks sees the provider failing before it is an outage.
"""

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Row, and_, case, literal, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from tertulia.channels.models import Channel
from tertulia.channels.protocol import ChannelError, DeliveryStatus, Fault, StatusUpdate
from tertulia.events.service import Event, emit
from tertulia.events.types import EventType

TOUCH_EVERY = timedelta(minutes=1)
MAX_ERROR = 1000
# A provider failing puts the channel in error once it has failed this long since the first failure
# of the run, with no sign of life since, and this many times: an outage, not a blip.
PROVIDER_OUTAGE_AFTER = timedelta(minutes=5)
PROVIDER_OUTAGE_FAILURES = 3


class Health(enum.StrEnum):
    CONNECTED = "connected"
    ERROR = "error"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class ProviderRun:
    """A run of provider failures going on: how many since when (UTC)."""

    failures: int
    since: datetime

    @property
    def outage_minutes(self) -> int:
        return int(PROVIDER_OUTAGE_AFTER.total_seconds() // 60)


@dataclass(frozen=True)
class ChannelHealth:
    state: Health
    last_callback_at: datetime | None
    last_sent_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    # None when no run is going on, or the channel is disconnected (its failures are no one's concern).
    provider_run: ProviderRun | None = None


def health_of(channel: Channel) -> ChannelHealth:
    # An error a status callback reported is ended by a callback only (the module's docstring).
    signs = [channel.last_callback_at]
    if not channel.last_error_from_status:
        signs.append(channel.last_sent_at)
    alive = max((t for t in signs if t is not None), default=None)
    if not channel.active:
        state = Health.DISCONNECTED
    elif channel.last_error_at is not None and (alive is None or channel.last_error_at > alive):
        state = Health.ERROR
    else:
        state = Health.CONNECTED
    return ChannelHealth(
        state,
        channel.last_callback_at,
        channel.last_sent_at,
        channel.last_error,
        channel.last_error_at,
        _provider_run_of(channel),
    )


def _provider_run_of(channel: Channel) -> ProviderRun | None:
    """_provider_run_going_on, in Python: the row keeps an ended run's start and count until the
    next failure starts a new one, so a sign of life since its start means no run."""
    since = channel.first_provider_failure_at
    if not channel.active or since is None or not channel.provider_failures:
        return None
    if any(t is not None and t >= since for t in (channel.last_callback_at, channel.last_sent_at)):
        return None
    return ProviderRun(channel.provider_failures, since)


def _stale(column: InstrumentedAttribute[datetime | None], at: datetime) -> ColumnElement[bool]:
    """Worth writing: never written, older than TOUCH_EVERY, or older than the last error (so a
    channel that works again stops showing as in error at once) or than the start of a run of
    provider failures (so the run ends at once)."""
    return or_(
        column.is_(None),
        column < at - TOUCH_EVERY,
        Channel.last_error_at > column,
        Channel.first_provider_failure_at > column,
    )


def _before(
    column: InstrumentedAttribute[datetime | None], moment: InstrumentedAttribute[datetime | None] | datetime
) -> ColumnElement[bool]:
    return or_(column.is_(None), column < moment)


def _provider_run_going_on() -> ColumnElement[bool]:
    """A run of provider failures with no sign of life since its first one."""
    return and_(
        Channel.first_provider_failure_at.is_not(None),
        _before(Channel.last_callback_at, Channel.first_provider_failure_at),
        _before(Channel.last_sent_at, Channel.first_provider_failure_at),
    )


def _in_error() -> ColumnElement[bool]:
    """health_of's ERROR, in SQL: an active channel whose last error is newer than every sign of life
    (for an error a status callback reported, every callback)."""
    return and_(
        Channel.active.is_(True),
        Channel.last_error_at.is_not(None),
        _before(Channel.last_callback_at, Channel.last_error_at),
        or_(Channel.last_error_from_status.is_(True), _before(Channel.last_sent_at, Channel.last_error_at)),
    )


_CHANGED = (Channel.id, Channel.workspace_id, Channel.name, Channel.type, Channel.last_error)


def _emit_change(
    session: Session,
    kind: EventType,
    row: Row[int, int, str, str, str | None],
    fault: Fault | None = None,
    code: str | None = None,
) -> None:
    channel_id, workspace_id, name, channel_type, error = row
    payload = {
        "channel_id": channel_id,
        "name": name,
        "channel_type": channel_type,
        "error": error,
        "fault": fault.value if fault is not None else None,
        "code": code,
    }
    emit(session, Event(kind, workspace_id, payload, actor="channel"))


def _touch(session: Session, column: InstrumentedAttribute[datetime | None], channel_id: int, at: datetime) -> None:
    # Most touches find the sign of life fresh and no error or provider failure after it: both
    # UPDATEs below would match nothing. One read says so for less than the UPDATEs cost (every send
    # and callback batch of a busy channel touches it), and the UPDATEs keep their conditions for a
    # writer racing this one.
    row = session.execute(
        select(column, Channel.last_error_at, Channel.first_provider_failure_at).where(Channel.id == channel_id)
    ).first()
    if row is None:
        return
    last, error_at, failing_since = row
    if last is not None and last >= at - TOUCH_EVERY and all(t is None or t <= last for t in (error_at, failing_since)):
        return
    # A sign of life newer than the error ends an error state: that UPDATE, and the event, first. An
    # accepted send does not end an error a status callback reported; it is still written below.
    ends = [Channel.last_error_at < at]
    if column is Channel.last_sent_at:
        ends.append(Channel.last_error_from_status.is_(False))
    recovered = session.execute(
        update(Channel)
        .where(Channel.id == channel_id, _in_error(), *ends)
        .values({column.key: at})
        .returning(*_CHANGED)
    ).first()
    if recovered is not None:
        _emit_change(session, EventType.CHANNEL_RECOVERED, recovered)
        return
    session.execute(update(Channel).where(Channel.id == channel_id, _stale(column, at)).values({column.key: at}))


def touch_callback(session: Session, channel_id: int, at: datetime) -> None:
    _touch(session, Channel.last_callback_at, channel_id, at)


def touch_sent(session: Session, channel_id: int, at: datetime) -> None:
    _touch(session, Channel.last_sent_at, channel_id, at)


def record_failure(
    session: Session,
    channel_id: int,
    error: ChannelError,
    at: datetime,
    reason: str | None = None,
    *,
    from_status: bool = False,
) -> bool:
    """Record a provider's refusal against the channel when it is the channel's fault (`reason`, when
    given, is the words to keep: the outbox's "gave up after 5 attempts: ..."; `from_status`: a status
    callback reported it). A refusal of one message leaves the channel as it was; a provider failure
    is counted in its run and recorded only once the run is an outage. Whether it was recorded."""
    if not error.channel_level:
        return False
    if error.fault == Fault.PROVIDER and not _provider_outage(session, channel_id, at):
        return False
    record_error(
        session, channel_id, reason or error.reason, at, fault=error.fault, code=error.code, from_status=from_status
    )
    return True


def _provider_outage(session: Session, channel_id: int, at: datetime) -> bool:
    """Count one provider failure in the channel's run (a new run when none is going on); whether the
    run is now an outage: PROVIDER_OUTAGE_AFTER since its first failure, PROVIDER_OUTAGE_FAILURES
    failures. The SET expressions read the row the UPDATE writes, so failures recorded at once by
    two workers are both counted (the second waits for the first's row lock, then reads its row)."""
    going_on = _provider_run_going_on()
    run = session.execute(
        update(Channel)
        .where(Channel.id == channel_id)
        .values(
            first_provider_failure_at=case(
                (going_on, Channel.first_provider_failure_at),
                else_=literal(at, Channel.first_provider_failure_at.type),
            ),
            provider_failures=case((going_on, Channel.provider_failures + 1), else_=1),
        )
        .returning(Channel.first_provider_failure_at, Channel.provider_failures)
    ).first()
    if run is None:
        return False
    since, failures = run
    return since is not None and failures >= PROVIDER_OUTAGE_FAILURES and at - since >= PROVIDER_OUTAGE_AFTER


def status_failure(statuses: Iterable[StatusUpdate]) -> ChannelError | None:
    """The last failure among a callback's statuses that is the channel's own (an error whose fault
    is the credentials', the account's or the provider's), if any: the provider is telling us the
    channel failed, not that it works."""
    found: ChannelError | None = None
    for status in statuses:
        if status.status == DeliveryStatus.FAILED and status.error is not None and status.error.channel_level:
            found = status.error
    return found


def record_error(
    session: Session,
    channel_id: int,
    reason: str,
    at: datetime,
    *,
    fault: Fault | None = None,
    code: str | None = None,
    from_status: bool = False,
) -> None:
    """The channel itself failed (callers decide that: `record_failure` for a provider's error).
    `from_status`: a status callback reported it, and only a callback ends it."""
    values = {"last_error": reason[:MAX_ERROR], "last_error_at": at, "last_error_from_status": from_status}
    # Connected until now, and this error newer than every sign of life that ends it: the channel goes
    # into error. `~_in_error()` reads the row as it was (its own error's origin), so a channel already
    # in error, whichever error put it there, does not go into error again.
    newer_than_life = [_before(Channel.last_callback_at, at)]
    if not from_status:
        newer_than_life.append(_before(Channel.last_sent_at, at))
    errored = session.execute(
        update(Channel)
        .where(
            Channel.id == channel_id,
            Channel.active.is_(True),
            ~_in_error(),
            *newer_than_life,
        )
        .values(values)
        .returning(*_CHANGED)
    ).first()
    if errored is not None:
        _emit_change(session, EventType.CHANNEL_ERRORED, errored, fault, code)
        return
    # An error a status callback reported stays one while a send was accepted after this error: that
    # send did not end it, and this error must not end it either (no channel.recovered is emitted here).
    keeps_origin = and_(Channel.last_error_from_status.is_(True), ~_before(Channel.last_sent_at, at))
    session.execute(
        update(Channel)
        .where(Channel.id == channel_id)
        .values({**values, "last_error_from_status": or_(literal(from_status), keeps_origin)})
    )


def record_reconnected(session: Session, channel: Channel, was: Health) -> None:
    """A person connected the channel again (a new token) and the provider accepted it: an error
    state it was in ends here (the caller cleared the error)."""
    if was == Health.ERROR:
        payload = {
            "channel_id": channel.id,
            "name": channel.name,
            "channel_type": channel.type,
            "error": None,
            "fault": None,
            "code": None,
        }
        emit(session, Event(EventType.CHANNEL_RECOVERED, channel.workspace_id, payload, actor="channel"))
