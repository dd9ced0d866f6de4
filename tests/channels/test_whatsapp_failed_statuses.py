"""Failures Meta reports later, in a `failed` status with its `errors[]`: judged by the same codes and
the same table as a refused send, so a locked, unpaid or unregistered account, a revoked token or a
throttled number puts the channel in error (once, its owners and managers told) even though Meta
accepted the send, while a customer's refusal only fails the message. Only a later callback (a
delivered status, a customer's message) ends such an error: Meta accepting the next send proves
nothing, since that is how the failure began. SQLite and PostgreSQL."""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from tertulia.channels import health
from tertulia.channels.adapters import meta_graph
from tertulia.channels.adapters.whatsapp import FAULTS, RETRYABLE_CODES, graph_error, status_error
from tertulia.channels.health import Health, health_of
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, Fault
from tertulia.conversations.ingress.callbacks import callback_spool, process_callbacks
from tertulia.conversations.models import Message
from tertulia.conversations.outbox import process_outbound
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.channels import whatsapp_samples as wa
from tests.channels.support import channel_events
from tests.channels.test_whatsapp import _connected, _parse, _post
from tests.channels.whatsapp_graph import FakeGraph, fake_graph
from tests.conftest import Tenant
from tests.notifications.test_channel_health import _notifications

CHANNEL_FAULTS = {
    131031: Fault.ACCOUNT,  # account locked
    131042: Fault.ACCOUNT,  # payment
    131045: Fault.ACCOUNT,  # the number's registration (certificate)
    368: Fault.ACCOUNT,  # blocked for policy violations
    190: Fault.CREDENTIALS,  # the token
    131005: Fault.CREDENTIALS,  # access denied
    130429: Fault.ACCOUNT,  # the number's throughput
    131048: Fault.ACCOUNT,  # spam rate limit on the number
    80007: Fault.ACCOUNT,  # the business account's rate limit
}


def _reason(code: int) -> str:
    """Meta's words for the code, as the message's reason and the channel's error show them."""
    title, details = wa.ASYNC_ERRORS[code]
    return f"(#{code}) {title}: {details}"


def _customer_writes(provider_id: str, text: str) -> dict[str, Any]:
    """Sheena writes again (the message webhook's shape, as wa.TEXT)."""
    message = {"from": "16505551234", "id": provider_id, "timestamp": "1749416400", "type": "text"}
    return wa.envelope(
        contacts=[{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        messages=[{**message, "text": {"body": text}}],
    )


@pytest.mark.parametrize("code", wa.CHANNEL_LEVEL_ASYNC)
def test_a_failed_status_whose_error_is_the_channel_s_is_the_channel_s_failure(code: int) -> None:
    (failed,) = _parse(wa.failed_status("wamid.x", code)).statuses
    assert (failed.status, failed.reason) == (DeliveryStatus.FAILED, _reason(code))
    assert failed.error is not None
    assert (failed.error.fault, failed.error.code) == (CHANNEL_FAULTS[code], f"whatsapp:{code}")
    assert health.status_failure([failed]) is failed.error


@pytest.mark.parametrize("code", wa.MESSAGE_LEVEL_ASYNC)
def test_a_failed_status_whose_error_is_the_message_s_fails_only_the_message(code: int) -> None:
    (failed,) = _parse(wa.failed_status("wamid.x", code)).statuses
    assert failed.error is not None
    assert (failed.error.fault, failed.error.channel_level) == (Fault.MESSAGE, False)
    assert health.status_failure([failed]) is None


def test_meta_s_own_failure_reported_later_counts_as_the_provider_s() -> None:
    (failed,) = _parse(wa.failed_status("wamid.x", 131000)).statuses
    assert failed.error is not None
    assert failed.error.fault == Fault.PROVIDER  # an outage only if it goes on (channels/health.py)


def test_statuses_without_an_error_are_no_failure() -> None:
    (delivered,) = _parse(wa.DELIVERED).statuses
    assert (delivered.error, health.status_failure([delivered])) == (None, None)
    failed_bare = wa.envelope(statuses=[{"id": "wamid.y", "status": "failed", "timestamp": "1698266950"}])
    (failed,) = _parse(failed_bare).statuses
    assert (failed.status, failed.reason, failed.error) == (DeliveryStatus.FAILED, None, None)


# Codes in our tables, Graph's shared ones, and any other.
_KNOWN = sorted(
    {code for code, _subcode in FAULTS} | {code for code, _sub in meta_graph.GRAPH_FAULTS} | set(RETRYABLE_CODES)
)


@given(code=st.one_of(st.sampled_from(_KNOWN), st.integers(min_value=0, max_value=200_000)))
def test_a_code_reported_later_is_the_same_fault_as_when_a_send_is_refused(code: int) -> None:
    """One table, two paths: what Meta answers a send with (HTTP 400, Graph's error body) and what it
    reports later in a status agree on whose fault each code is."""
    title = f"error {code}"
    refused = graph_error(httpx.Response(400, json=wa.graph_error(code, title)))
    reported = status_error({"code": code, "title": title, "message": title, "error_data": {"details": "d"}})
    assert (reported.fault, reported.code, type(reported)) == (refused.fault, refused.code, type(refused))


# ----- through the callbacks, on both databases ------------------------------------------------------


Clock = Callable[[], datetime]


def _turns() -> Clock:
    """A clock 7 s further ahead of the real one at each call: one message every 6 s to the same
    customer, so each goes at once. Ahead of the real clock, not of a fixed start: a send the queue
    made inline is timed by the real clock, and on a slow machine the real clock would overtake a
    fixed start's turns, leaving the next send waiting for a turn this clock never reaches."""
    calls = iter(range(1, 1000))
    return lambda: utcnow() + timedelta(seconds=7 * next(calls))


def _accepted(
    client: TestClient, db: Database, tenant: Tenant, channel: Channel, count: int, clock: Clock | None = None
) -> list[str]:
    """`count` messages to Sheena (who has just written) that Meta accepted; their wamids."""
    _post(client, channel, wa.TEXT)
    return _sent(client, db, tenant, channel, count, clock or _turns())


def _sent(client: TestClient, db: Database, tenant: Tenant, channel: Channel, count: int, clock: Clock) -> list[str]:
    """`count` more messages to Sheena that Meta accepted, with no callback between them, each in its
    turn on `clock`; their wamids."""
    with db.transaction(write=False) as session:
        contact_id = session.scalar(select(Message.contact_id).where(Message.provider_message_id == wa.TEXT_ID))
    ids: list[int] = []
    for n in range(count):
        body = {"channel_id": channel.id, "message": {"type": "text", "text": f"mensaje {n}"}}
        posted = client.post(f"/api/v1/contacts/id:{contact_id}/messages", headers=tenant.headers, json=body)
        assert posted.status_code == 201, posted.text
        ids.append(int(posted.json()["id"]))
        process_outbound(db, ids[-1], clock)  # sent at once, or in its turn if the queue paced it
    with db.transaction(write=False) as session:
        messages = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))}
    assert all(messages[i].status == DeliveryStatus.SENT for i in ids)
    return [str(messages[i].provider_message_id) for i in ids]


def _state(db: Database, channel_id: int) -> tuple[Health, str | None]:
    with db.transaction(write=False) as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        shown = health_of(channel)
        return shown.state, shown.last_error


def _message(db: Database, provider_id: str) -> tuple[DeliveryStatus, str | None]:
    with db.transaction(write=False) as session:
        found = session.scalars(select(Message).where(Message.provider_message_id == provider_id)).one()
        return found.status, found.status_reason


@pytest.fixture
def graph() -> Any:
    with fake_graph() as running:
        yield running


@pytest.mark.usefixtures("immediate_queue")
def test_an_account_failure_reported_later_puts_the_channel_in_error_once_until_a_sign_of_life(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connected(db, tenant, api_base_url=graph.base_url)
    locked, unpaid, delivered, refused, blocked = _accepted(client, db, tenant, channel, 5)
    assert _state(db, channel.id) == (Health.CONNECTED, None)

    # Meta accepted the send, then reports the account locked: the callback is no sign of life.
    _post(client, channel, wa.failed_status(locked, 131031))
    assert _message(db, locked) == (DeliveryStatus.FAILED, _reason(131031))
    assert _state(db, channel.id) == (Health.ERROR, _reason(131031))
    assert channel_events(db, tenant.workspace_id) == [("channel.errored", "account", "whatsapp:131031")]
    for user_id in (tenant.owner_id, tenant.manager_id):
        ((kind, link, _unread, params),) = _notifications(db, user_id)
        assert (kind, link) == ("channel_error", f"/settings/channels/{channel.id}")
        assert _reason(131031).startswith(params["excerpt"])  # Meta's words, cut to an excerpt
    assert _notifications(db, tenant.agent_id) == []

    # Another one of the channel's failures while it is in error: shown, nobody told again.
    _post(client, channel, wa.failed_status(unpaid, 131042))
    assert _state(db, channel.id) == (Health.ERROR, _reason(131042))
    assert len(channel_events(db, tenant.workspace_id)) == 1

    # A message delivered is a sign of life: the error is over.
    _post(client, channel, wa.status(delivered, "delivered"))
    assert _state(db, channel.id)[0] == Health.CONNECTED
    assert [kind for kind, _fault, _code in channel_events(db, tenant.workspace_id)] == [
        "channel.errored",
        "channel.recovered",
    ]

    # A customer's refusal reported later fails its message and nothing more.
    _post(client, channel, wa.failed_status(refused, 131026))
    assert _message(db, refused) == (DeliveryStatus.FAILED, _reason(131026))
    assert _state(db, channel.id)[0] == Health.CONNECTED
    assert len(channel_events(db, tenant.workspace_id)) == 2

    # A second outage, ended by a customer's message this time.
    _post(client, channel, wa.failed_status(blocked, 368))
    assert _state(db, channel.id)[0] == Health.ERROR
    _post(client, channel, _customer_writes("wamid.again", "¿Hola?"))
    assert _state(db, channel.id)[0] == Health.CONNECTED
    assert channel_events(db, tenant.workspace_id) == [
        ("channel.errored", "account", "whatsapp:131031"),
        ("channel.recovered", None, None),
        ("channel.errored", "account", "whatsapp:368"),
        ("channel.recovered", None, None),
    ]


@pytest.mark.usefixtures("immediate_queue")
def test_an_error_reported_later_outlasts_accepted_sends_until_a_callback_shows_the_channel_works(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    """An unpaid account: Meta accepts every send and fails it later. The sends Meta keeps accepting
    are no sign of life (that is how the failure began): the channel stays in error, told once, until
    a callback shows it works."""
    channel = _connected(db, tenant, api_base_url=graph.base_url)
    clock = _turns()
    unpaid, delivered = _accepted(client, db, tenant, channel, 2, clock)
    _post(client, channel, wa.failed_status(unpaid, 131042))
    assert _state(db, channel.id) == (Health.ERROR, _reason(131042))
    for _ in range(3):
        _sent(client, db, tenant, channel, 1, clock)
        assert _state(db, channel.id) == (Health.ERROR, _reason(131042))
    assert channel_events(db, tenant.workspace_id) == [("channel.errored", "account", "whatsapp:131042")]

    _post(client, channel, wa.status(delivered, "delivered"))
    assert _state(db, channel.id)[0] == Health.CONNECTED
    assert channel_events(db, tenant.workspace_id) == [
        ("channel.errored", "account", "whatsapp:131042"),
        ("channel.recovered", None, None),
    ]


@pytest.mark.usefixtures("immediate_queue")
def test_a_refused_send_after_an_error_reported_later_is_ended_by_the_next_accepted_send(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    """The last error decides what ends it: a token revoked, reported later, then refused outright when
    sending; once a new token is in place the send Meta accepts ends it, told once each way."""
    channel = _connected(db, tenant, api_base_url=graph.base_url)
    clock = _turns()
    (revoked,) = _accepted(client, db, tenant, channel, 1, clock)
    _post(client, channel, wa.failed_status(revoked, 190))
    graph.fail_next("messages", 401, wa.graph_error(190, "Error validating access token"))
    with db.transaction(write=False) as session:
        contact_id = session.scalar(select(Message.contact_id).where(Message.provider_message_id == wa.TEXT_ID))
    body = {"channel_id": channel.id, "message": {"type": "text", "text": "¿Hola?"}}
    posted = client.post(f"/api/v1/contacts/id:{contact_id}/messages", headers=tenant.headers, json=body)
    assert posted.status_code == 201, posted.text
    process_outbound(db, int(posted.json()["id"]), clock)
    with db.transaction(write=False) as session:
        refused = session.get(Message, int(posted.json()["id"]))
        assert refused is not None
        assert refused.status == DeliveryStatus.FAILED
        stored = session.get(Channel, channel.id)
        assert stored is not None
        assert stored.last_error_from_status is False  # the refused send is the last error now
    assert _state(db, channel.id)[0] == Health.ERROR
    _sent(client, db, tenant, channel, 1, clock)
    assert _state(db, channel.id)[0] == Health.CONNECTED
    assert channel_events(db, tenant.workspace_id) == [
        ("channel.errored", "credentials", "whatsapp:190"),
        ("channel.recovered", None, None),
    ]


@pytest.mark.usefixtures("immediate_queue")
def test_meta_s_own_failures_reported_later_are_counted_not_told(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel = _connected(db, tenant, api_base_url=graph.base_url)
    (failed,) = _accepted(client, db, tenant, channel, 1)
    _post(client, channel, wa.failed_status(failed, 131000))
    assert _message(db, failed)[0] == DeliveryStatus.FAILED
    assert _state(db, channel.id) == (Health.CONNECTED, None)
    assert channel_events(db, tenant.workspace_id) == []
    with db.transaction(write=False) as session:
        assert session.scalar(select(Channel.provider_failures).where(Channel.id == channel.id)) == 1


def _spooled(channel: Channel, data: dict[str, Any], received_at: datetime) -> dict[str, Any]:
    """A spool row for a callback as the callback writer stores it, arrived at `received_at`."""
    return {
        "workspace_id": channel.workspace_id,
        "channel_id": channel.id,
        "method": "POST",
        "url": f"http://testserver/webhooks/{channel.key}",
        "headers": {},
        "query": {},
        "body": wa.body(data),
        "received_at": received_at,
        "attempts": 0,
        "lease_until": None,
    }


@pytest.mark.parametrize("failure_last", [False, True])
def test_in_one_batch_of_callbacks_the_newer_of_a_failure_and_a_sign_of_life_decides(
    db: Database, tenant: Tenant, failure_last: bool
) -> None:
    channel = _connected(db, tenant)
    now = utcnow()
    failed_at, heard_at = (now + timedelta(seconds=1), now) if failure_last else (now, now + timedelta(seconds=1))
    # Statuses of messages sent from elsewhere on the same number: the account is the channel's all the same.
    callback_spool(db).add(
        [
            _spooled(channel, wa.failed_status("wamid.elsewhere1", 131042), failed_at),
            _spooled(channel, wa.status("wamid.elsewhere2", "delivered"), heard_at),
        ]
    )
    assert process_callbacks(db) == 2
    with db.transaction(write=False) as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        assert (stored.last_callback_at, stored.last_error_at) == (heard_at, failed_at)
    if failure_last:
        assert _state(db, channel.id) == (Health.ERROR, _reason(131042))
        assert channel_events(db, tenant.workspace_id) == [("channel.errored", "account", "whatsapp:131042")]
    else:
        assert _state(db, channel.id) == (Health.CONNECTED, _reason(131042))
        assert channel_events(db, tenant.workspace_id) == []
