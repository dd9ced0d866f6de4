"""Failures the SMS providers report later, in a status callback, judged by the same table as a
refused send of the same provider: an account suspended or not registered puts the channel in error
once (its owners told), a customer's unreachable number fails that message alone. Twilio's status
callback `ErrorCode`, Vonage's delivery receipt `err-code` and Messages API status `error`, Bird's
`failure`. SQLite and PostgreSQL."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tertulia.channels import health
from tertulia.channels.adapters import bird, twilio, vonage
from tertulia.channels.health import Health, health_of
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, Fault
from tertulia.conversations.models import Message
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.channels import twilio_samples as tw
from tests.channels.fake_bird import FakeBird, fake_bird, outbound_status
from tests.channels.fake_bird import inbound as bird_inbound
from tests.channels.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, NUMBER, FakeTwilio, fake_twilio
from tests.channels.fake_vonage import CUSTOMER as VONAGE_CUSTOMER
from tests.channels.fake_vonage import NUMBER as VONAGE_NUMBER
from tests.channels.fake_vonage import FakeVonage, fake_vonage
from tests.channels.support import channel_events, channel_messages, connect, send_reply
from tests.channels.test_bird import _connect as bird_connect
from tests.channels.test_vonage import _connect as vonage_connect
from tests.channels.test_vonage import _inbound as vonage_inbound
from tests.channels.test_whatsapp import _connected as whatsapp_channel
from tests.conftest import Tenant
from tests.fakes import callbacks_written

pytestmark = pytest.mark.usefixtures("immediate_queue")


def _state(db: Database, channel_id: int) -> Health:
    with db.transaction(write=False) as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        return health_of(channel).state


def _message(db: Database, message_id: int) -> tuple[DeliveryStatus | None, str | None]:
    with db.transaction(write=False) as session:
        found = session.get(Message, message_id)
        assert found is not None
        return found.status, found.status_reason


# ----- Twilio -----------------------------------------------------------------------------------------


@pytest.fixture
def twilio_fake() -> Iterator[FakeTwilio]:
    with fake_twilio() as server:
        server.add_number()
        yield server


@pytest.mark.parametrize("code", [*twilio.FAULTS, "30009"])
def test_twilio_a_status_s_error_code_means_what_it_means_when_a_send_is_refused(code: str) -> None:
    """One table, two paths: the fault of a status callback's ErrorCode is the refused send's."""
    with pytest.raises(twilio.ChannelError) as refused:
        twilio._result(httpx.Response(400, json={"code": int(code), "message": "m", "status": 400}))
    (reported,) = twilio._status(tw.status("SM" + "0" * 32, "undelivered", error_code=code))
    assert reported.error is not None
    assert (reported.error.fault, reported.error.code) == (refused.value.fault, code)


def _twilio_conversation(client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio) -> tuple[int, int]:
    config = {"api_base_url": fake.url, "account_sid": ACCOUNT_SID, "from_number": NUMBER}
    channel = connect(client, db, tenant, "twilio", config, {"auth_token": AUTH_TOKEN})
    assert fake.deliver(client, tw.inbound("SM" + "9" * 32, "Hola")).status_code == 200
    callbacks_written(db)
    return channel["id"], channel_messages(db, channel["id"])[0].conversation_id


def test_twilio_a_suspended_account_reported_later_puts_the_channel_in_error_once(
    client: TestClient, db: Database, tenant: Tenant, twilio_fake: FakeTwilio
) -> None:
    channel_id, conversation_id = _twilio_conversation(client, db, tenant, twilio_fake)
    unreachable = send_reply(client, db, tenant, conversation_id, "¿Sigue interesado?")
    suspended = send_reply(client, db, tenant, conversation_id, "¿Hola?")
    later = send_reply(client, db, tenant, conversation_id, "¿Hola otra vez?")

    # Twilio's status callback (tests/channels/twilio_samples.py: twilio.com/docs/messaging/guides/
    # outbound-message-logging) with the codes of twilio.com/docs/api/errors/30003 and /30002.
    # A customer's unreachable handset (30003): that message failed, the channel is fine.
    assert twilio_fake.status(client, str(unreachable.provider_message_id), "undelivered", "30003").status_code == 200
    callbacks_written(db)
    assert _message(db, unreachable.id) == (DeliveryStatus.FAILED, "30003: Unreachable destination handset")
    assert (_state(db, channel_id), channel_events(db, tenant.workspace_id)) == (Health.CONNECTED, [])

    # The account suspended after Twilio queued the message (30002): the channel's.
    for sid in (suspended.provider_message_id, later.provider_message_id):
        assert twilio_fake.status(client, str(sid), "failed", "30002").status_code == 200
        callbacks_written(db)
    assert _message(db, suspended.id) == (DeliveryStatus.FAILED, "30002: Account suspended")
    assert _state(db, channel_id) == Health.ERROR
    assert channel_events(db, tenant.workspace_id) == [("channel.errored", "account", "30002")]

    # Twilio goes on accepting sends: no sign of life. A message delivered is one.
    accepted = [send_reply(client, db, tenant, conversation_id, f"Intento {n}") for n in range(3)]
    assert _state(db, channel_id) == Health.ERROR
    assert twilio_fake.status(client, str(accepted[-1].provider_message_id), "delivered").status_code == 200
    callbacks_written(db)
    assert _state(db, channel_id) == Health.CONNECTED
    assert channel_events(db, tenant.workspace_id) == [
        ("channel.errored", "account", "30002"),
        ("channel.recovered", None, None),
    ]


# ----- Vonage -----------------------------------------------------------------------------------------


@pytest.fixture
def vonage_fake() -> Iterator[FakeVonage]:
    with fake_vonage() as server:
        server.add_number()
        yield server


@pytest.mark.parametrize("code", [code for code in vonage.FAULTS if code.isdigit() and len(code) == 4])
def test_vonage_a_messages_api_status_error_means_what_it_means_when_a_send_is_refused(code: str) -> None:
    problem = {"type": f"https://developer.nexmo.com/api-errors/messages-olympus#{code}", "title": "t", "detail": "d"}
    with pytest.raises(vonage.ChannelError) as refused:
        vonage._messages_result(httpx.Response(400, json=problem))
    failed = vonage._status_error({**problem, "title": int(code)}, "d")
    assert failed is not None
    assert (failed.fault, failed.code) == (refused.value.fault, code)


def _vonage_reply_ids(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeVonage, channel: dict[str, Any], count: int
) -> list[Message]:
    if channel["config"].get("api") == "messages":
        inbound = {
            "channel": "sms",
            "message_uuid": "cccccccc-bbbb-cccc-dddd-0123456789ab",
            "to": VONAGE_NUMBER.lstrip("+"),
            "from": VONAGE_CUSTOMER.lstrip("+"),
            "timestamp": "2026-11-26T12:00:00Z",
            "message_type": "text",
            "text": "Hola",
            "sms": {"num_messages": "1"},
        }
        assert fake.deliver_event(client, channel["callback_url"], inbound).status_code == 200
    else:
        assert fake.deliver(client, vonage_inbound("0C0000000000009", "Hola")).status_code == 200
    callbacks_written(db)
    conversation_id = channel_messages(db, channel["id"])[0].conversation_id
    return [send_reply(client, db, tenant, conversation_id, f"Respuesta {n}") for n in range(count)]


def test_vonage_a_receipt_s_err_code_fails_the_message_or_the_channel(
    client: TestClient, db: Database, tenant: Tenant, vonage_fake: FakeVonage
) -> None:
    channel = vonage_connect(client, db, tenant, vonage_fake)
    absent, unregistered = _vonage_reply_ids(client, db, tenant, vonage_fake, channel, 2)

    # developer.vonage.com/messaging/sms/guides/delivery-receipts, "DLR error codes": err-code 3,
    # "Absent Subscriber - Permanent", the recipient's number is no longer active.
    assert vonage_fake.receipt(client, str(absent.provider_message_id), "failed", "3").status_code == 200
    callbacks_written(db)
    assert _message(db, absent.id) == (DeliveryStatus.FAILED, "3: Absent subscriber - permanent")
    assert (_state(db, channel["id"]), channel_events(db, tenant.workspace_id)) == (Health.CONNECTED, [])

    # The same table: err-code 51, "Header Filter", "the header ID (`from` phone number) was incorrect
    # or missing" (India's DLT registration): the channel's sender, not this customer.
    assert vonage_fake.receipt(client, str(unregistered.provider_message_id), "rejected", "51").status_code == 200
    callbacks_written(db)
    assert _message(db, unregistered.id) == (DeliveryStatus.FAILED, "51: Header filter")
    assert _state(db, channel["id"]) == Health.ERROR
    assert channel_events(db, tenant.workspace_id) == [("channel.errored", "account", "dlr:51")]


# The documented err-codes that are the channel's (the DLR error codes table): 16 the account's
# requests per period, 39 a sender that is not the account's US number, 50 and 51 its India DLT entity
# id and header. The others are the recipient's, their carrier's or the route's.
CHANNEL_ERR_CODES = {"16", "39", "50", "51"}


@pytest.mark.parametrize("err_code", sorted(vonage.DLR_ERRORS, key=int))
def test_vonage_a_receipt_s_err_code_is_the_channel_s_only_when_documented_so(err_code: str) -> None:
    """A receipt's err-code is tagged "dlr:" so that err-code 9 (opted out) is not read as send
    status 9 (the account out of credit)."""
    params = {"messageId": "0B00000127FDBC63", "msisdn": "447547232824", "status": "failed", "err-code": err_code}
    (update,) = vonage._dlr(params)
    assert update.status == DeliveryStatus.FAILED
    if err_code == "0":
        assert update.error is None
        return
    assert update.error is not None
    assert (update.error.code, update.error.fault) == (
        f"dlr:{err_code}",
        Fault.ACCOUNT if err_code in CHANNEL_ERR_CODES else Fault.MESSAGE,
    )
    assert update.reason == f"{err_code}: {vonage.DLR_ERRORS[err_code]}"


def test_vonage_an_err_code_vonage_does_not_document_fails_its_message_with_a_pointer() -> None:
    params = {"messageId": "0B00000127FDBC63", "msisdn": "447547232824", "status": "failed", "err-code": "17"}
    (update,) = vonage._dlr(params)
    assert update.reason == "17: see the Vonage delivery receipt codes"
    assert update.error is not None
    assert update.error.fault == Fault.MESSAGE


def _messages_status(sent: dict[str, Any], code: int, detail: str) -> dict[str, Any]:
    """A rejected SMS's status webhook (developer.vonage.com/en/messages/concepts/messages-status-callbacks),
    its error one of developer.vonage.com/api-errors/messages-olympus."""
    return {
        "message_uuid": sent["id"],
        "to": sent["to"],
        "from": sent["from"],
        "timestamp": "2026-11-26T12:00:01.000Z",
        "status": "rejected",
        "error": {
            "type": f"https://developer.nexmo.com/api-errors/messages-olympus#{code}",
            "title": code,
            "detail": detail,
            "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
        },
        "usage": {"currency": "EUR", "price": "0.0333"},
        "channel": "sms",
    }


def test_vonage_a_messages_api_rejection_fails_the_message_or_the_channel(
    client: TestClient, db: Database, tenant: Tenant, vonage_fake: FakeVonage
) -> None:
    channel = vonage_connect(client, db, tenant, vonage_fake, api="messages", account_api_base_url=vonage_fake.url)
    barred, account_barred = _vonage_reply_ids(client, db, tenant, vonage_fake, channel, 2)
    first, second = vonage_fake.sent
    url = channel["callback_url"]

    number_barred = "Number barred - The number you are trying to submit to is blacklisted"
    assert vonage_fake.deliver_event(client, url, _messages_status(first, 1050, number_barred)).status_code == 200
    callbacks_written(db)
    assert _message(db, barred.id) == (DeliveryStatus.FAILED, f"1050: {number_barred}")
    assert (_state(db, channel["id"]), channel_events(db, tenant.workspace_id)) == (Health.CONNECTED, [])

    account = "Partner account barred - The api_key you supplied is for an account that has been barred"
    assert vonage_fake.deliver_event(client, url, _messages_status(second, 1060, account)).status_code == 200
    callbacks_written(db)
    assert _message(db, account_barred.id) == (DeliveryStatus.FAILED, f"1060: {account}")
    assert _state(db, channel["id"]) == Health.ERROR
    assert channel_events(db, tenant.workspace_id) == [("channel.errored", "account", "1060")]


# ----- Bird -------------------------------------------------------------------------------------------


@pytest.fixture
def bird_fake() -> Iterator[FakeBird]:
    with fake_bird() as server:
        yield server


def _bird_failed(message_id: str, status: str, failure: dict[str, Any], reason: str | None) -> dict[str, Any]:
    """A failed message (`delivery_failed` or `sending_failed`) in its `sms.outbound` event, with the
    `reason` and `failure` of docs.bird.com/api/channels-api/message-status-and-interactions/
    message-failure-codes."""
    event = outbound_status(message_id, status, reason=reason)
    event["payload"]["failure"] = failure
    return event


def test_bird_a_failure_fails_the_message_or_the_channel(
    client: TestClient, db: Database, tenant: Tenant, bird_fake: FakeBird
) -> None:
    channel = bird_connect(client, db, tenant, bird_fake)
    url = channel["callback_url"]
    assert (
        bird_fake.deliver(client, url, bird_inbound("11111111-0000-4000-8000-000000000009", "Hola")).status_code == 200
    )
    callbacks_written(db)
    conversation_id = channel_messages(db, channel["id"])[0].conversation_id
    unknown = send_reply(client, db, tenant, conversation_id, "¿Sigue interesado?")
    unpaid = send_reply(client, db, tenant, conversation_id, "¿Hola?")

    # The example of message-failure-codes and message-failure-sources, verbatim: an unknown
    # subscriber, the message's.
    subscriber = "details: unknown subscriber; reason: unknown_subscriber; code: 1"
    failure = {"code": 15005, "source": {"name": "sms-messagebird", "code": "1"}}
    unknown_event = _bird_failed(str(unknown.provider_message_id), "delivery_failed", failure, subscriber)
    assert bird_fake.deliver(client, url, unknown_event).status_code == 200
    callbacks_written(db)
    assert _message(db, unknown.id) == (DeliveryStatus.FAILED, subscriber)
    assert (_state(db, channel["id"]), channel_events(db, tenant.workspace_id)) == (Health.CONNECTED, [])

    # A failure whose source is "accounting": per message-failure-sources, "an accounting/billing
    # service error (before being sent to a third-party platform)", hence `sending_failed`. Neither
    # that page nor message-failure-codes gives the code or the reason such a failure carries, so
    # this payload has neither rather than made-up ones: the source alone makes it the workspace's.
    unpaid_event = _bird_failed(
        str(unpaid.provider_message_id), "sending_failed", {"source": {"name": "accounting"}}, None
    )
    assert bird_fake.deliver(client, url, unpaid_event).status_code == 200
    callbacks_written(db)
    assert _message(db, unpaid.id) == (DeliveryStatus.FAILED, "sending_failed")
    assert _state(db, channel["id"]) == Health.ERROR
    assert channel_events(db, tenant.workspace_id) == [("channel.errored", "account", None)]


def test_bird_service_failures_are_the_provider_s_and_failures_without_a_code_no_error() -> None:
    # message-failure-codes: 12001 DEPENDENCY_ERROR, "a generic internal error from dependencies";
    # message-failure-sources: "pre-processing", a failure before any third-party platform.
    provider = bird._failure_error({"code": 12001, "source": {"name": "pre-processing"}}, "r")
    assert provider is not None
    assert provider.fault == Fault.PROVIDER
    # docs.bird.com/api/channels-api/message-status-and-interactions/message-failure-sources/
    # sms-platform-extended-error-codes, verbatim: a carrier's network error, that message's.
    network = bird._failure_error(
        {"code": 15001, "source": {"name": "sms-messagebird", "code": "34"}},
        "details: system failure; reason: received_network_error; code: 34",
    )
    assert network is not None
    assert (network.fault, network.code) == (Fault.MESSAGE, "15001")
    assert bird._failure_error({}, "r") is None
    assert bird._failure_error({"source": {"name": "sms-messagebird"}}, "r") is None
    assert health.status_failure([]) is None


def test_an_older_refused_send_does_not_end_an_error_reported_later_without_an_event(
    db: Database, tenant: Tenant
) -> None:
    """A status callback's error (t), a send accepted (t+2), then a refusal the outbox timed before
    that send (t+1), written last: the channel stays in error, as no callback has shown it works."""
    channel = whatsapp_channel(db, tenant)
    start = utcnow()
    unpaid = twilio.PermanentError("30002: Account suspended", code="30002", fault=Fault.ACCOUNT)
    refused = twilio.PermanentError("Authenticate (20003)", code="20003", fault=Fault.CREDENTIALS)
    with db.transaction() as session:
        health.record_failure(session, channel.id, unpaid, start, from_status=True)
        health.touch_sent(session, channel.id, start + timedelta(seconds=2))
        health.record_failure(session, channel.id, refused, start + timedelta(seconds=1))
    assert _state(db, channel.id) == Health.ERROR
    assert channel_events(db, tenant.workspace_id) == [("channel.errored", "account", "30002")]
    with db.transaction() as session:
        health.record_failure(session, channel.id, refused, start + timedelta(seconds=3))
        health.touch_sent(session, channel.id, start + timedelta(seconds=4))  # a refusal's kind: ended
    assert _state(db, channel.id) == Health.CONNECTED
    assert [kind for kind, _fault, _code in channel_events(db, tenant.workspace_id)] == [
        "channel.errored",
        "channel.recovered",
    ]
