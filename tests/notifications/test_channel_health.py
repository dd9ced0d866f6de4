"""A channel that stops working tells its owners and managers once (`channel.errored`, the
`channel_error` notification), however many messages fail, and again once when it works again
(`channel.recovered`, `channel_recovered`, the error notifications marked read). Only the channel's
own failure counts (refused credentials here): a refused recipient fails its message and nothing
more. A provider that cannot be reached or fails counts only when it keeps failing (an outage, not
a blip), and two workers counting its failures at once still tell people once. SQLite and
PostgreSQL."""

import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tertulia.channels.health import (
    PROVIDER_OUTAGE_AFTER,
    Health,
    health_of,
    record_error,
    record_failure,
    touch_callback,
    touch_sent,
)
from tertulia.channels.models import Channel
from tertulia.channels.protocol import Fault, PermanentError, TransientError
from tertulia.channels.service import do_create_channel, do_disconnect_channel
from tertulia.conversations.models import Message
from tertulia.conversations.outbox import process_outbound
from tertulia.events import dispatcher
from tertulia.events.models import EventRecord
from tertulia.kit import queue
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.notifications import feed
from tertulia.notifications.models import Notification
from tertulia.users.models import Membership, Role, User
from tests.channels import meta_samples as meta
from tests.channels.email_support import email_channel
from tests.channels.fake_telegram import BOT_TOKEN, FakeTelegram, fake_telegram
from tests.channels.fake_twilio import fake_twilio
from tests.channels.test_messenger import SECRETS as MESSENGER_SECRETS
from tests.channels.test_twilio import _connect as twilio_connect
from tests.channels.test_whatsapp import _connected as whatsapp_channel
from tests.conftest import Tenant
from tests.conversations.support import fake_channel_with_contact, sign_in
from tests.fakes import fake_provider
from tests.web.helpers import sign_in_as

pytestmark = pytest.mark.usefixtures("immediate_queue", "fakehttp_adapter")

UNAUTHORIZED = (401, {"error": "the access token has expired"})
RECIPIENT_REFUSED = (400, {"error": "the recipient has opted out"})
PROVIDER_DOWN = (503, {"error": "the provider is down"})
UNREACHABLE = TransientError("the provider could not be reached (ConnectError)", code="connect")


def _send(client: TestClient, tenant: Tenant, channel_id: int, contact_id: int, text: str = "hola") -> None:
    response = client.post(
        f"/api/v1/contacts/id:{contact_id}/messages",
        headers=tenant.headers,
        json={"channel_id": channel_id, "message": {"type": "text", "text": text}},
    )
    assert response.status_code == 201, response.text


def _queued(client: TestClient, tenant: Tenant, channel_id: int, contact_id: int, text: str) -> int:
    """A message written and queued, not yet sent: the test runs the outbox."""
    response = client.post(
        f"/api/v1/contacts/id:{contact_id}/messages",
        headers=tenant.headers,
        json={"channel_id": channel_id, "message": {"type": "text", "text": text}},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _caught_up(db: Database, timeout: float = 15.0) -> None:
    newest = dispatcher.newest_event_id(db)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dispatcher.dispatch(db, [feed.CONSUMER])
        status = {s.name: s for s in dispatcher.consumer_status(db)}[feed.CONSUMER_NAME]
        if status.last_event_id >= newest:
            return
        time.sleep(0.02)
    raise AssertionError("the notifications consumer did not catch up")


def _notifications(db: Database, user_id: int) -> list[tuple[str, str, bool, dict[str, Any]]]:
    _caught_up(db)
    with db.transaction(write=False) as session:
        rows = session.scalars(select(Notification).where(Notification.user_id == user_id).order_by(Notification.id))
        return [(row.kind, row.link, row.read_at is None, dict(row.params)) for row in rows]


def _channel_events(db: Database, workspace_id: int) -> list[tuple[str, dict[str, Any]]]:
    with db.transaction(write=False) as session:
        rows = session.scalars(
            select(EventRecord)
            .where(EventRecord.workspace_id == workspace_id, EventRecord.type.like("channel.%"))
            .order_by(EventRecord.id)
        )
        return [(row.type, dict(row.payload)) for row in rows]


def _health(db: Database, channel_id: int) -> Health:
    with db.transaction(write=False) as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        return health_of(channel).state


def test_repeated_failures_notify_owners_and_managers_once_and_recovery_clears(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with fake_provider() as provider:
        channel_id, contact_id = fake_channel_with_contact(db, tenant, provider.url)
        _send(client, tenant, channel_id, contact_id, "first")  # works: the channel is connected
        provider.script += [UNAUTHORIZED] * 3
        for n in range(3):
            _send(client, tenant, channel_id, contact_id, f"refused {n}")
        assert provider.calls == 4
        assert _health(db, channel_id) == Health.ERROR
        link = f"/settings/channels/{channel_id}"
        expected = ("channel_error", link, True, {"name": "Fake", "excerpt": "the access token has expired"})
        for user_id in (tenant.owner_id, tenant.manager_id):
            assert _notifications(db, user_id) == [expected]
        assert _notifications(db, tenant.agent_id) == []  # agents cannot reconnect a channel
        assert [kind for kind, _payload in _channel_events(db, tenant.workspace_id)] == ["channel.errored"]

        # The owner sees it in their own language in the API, with the reason as its body.
        owner = sign_in(db, tenant, Role.OWNER)
        listed = client.get("/api/v1/notifications", headers={"Cookie": owner.headers["Cookie"]}).json()
        assert listed["unread"] == 1
        assert listed["data"][0]["title"] == "Channel Fake stopped working"
        assert listed["data"][0]["body"] == "the access token has expired"

        _send(client, tenant, channel_id, contact_id, "works again")
        _send(client, tenant, channel_id, contact_id, "still works")
    assert _health(db, channel_id) == Health.CONNECTED
    events = _channel_events(db, tenant.workspace_id)
    assert [kind for kind, _payload in events] == ["channel.errored", "channel.recovered"]
    assert events[0][1] == {
        "channel_id": channel_id,
        "name": "Fake",
        "channel_type": "fakehttp",
        "error": "the access token has expired",
        "fault": "credentials",
        "code": "401",
    }
    assert events[1][1]["fault"] is None  # a recovery has no fault of its own
    for user_id in (tenant.owner_id, tenant.manager_id):
        rows = _notifications(db, user_id)
        # The error notification was marked read: what it told of is over.
        assert [(kind, unread) for kind, _link, unread, _params in rows] == [
            ("channel_error", False),
            ("channel_recovered", True),
        ]


def test_refused_recipients_leave_the_channel_connected_and_tell_no_one(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with fake_provider() as provider:
        channel_id, contact_id = fake_channel_with_contact(db, tenant, provider.url)
        provider.script += [RECIPIENT_REFUSED] * 3
        for n in range(3):
            _send(client, tenant, channel_id, contact_id, f"refused {n}")
        assert provider.calls == 3
        with db.transaction(write=False) as session:
            failed = session.scalars(
                select(Message.status_reason).where(Message.channel_id == channel_id).order_by(Message.id)
            ).all()
            channel = session.get(Channel, channel_id)
            assert channel is not None
            assert (channel.last_error, channel.last_error_at) == (None, None)
        assert failed == ["the recipient has opted out"] * 3  # each message failed with its reason
        assert _health(db, channel_id) == Health.CONNECTED
        assert _channel_events(db, tenant.workspace_id) == []
        for user_id in (tenant.owner_id, tenant.manager_id):
            assert _notifications(db, user_id) == []

        # In the middle of an outage a refused recipient neither ends it nor starts another.
        provider.script += [UNAUTHORIZED, RECIPIENT_REFUSED, UNAUTHORIZED]
        for n in range(3):
            _send(client, tenant, channel_id, contact_id, f"outage {n}")
        assert _health(db, channel_id) == Health.ERROR
        with db.transaction(write=False) as session:
            assert session.scalar(select(Channel.last_error).where(Channel.id == channel_id)) == (
                "the access token has expired"
            )
        _send(client, tenant, channel_id, contact_id, "works again")
    assert [kind for kind, _payload in _channel_events(db, tenant.workspace_id)] == [
        "channel.errored",
        "channel.recovered",
    ]
    assert [kind for kind, *_rest in _notifications(db, tenant.owner_id)] == ["channel_error", "channel_recovered"]


def test_a_second_outage_notifies_again(client: TestClient, db: Database, tenant: Tenant) -> None:
    with fake_provider() as provider:
        channel_id, contact_id = fake_channel_with_contact(db, tenant, provider.url)
        for _outage in range(2):
            provider.script += [UNAUTHORIZED, UNAUTHORIZED]
            _send(client, tenant, channel_id, contact_id)
            _send(client, tenant, channel_id, contact_id)
            _send(client, tenant, channel_id, contact_id)  # accepted
    kinds = [kind for kind, _payload in _channel_events(db, tenant.workspace_id)]
    assert kinds == ["channel.errored", "channel.recovered", "channel.errored", "channel.recovered"]
    rows = _notifications(db, tenant.owner_id)
    assert [kind for kind, *_rest in rows] == ["channel_error", "channel_recovered"] * 2


def test_errors_recorded_directly_change_state_once(db: Database, tenant: Tenant) -> None:
    with fake_provider() as provider:
        channel_id, _contact_id = fake_channel_with_contact(db, tenant, provider.url)
    start = utcnow()
    for n in range(4):  # a mailbox that keeps refusing the login, read after read
        with db.transaction() as session:
            record_error(session, channel_id, f"login refused ({n})", start + timedelta(seconds=n))
    events = _channel_events(db, tenant.workspace_id)
    assert [(kind, payload["error"]) for kind, payload in events] == [("channel.errored", "login refused (0)")]
    with db.transaction() as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        assert channel.last_error == "login refused (3)"  # the newest reason is still shown
        # A sign of life older than the error is not a recovery.
        touch_callback(session, channel_id, start - timedelta(minutes=5))
    assert len(_channel_events(db, tenant.workspace_id)) == 1
    with db.transaction() as session:
        touch_callback(session, channel_id, start + timedelta(seconds=10))
        touch_callback(session, channel_id, start + timedelta(seconds=11))
    assert [kind for kind, _payload in _channel_events(db, tenant.workspace_id)] == [
        "channel.errored",
        "channel.recovered",
    ]
    with db.transaction() as session:
        # An error older than the last sign of life leaves the channel connected: no event.
        record_error(session, channel_id, "late report of an old failure", start + timedelta(seconds=5))
    assert len(_channel_events(db, tenant.workspace_id)) == 2
    assert _health(db, channel_id) == Health.CONNECTED


def test_a_disconnected_channel_failing_tells_no_one(db: Database, tenant: Tenant) -> None:
    with fake_provider() as provider:
        channel_id, _contact_id = fake_channel_with_contact(db, tenant, provider.url)
    with db.transaction() as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        do_disconnect_channel(session, tenant.actor(), channel)
    with db.transaction() as session:
        record_error(session, channel_id, "the token was revoked", utcnow())
    assert _channel_events(db, tenant.workspace_id) == []
    assert _health(db, channel_id) == Health.DISCONNECTED
    assert _notifications(db, tenant.owner_id) == []


def _race_two_workers(db: Database, first: Callable[[Session], object], second: Callable[[Session], object]) -> None:
    """Runs `first` in a transaction that stays open while `second` starts in its own transaction
    and waits for the first's row lock (PostgreSQL) or write lock (SQLite); then lets both finish.
    Either worker failing fails the test."""
    first_wrote = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def run_first() -> None:
        try:
            with db.transaction() as session:
                first(session)
                first_wrote.set()
                release.wait(10)
        except BaseException as exc:  # reported below
            errors.append(exc)
            first_wrote.set()

    def run_second() -> None:
        try:
            with db.transaction() as session:
                second(session)
        except BaseException as exc:
            errors.append(exc)

    one = threading.Thread(target=run_first)
    one.start()
    assert first_wrote.wait(10)
    two = threading.Thread(target=run_second)
    two.start()
    time.sleep(0.3)  # the second is now waiting on the first's lock
    release.set()
    one.join(15)
    two.join(15)
    assert errors == []


def test_two_workers_recording_errors_at_once_emit_one_event(db: Database, tenant: Tenant) -> None:
    with fake_provider() as provider:
        channel_id, _contact_id = fake_channel_with_contact(db, tenant, provider.url)
    _race_two_workers(
        db,
        lambda session: record_error(session, channel_id, "refused by the first worker", utcnow()),
        lambda session: record_error(session, channel_id, "refused by the second worker", utcnow()),
    )
    assert [kind for kind, _payload in _channel_events(db, tenant.workspace_id)] == ["channel.errored"]
    with db.transaction(write=False) as session:
        stored = session.scalar(select(Channel.last_error).where(Channel.id == channel_id))
    assert stored == "refused by the second worker"


def test_a_member_made_agent_is_not_told(db: Database, client: TestClient, tenant: Tenant) -> None:
    with db.transaction() as session:
        session.execute(
            update(Membership)
            .where(Membership.workspace_id == tenant.workspace_id, Membership.user_id == tenant.manager_id)
            .values(role=Role.AGENT)
        )
    with fake_provider() as provider:
        channel_id, _contact_id = fake_channel_with_contact(db, tenant, provider.url)
    with db.transaction() as session:
        record_error(session, channel_id, "the token was revoked", utcnow())
    assert [kind for kind, *_rest in _notifications(db, tenant.owner_id)] == ["channel_error"]
    assert _notifications(db, tenant.manager_id) == []


def _connect_telegram(client: TestClient, fake: FakeTelegram, headers: dict[str, str]) -> httpx.Response:
    """A Telegram channel connected through the API to the fake bot server (a new bot there)."""
    fake.add_bot()
    created = client.post(
        "/api/v1/channels",
        json={"type": "telegram", "config": {"api_base_url": fake.url}, "secrets": {"bot_token": BOT_TOKEN}},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    return created


def test_connecting_a_channel_in_error_again_is_a_recovery(client: TestClient, db: Database, tenant: Tenant) -> None:
    owner = sign_in(db, tenant, Role.OWNER).headers  # connecting takes manage_channels: a person
    with fake_telegram() as fake:
        created = _connect_telegram(client, fake, owner)
        channel_id = int(created.json()["id"])
        with db.transaction() as session:
            record_error(session, channel_id, "Unauthorized", utcnow())
        assert [kind for kind, *_rest in _notifications(db, tenant.owner_id)] == ["channel_error"]
        again = client.post(f"/api/v1/channels/{channel_id}/connect", headers=owner)
        assert again.status_code == 200, again.text
    assert _health(db, channel_id) == Health.CONNECTED
    events = _channel_events(db, tenant.workspace_id)
    assert [(kind, payload["error"]) for kind, payload in events] == [
        ("channel.errored", "Unauthorized"),
        ("channel.recovered", None),
    ]
    rows = _notifications(db, tenant.owner_id)
    assert [(kind, unread) for kind, _link, unread, _params in rows] == [
        ("channel_error", False),
        ("channel_recovered", True),
    ]


# ----- the provider's own failures: an outage, not a blip --------------------------------------------


def _record_provider_failures(db: Database, channel_id: int, *moments: datetime) -> None:
    for at in moments:
        with db.transaction() as session:
            record_failure(session, channel_id, UNREACHABLE, at)


def test_provider_failures_put_a_channel_in_error_only_when_they_go_on(db: Database, tenant: Tenant) -> None:
    with fake_provider() as provider:
        channel_id, _contact_id = fake_channel_with_contact(db, tenant, provider.url)
    start = utcnow()
    minutes = [start + timedelta(minutes=n) for n in range(20)]
    # A blip: two failures a minute apart, then the provider answers again.
    _record_provider_failures(db, channel_id, minutes[0], minutes[1])
    # Many failures, but a short while: still a blip.
    _record_provider_failures(db, channel_id, *(minutes[1] + timedelta(seconds=n) for n in range(1, 20)))
    assert _health(db, channel_id) == Health.CONNECTED
    with db.transaction() as session:
        touch_sent(session, channel_id, minutes[2])  # it works again: the run is over
    # A long while, but only two failures since the last sign of life.
    _record_provider_failures(db, channel_id, minutes[3], minutes[9])
    assert _health(db, channel_id) == Health.CONNECTED
    with db.transaction() as session:
        touch_callback(session, channel_id, minutes[10])
    assert _channel_events(db, tenant.workspace_id) == []
    with db.transaction(write=False) as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        assert (channel.last_error, channel.last_error_at) == (None, None)  # nothing shown for a blip

    # Three failures over five minutes with no sign of life in between: an outage (PROVIDER_OUTAGE_*).
    _record_provider_failures(db, channel_id, minutes[11], minutes[13])
    assert _health(db, channel_id) == Health.CONNECTED
    _record_provider_failures(db, channel_id, minutes[16], minutes[17])
    assert _health(db, channel_id) == Health.ERROR
    events = _channel_events(db, tenant.workspace_id)
    assert [(kind, payload["fault"], payload["code"], payload["error"]) for kind, payload in events] == [
        ("channel.errored", "provider", "connect", "the provider could not be reached (ConnectError)")
    ]
    assert [kind for kind, *_rest in _notifications(db, tenant.owner_id)] == ["channel_error"]
    with db.transaction(write=False) as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        assert (channel.first_provider_failure_at, channel.provider_failures) == (minutes[11], 4)

    with db.transaction() as session:
        touch_sent(session, channel_id, minutes[18])
    assert _health(db, channel_id) == Health.CONNECTED
    # A new run starts from nothing: one failure after the recovery is a blip again.
    _record_provider_failures(db, channel_id, minutes[19])
    assert _health(db, channel_id) == Health.CONNECTED
    assert [kind for kind, _payload in _channel_events(db, tenant.workspace_id)] == [
        "channel.errored",
        "channel.recovered",
    ]


def test_refused_credentials_still_count_at_once_in_the_middle_of_a_provider_run(db: Database, tenant: Tenant) -> None:
    with fake_provider() as provider:
        channel_id, _contact_id = fake_channel_with_contact(db, tenant, provider.url)
    start = utcnow()
    _record_provider_failures(db, channel_id, start)
    with db.transaction() as session:
        refused = PermanentError("the token was revoked", code="401", fault=Fault.CREDENTIALS)
        assert record_failure(session, channel_id, refused, start + timedelta(seconds=1))
    events = _channel_events(db, tenant.workspace_id)
    assert [(kind, payload["fault"]) for kind, payload in events] == [("channel.errored", "credentials")]


def test_a_provider_outage_through_the_outbox_notifies_once_and_a_retried_blip_never(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with fake_provider() as provider:
        channel_id, contact_id = fake_channel_with_contact(db, tenant, provider.url)
        _send(client, tenant, channel_id, contact_id, "first")  # sent at once: the channel is connected
        queue.huey.immediate = False  # from here the test runs the outbox itself
        try:
            provider.script += [PROVIDER_DOWN, PROVIDER_DOWN]
            blip = _queued(client, tenant, channel_id, contact_id, "through a blip")
            assert [process_outbound(db, blip).state for _attempt in range(3)] == ["retry", "retry", "sent"]
            assert _health(db, channel_id) == Health.CONNECTED
            assert _channel_events(db, tenant.workspace_id) == []

            provider.script += [PROVIDER_DOWN] * 4
            down = _queued(client, tenant, channel_id, contact_id, "through an outage")
            assert process_outbound(db, down).state == "retry"
            with travel(timedelta(minutes=2)):
                assert process_outbound(db, down).state == "retry"
            assert _health(db, channel_id) == Health.CONNECTED
            with travel(timedelta(minutes=5)):
                assert process_outbound(db, down).state == "retry"
                assert _health(db, channel_id) == Health.ERROR
            with travel(timedelta(minutes=6)):
                assert process_outbound(db, down).state == "retry"
            with travel(timedelta(minutes=7)):
                assert process_outbound(db, down).state == "sent"
        finally:
            queue.huey.flush()
    events = _channel_events(db, tenant.workspace_id)
    assert [(kind, payload["fault"], payload["error"]) for kind, payload in events] == [
        ("channel.errored", "provider", "the provider is down"),
        ("channel.recovered", None, "the provider is down"),  # a recovery names what it recovered from
    ]
    assert [kind for kind, *_rest in _notifications(db, tenant.owner_id)] == ["channel_error", "channel_recovered"]


@pytest.mark.parametrize("failures_before", [1, 2])
def test_two_workers_counting_provider_failures_at_once_emit_one_event(
    db: Database, tenant: Tenant, failures_before: int
) -> None:
    """With one failure before, neither worker's failure alone is the third: only counting both (the
    second reading the row the first committed) makes the outage. With two, the first's is the
    third, and the second finds the channel in error already."""
    with fake_provider() as provider:
        channel_id, _contact_id = fake_channel_with_contact(db, tenant, provider.url)
    now = utcnow()
    _record_provider_failures(
        db, channel_id, *(now - PROVIDER_OUTAGE_AFTER - timedelta(minutes=n) for n in range(failures_before, 0, -1))
    )
    recorded: list[bool] = []
    _race_two_workers(
        db,
        lambda session: recorded.append(record_failure(session, channel_id, UNREACHABLE, now)),
        lambda session: recorded.append(record_failure(session, channel_id, UNREACHABLE, now + timedelta(seconds=1))),
    )
    assert recorded == ([False, True] if failures_before == 1 else [True, True])
    assert [kind for kind, _payload in _channel_events(db, tenant.workspace_id)] == ["channel.errored"]
    with db.transaction(write=False) as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        assert channel.provider_failures == failures_before + 2  # neither worker's count was lost
    assert _health(db, channel_id) == Health.ERROR


VIEWER_ZONE = ZoneInfo("Asia/Kolkata")  # UTC+5:30: a time shown in the wrong zone is never a whole hour off
PROVIDER_RUN_NOTE = re.compile(r'data-testid="provider-run">([^<]*)</div>')
# The note of two provider failures, around the start time (the catalogues' words, per language).
PROVIDER_RUN_WORDS = {
    "en": (
        "Provider failures since ",
        ": 2 (no answer or server error). The channel is marked in error if they go on for 5 minutes.",
    ),
    "es": (
        "Fallos del proveedor desde ",
        ": 2 (sin respuesta o error del servidor). El canal se marca en error si siguen durante 5 minutos.",
    ),
}


def _two_provider_failures_as_the_owner_sees_them(
    client: TestClient, db: Database, tenant: Tenant, channel_id: int
) -> datetime:
    """Two provider failures a minute apart on the channel, still short of an outage, and the owner
    signed in to the pages with a time zone of their own; the run's start."""
    with db.transaction() as session:
        user = session.get(User, tenant.owner_id)
        assert user is not None
        user.timezone = VIEWER_ZONE.key  # times on the pages are the viewer's
    start = utcnow().replace(microsecond=0) + timedelta(seconds=1)
    _record_provider_failures(db, channel_id, start, start + timedelta(minutes=1))
    assert _health(db, channel_id) == Health.CONNECTED
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    return start


def _assert_provider_run_shown(page: httpx.Response, language: str, start: datetime) -> None:
    """The page shows the run: its start in the viewer's time, its count and when it becomes an outage."""
    assert page.status_code == 200
    notes = PROVIDER_RUN_NOTE.findall(page.text)
    prefix, suffix = PROVIDER_RUN_WORDS[language]
    local = start.astimezone(VIEWER_ZONE)
    # Spanish short times do not pad the hour ("0:06"), English ones are on a 12-hour clock.
    clock = f"{local.hour}:{local:%M}" if language == "es" else f"{local.hour % 12 or 12}:{local:%M}"
    [note] = notes
    assert note.startswith(prefix), note
    assert note.endswith(suffix), note
    assert clock in note[len(prefix) : -len(suffix)], note


def test_a_run_of_provider_failures_is_shown_while_it_builds(client: TestClient, db: Database, tenant: Tenant) -> None:
    owner = sign_in(db, tenant, Role.OWNER).headers
    with fake_telegram() as fake:
        created = _connect_telegram(client, fake, owner)
    channel_id = int(created.json()["id"])
    assert created.json()["provider_failures"] is None
    start = _two_provider_failures_as_the_owner_sees_them(client, db, tenant, channel_id)

    shown = client.get(f"/api/v1/channels/{channel_id}", headers=owner).json()
    assert shown["health"]["state"] == "connected"
    assert shown["provider_failures"] == {"count": 2, "since": start.isoformat()}
    listed = client.get("/api/v1/channels", headers=owner).json()
    assert [c["provider_failures"] for c in listed if c["id"] == channel_id] == [
        {"count": 2, "since": start.isoformat()}
    ]
    refused = client.patch(
        f"/api/v1/channels/{channel_id}", json={"provider_failures": None}, headers=owner
    )  # read-only, like health
    assert refused.status_code == 422, refused.text
    assert set(refused.json()["error"]) == {"code", "message", "details"}

    page = client.get(f"/settings/channels/{channel_id}", headers={"Accept-Language": "es"})
    _assert_provider_run_shown(page, "es", start)
    _assert_provider_run_shown(client.get("/settings/channels", headers={"Accept-Language": "en"}), "en", start)

    with db.transaction() as session:
        touch_sent(session, channel_id, start + timedelta(minutes=2))  # it works again: nothing to show
    assert 'data-testid="provider-run"' not in client.get(f"/settings/channels/{channel_id}").text
    assert 'data-testid="provider-run"' not in client.get("/settings/channels").text
    assert client.get(f"/api/v1/channels/{channel_id}", headers=owner).json()["provider_failures"] is None


def _whatsapp(request: pytest.FixtureRequest, client: TestClient, db: Database, tenant: Tenant) -> int:
    return whatsapp_channel(db, tenant).id


def _twilio(request: pytest.FixtureRequest, client: TestClient, db: Database, tenant: Tenant) -> int:
    with fake_twilio() as fake:
        fake.add_number()
        return int(twilio_connect(client, db, tenant, fake)["id"])


def _email(request: pytest.FixtureRequest, client: TestClient, db: Database, tenant: Tenant) -> int:
    return email_channel(db, tenant, request.getfixturevalue("mail")).id


def _messenger(request: pytest.FixtureRequest, client: TestClient, db: Database, tenant: Tenant) -> int:
    """A Page's channel as connecting leaves it; its page asks Meta nothing."""
    with db.transaction() as session:
        config = {"page_id": meta.PAGE_ID}
        return do_create_channel(session, tenant.actor(), "messenger", "Página", config, MESSENGER_SECRETS).id


# Besides Telegram's, the pages with the note: WhatsApp's, the SMS page (Twilio here; Vonage and Bird
# share it), the mailbox's and Meta's (Messenger here; Instagram shares it).
CHANNEL_KINDS: dict[str, Callable[[pytest.FixtureRequest, TestClient, Database, Tenant], int]] = {
    "whatsapp": _whatsapp,
    "twilio": _twilio,
    "email": _email,
    "messenger": _messenger,
}


@pytest.mark.parametrize("kind", CHANNEL_KINDS)
def test_every_provider_channel_s_page_shows_its_run_of_provider_failures(
    request: pytest.FixtureRequest, client: TestClient, db: Database, tenant: Tenant, kind: str
) -> None:
    channel_id = CHANNEL_KINDS[kind](request, client, db, tenant)
    start = _two_provider_failures_as_the_owner_sees_them(client, db, tenant, channel_id)
    for language in ("en", "es"):
        page = client.get(f"/settings/channels/{channel_id}", headers={"Accept-Language": language})
        _assert_provider_run_shown(page, language, start)
    with db.transaction() as session:
        touch_sent(session, channel_id, start + timedelta(minutes=2))
    assert 'data-testid="provider-run"' not in client.get(f"/settings/channels/{channel_id}").text
