"""A Vonage SMS channel end to end on both databases, against the local fake Vonage
(tests/channels/fake_vonage.py): connecting (API, CLI), SMS API callbacks signed by the official SDK
(bad signatures stored nowhere, repeats stored once, long SMS reassembled), replies through the outbox
with their delivery receipts (forward only, err-code 9 as an opt-out), Vonage's refusals and
throttling, and the Messages API with its JWT-signed webhooks."""

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner
from vonage_http_client.auth import Auth

from tertulia.channels.adapters import vonage
from tertulia.channels.adapters.vonage import sms_signature
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, Fault, TransientError
from tertulia.cli import app
from tertulia.contacts.models import ContactIdentity
from tertulia.conversations.ingress.callbacks import do_flush_stale_sms_parts
from tertulia.conversations.models import Message, SmsConsent, SmsPart
from tertulia.conversations.sms_parts import PART_WAIT
from tertulia.events.models import EventRecord
from tertulia.kit import db as kit_db
from tertulia.kit import settings as kit_settings
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tests.channels.fake_vonage import (
    API_KEY,
    API_SECRET,
    CUSTOMER,
    NUMBER,
    SIGNATURE_SECRET,
    FakeVonage,
    fake_vonage,
    messages_token,
    signed,
)
from tests.channels.support import channel_messages, connect, connect_response, refused_reply, send_reply
from tests.conftest import Tenant
from tests.conversations.support import sign_in
from tests.fakes import callbacks_written

pytestmark = pytest.mark.usefixtures("immediate_queue")
SECRETS = {"api_secret": API_SECRET, "signature_secret": SIGNATURE_SECRET}


@pytest.fixture
def fake() -> Iterator[FakeVonage]:
    with fake_vonage() as server:
        server.add_number()
        yield server


def _config(fake: FakeVonage, **config: Any) -> dict[str, Any]:
    return {"api_base_url": fake.url, "api_key": API_KEY, "from_number": NUMBER, "signature_method": "sha256", **config}


def _connect(client: TestClient, db: Database, tenant: Tenant, fake: FakeVonage, **config: Any) -> dict[str, Any]:
    secrets = config.pop("secrets", SECRETS)
    return connect(client, db, tenant, "vonage", _config(fake, **config), secrets)


def _inbound(message_id: str, text: str, **extra: str) -> dict[str, str]:
    """An inbound SMS (developer.vonage.com/messaging/sms/guides/inbound-sms, fields as listed there)."""
    return {
        "msisdn": CUSTOMER.lstrip("+"),
        "to": NUMBER.lstrip("+"),
        "messageId": message_id,
        "text": text,
        "type": "text",
        "keyword": text.split(" ", maxsplit=1)[0].upper() if text else "",
        "api-key": API_KEY,
        "message-timestamp": "2026-11-26 12:00:00",
        **extra,
    }


# ----- signatures -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "sha512"])
def test_the_sms_signature_is_the_sdks(method: str) -> None:
    params = {"msisdn": "447400123456", "text": "a=b&c ñ 😀", "messageId": "0A0000001", "timestamp": "1764150000"}
    oracle = Auth(api_key=API_KEY, signature_secret=SIGNATURE_SECRET, signature_method=method)  # type: ignore[arg-type]
    assert sms_signature(SIGNATURE_SECRET, method, params) == oracle.sign_params(dict(params))
    assert oracle.check_signature({**params, "sig": sms_signature(SIGNATURE_SECRET, method, params)})


def test_forged_unsigned_or_fetched_callbacks_store_nothing_and_repeats_are_stored_once(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeVonage
) -> None:
    channel = _connect(client, db, tenant, fake)
    url = fake.numbers[NUMBER.lstrip("+")]["moHttpUrl"]
    assert url == channel["callback_url"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    good = signed(_inbound("0A0000000123ABCD1", "Hola"))
    tampered = {**good, "text": "Hola!"}
    assert client.post(url, content=urlencode(tampered), headers=form).status_code == 403
    assert client.post(url, content=urlencode(_inbound("0A0000000123ABCD1", "Hola")), headers=form).status_code == 403
    wrong = dict(good, sig=sms_signature("another-secret", "sha256", {k: v for k, v in good.items() if k != "sig"}))
    assert client.post(url, content=urlencode(wrong), headers=form).status_code == 403
    assert client.get(url, params=good).status_code == 403  # the webhook method must be POST
    callbacks_written(db)
    assert channel_messages(db, channel["id"]) == []
    assert client.post(url, content=urlencode(good), headers=form).status_code == 200
    assert fake.deliver(client, _inbound("0A0000000123ABCD1", "Hola")).status_code == 200  # Vonage retrying
    as_json = json.dumps(signed(_inbound("0A0000000123ABCD2", "Y en JSON"))).encode()
    assert client.post(url, content=as_json, headers={"Content-Type": "application/json"}).status_code == 200
    callbacks_written(db)
    stored = channel_messages(db, channel["id"])
    assert [(m.text, m.provider_message_id) for m in stored] == [
        ("Hola", "0A0000000123ABCD1"),
        ("Y en JSON", "0A0000000123ABCD2"),
    ]
    with db.transaction(write=False) as session:
        identity = session.scalar(select(ContactIdentity).where(ContactIdentity.contact_id == stored[0].contact_id))
        assert identity is not None
        assert (identity.channel, identity.external_id) == ("vonage", CUSTOMER)


def test_signed_callbacks_older_than_the_tolerance_are_refused_as_replays(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeVonage
) -> None:
    """The SDK stamps and signs now; our clock moved past `signature_max_age` (default 300 s) refuses
    them, either way, for the SMS API's `timestamp` and the Messages API's `iat`; a channel with a
    longer tolerance takes them; a signed callback without a timestamp is refused."""
    channel = _connect(client, db, tenant, fake)
    url = channel["callback_url"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    captured = signed(_inbound("0A0000000777AAAA1", "Hola"))
    # 30 s beyond the tolerance either way: the clock runs on between signing and each request,
    # which on a loaded machine can bring a callback stamped 301 s ahead back within 300 s.
    for moved in (timedelta(seconds=330), timedelta(seconds=-330)):
        with travel(moved):
            assert client.post(url, content=urlencode(captured), headers=form).status_code == 403
    with travel(timedelta(seconds=270)):
        assert client.post(url, content=urlencode(captured), headers=form).status_code == 200
    unstamped = {k: v for k, v in captured.items() if k not in ("sig", "timestamp")}
    unstamped["sig"] = sms_signature(SIGNATURE_SECRET, "sha256", unstamped)
    assert client.post(url, content=urlencode(unstamped), headers=form).status_code == 403
    callbacks_written(db)
    assert [m.provider_message_id for m in channel_messages(db, channel["id"])] == ["0A0000000777AAAA1"]

    patient = _connect(client, db, tenant, fake, signature_max_age="3600", from_number="AcmeShop")
    late = signed(_inbound("0A0000000777AAAA2", "Tarde"))
    with travel(timedelta(minutes=50)):
        assert client.post(patient["callback_url"], content=urlencode(late), headers=form).status_code == 200
    with travel(timedelta(minutes=61)):
        assert client.post(patient["callback_url"], content=urlencode(late), headers=form).status_code == 403

    messages = _connect(client, db, tenant, fake, api="messages", account_api_base_url=fake.url)
    event = {"channel": "sms", "message_uuid": "cccccccc-bbbb-cccc-dddd-0123456789ab", "to": NUMBER.lstrip("+")}
    event |= {"from": CUSTOMER.lstrip("+"), "message_type": "text", "text": "Hola", "sms": {"num_messages": "1"}}
    body = json.dumps(event).encode()
    token = messages_token(body)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with travel(timedelta(seconds=301)):
        assert client.post(messages["callback_url"], content=body, headers=headers).status_code == 403
    assert client.post(messages["callback_url"], content=body, headers=headers).status_code == 200


def test_the_tolerance_is_a_number_of_seconds_within_bounds(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeVonage
) -> None:
    for wrong in ("10", "86401", "five minutes"):
        config = _config(fake, signature_max_age=wrong)
        response = connect_response(client, db, tenant, "vonage", config, SECRETS)
        assert response.status_code == 422, response.text
        assert "config.signature_max_age" in response.json()["error"]["details"]


def test_a_long_sms_is_reassembled_from_its_parts(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeVonage
) -> None:
    channel = _connect(client, db, tenant, fake)
    texts = ["Hola, quería saber si ", "tienen la chaqueta azul ", "en talla M. Gracias."]

    def part(number: int) -> dict[str, str]:
        return _inbound(
            f"0B00000000000{number}",
            texts[number - 1],
            concat="true",
            **{"concat-ref": "108", "concat-total": "3", "concat-part": str(number)},
        )

    for number in (2, 3, 3):  # out of order, one delivered twice
        assert fake.deliver(client, part(number)).status_code == 200
    callbacks_written(db)
    assert channel_messages(db, channel["id"]) == []  # nothing until every part is in
    assert fake.deliver(client, part(1)).status_code == 200
    assert fake.deliver(client, part(2)).status_code == 200  # a late repeat changes nothing
    callbacks_written(db)
    [whole] = channel_messages(db, channel["id"])
    assert whole.text == "".join(texts)
    assert whole.provider_message_id == "0B000000000001"
    assert whole.payload["sms_parts"] == ["0B000000000001", "0B000000000002", "0B000000000003"]


# ----- connecting -------------------------------------------------------------------------------------


def test_connecting_checks_the_credentials_and_points_the_number_at_us(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeVonage
) -> None:
    created = _connect(client, db, tenant, fake)
    assert created["secrets"] == {"api_secret": "set", "signature_secret": "set"}
    assert API_SECRET not in json.dumps(created)
    assert fake.numbers[NUMBER.lstrip("+")]["moHttpUrl"] == created["callback_url"]
    manager = sign_in(db, tenant, Role.MANAGER).headers

    def refused(**config: Any) -> dict[str, Any]:
        secrets = config.pop("secrets", SECRETS)
        response = client.post(
            "/api/v1/channels",
            json={
                "type": "vonage",
                "config": {"api_base_url": fake.url, "api_key": API_KEY, "from_number": NUMBER, **config},
                "secrets": secrets,
            },
            headers=manager,
        )
        assert response.status_code == 422, response.text
        return dict(response.json()["error"]["details"])

    assert refused(secrets={**SECRETS, "api_secret": "wrong"}) == {
        "secrets.api_secret": "Vonage: authentication failed"
    }
    assert refused(from_number="+447911123457") == {
        "config.from_number": "Vonage: the account has no number +447911123457"
    }
    assert "config.signature_method" in refused(signature_method="crc32")
    assert "secrets.signature_secret" in refused(secrets={"api_secret": API_SECRET})
    assert "config.api" in refused(api="voice")
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Channel)) == 1


def test_the_cli_connects_as_the_page_does(
    db: Database, tenant: Tenant, fake: FakeVonage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERTULIA_DATABASE_URL", db.url)
    monkeypatch.setenv("TERTULIA_BASE_URL", "https://crm.example")
    monkeypatch.setenv("VONAGE_API_SECRET", API_SECRET)
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()
    try:
        args = ["channel", "connect", "vonage", "--workspace", tenant.name, "--set", f"api_base_url={fake.url}"]
        args += ["--set", f"api_key={API_KEY}", "--set", f"from_number={NUMBER}"]
        args += ["--set", f"signature_secret={SIGNATURE_SECRET}", "--set-from-env", "api_secret=VONAGE_API_SECRET"]
        done = CliRunner().invoke(app, args)
        assert done.exit_code == 0, done.output
        result = json.loads(done.stdout)
        assert result["callback_url"].startswith("https://crm.example/webhooks/")
        assert fake.numbers[NUMBER.lstrip("+")]["moHttpUrl"] == result["callback_url"]
    finally:
        kit_db.get_database().dispose()
        kit_settings.get_settings.cache_clear()
        kit_db.get_database.cache_clear()
    with db.transaction(write=False) as session:
        channel = session.get(Channel, result["id"])
        assert channel is not None
        assert channel.secrets == SECRETS


# ----- outbound and receipts ------------------------------------------------------------------------------


def test_replies_go_out_and_receipts_only_move_forward_and_an_opt_out_blocks_the_next(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeVonage
) -> None:
    channel = _connect(client, db, tenant, fake)
    assert fake.deliver(client, _inbound("0C0000000000001", "Hola")).status_code == 200
    callbacks_written(db)
    [incoming] = channel_messages(db, channel["id"])
    first = send_reply(client, db, tenant, incoming.conversation_id, "Sí, hay 👍")
    [sent] = fake.sent
    assert (sent["to"], sent["from"], sent["text"], sent["type"], sent["callback"], sent["client-ref"]) == (
        CUSTOMER.lstrip("+"),
        NUMBER.lstrip("+"),
        "Sí, hay 👍",
        "unicode",
        channel["callback_url"],
        f"tertulia-msg-{first.id}",
    )
    assert first.provider_message_id == sent["id"]
    for status in ("delivered", "accepted", "failed"):  # late ones change nothing
        assert fake.receipt(client, sent["id"], status, "0" if status != "failed" else "2").status_code == 200
        callbacks_written(db)
    with db.transaction(write=False) as session:
        stored = session.get(Message, first.id)
        assert stored is not None
        assert (stored.status, stored.status_reason) == (DeliveryStatus.DELIVERED, None)
    second = send_reply(client, db, tenant, incoming.conversation_id, "Oferta")
    assert "type" not in fake.sent[1]  # GSM-7 text goes as text
    assert fake.receipt(client, fake.sent[1]["id"], "rejected", "9").status_code == 200
    callbacks_written(db)
    with db.transaction(write=False) as session:
        failed = session.get(Message, second.id)
        assert failed is not None
        assert (failed.status, failed.status_reason) == (
            DeliveryStatus.FAILED,
            "9: Illegal number: the recipient opted out",
        )
        [consent] = session.scalars(select(SmsConsent)).all()
        assert (consent.recipient, consent.opted_out, consent.keyword) == (CUSTOMER, True, "provider: opted out")
    blocked = refused_reply(client, tenant, incoming.conversation_id, "¿Sigue ahí?")
    assert blocked.startswith(f"{CUSTOMER} opted out of messages from this number")
    assert len(fake.sent) == 2  # refused before any call to Vonage
    assert fake.deliver(client, _inbound("0C0000000000002", "ALTA")).status_code == 200
    callbacks_written(db)
    assert send_reply(client, db, tenant, incoming.conversation_id, "Bienvenida").status == DeliveryStatus.SENT


def test_vonage_refusals_fail_the_message_and_throttling_is_retried(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeVonage
) -> None:
    channel = _connect(client, db, tenant, fake)
    assert fake.deliver(client, _inbound("0D0000000000001", "Hola")).status_code == 200
    callbacks_written(db)
    [incoming] = channel_messages(db, channel["id"])
    fake.barred.add(CUSTOMER.lstrip("+"))
    barred = send_reply(client, db, tenant, incoming.conversation_id, "Hola")
    assert (barred.status, barred.status_reason) == (DeliveryStatus.FAILED, "Number barred. (7)")
    fake.barred.clear()
    # A barred number is that message's failure: the channel still works and no one is told.
    shown = client.get(f"/api/v1/channels/{channel['id']}", headers=sign_in(db, tenant, Role.MANAGER).headers)
    assert (shown.json()["health"]["state"], shown.json()["health"]["last_error"]) == ("connected", None)
    assert _channel_events(db, tenant.workspace_id) == []
    # Status 4 ("Invalid Credentials", as Vonage documents it) is the channel's: it goes into error, once.
    fake.fail_next_sms("4", "Invalid Credentials")
    locked_out = send_reply(client, db, tenant, incoming.conversation_id, "Hola de nuevo")
    assert (locked_out.status, locked_out.status_reason) == (DeliveryStatus.FAILED, "Invalid Credentials (4)")
    assert _channel_events(db, tenant.workspace_id) == [("channel.errored", "credentials", "4")]
    fake.fail_next_sms("1", "Throughput Rate Exceeded - please wait [ 10 ] and retry")
    waiting = send_reply(client, db, tenant, incoming.conversation_id, "Hola otra vez")
    assert waiting.status == DeliveryStatus.PENDING
    with db.transaction(write=False) as session:
        found = session.get(Channel, channel["id"])
        assert found is not None
        assert found.last_error == "Throughput Rate Exceeded - please wait [ 10 ] and retry (1)"


# developer.vonage.com/api-errors/sms (the SMS API specification's x-errors): each status with its
# description and documented resolution. "Back-off and retry" and a throttle or an internal error
# are retried; the account's or the recipient's refusals are not.
@pytest.mark.parametrize(
    ("status", "error_text", "retried", "fault"),
    [
        ("1", "Throttled", True, Fault.ACCOUNT),
        ("5", "Internal Error", True, Fault.PROVIDER),
        ("10", "Too Many Existing Binds", True, Fault.ACCOUNT),
        ("4", "Invalid Credentials", False, Fault.CREDENTIALS),
        ("9", "Partner Quota Violation", False, Fault.ACCOUNT),
        ("7", "Number Barred", False, Fault.MESSAGE),
    ],
)
def test_an_sms_api_status_is_retried_as_vonage_s_resolution_says(
    status: str, error_text: str, retried: bool, fault: Fault
) -> None:
    answer = {"message-count": "1", "messages": [{"status": status, "error-text": error_text}]}
    with pytest.raises(vonage.ChannelError) as refused:
        vonage._sms_result(httpx.Response(200, json=answer))
    assert (isinstance(refused.value, TransientError), refused.value.fault, refused.value.code) == (
        retried,
        fault,
        status,
    )


def _channel_events(db: Database, workspace_id: int) -> list[tuple[str, str | None, str | None]]:
    with db.transaction(write=False) as session:
        rows = session.scalars(
            select(EventRecord)
            .where(EventRecord.workspace_id == workspace_id, EventRecord.type.like("channel.%"))
            .order_by(EventRecord.id)
        )
        return [(row.type, row.payload.get("fault"), row.payload.get("code")) for row in rows]


# ----- the Messages API -----------------------------------------------------------------------------------


def test_the_messages_api_with_jwt_signed_webhooks(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeVonage
) -> None:
    channel = _connect(client, db, tenant, fake, api="messages", account_api_base_url=fake.url)
    assert fake.numbers[NUMBER.lstrip("+")]["moHttpUrl"] == ""  # set on the Vonage Application instead
    url = channel["callback_url"]
    event = {
        "channel": "sms",
        "message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        "to": NUMBER.lstrip("+"),
        "from": CUSTOMER.lstrip("+"),
        "timestamp": "2026-11-26T12:00:00Z",
        "message_type": "text",
        "text": "STOP",
        "sms": {"num_messages": "1"},
    }
    body = json.dumps(event).encode()
    forged = messages_token(body, secret="not-the-signature-secret-of-this-channel")
    assert client.post(url, content=body, headers={"Authorization": f"Bearer {forged}"}).status_code == 403
    other = messages_token(b"{}")  # signed, but for another body
    assert client.post(url, content=body, headers={"Authorization": f"Bearer {other}"}).status_code == 403
    assert fake.deliver_event(client, url, event).status_code == 200
    assert fake.deliver_event(client, url, event).status_code == 200
    callbacks_written(db)
    [incoming] = channel_messages(db, channel["id"])
    assert (incoming.text, incoming.payload["sms_keyword"]) == ("STOP", "opt_out")
    assert "opted out" in refused_reply(client, tenant, incoming.conversation_id, "¿Seguro?")
    assert fake.sent == []
    assert (
        fake.deliver_event(
            client, url, {**event, "message_uuid": "bbbbbbbb-bbbb-cccc-dddd-0123456789ab", "text": "start"}
        ).status_code
        == 200
    )
    callbacks_written(db)
    reply = send_reply(client, db, tenant, incoming.conversation_id, "De vuelta")
    [sent] = fake.sent
    assert (sent["message_type"], sent["channel"], sent["to"], sent["from"], sent["webhook_url"]) == (
        "text",
        "sms",
        CUSTOMER.lstrip("+"),
        NUMBER.lstrip("+"),
        url,
    )
    assert reply.provider_message_id == sent["id"]
    status = {
        "message_uuid": sent["id"],
        "to": sent["to"],
        "from": sent["from"],
        "status": "delivered",
        "channel": "sms",
    }
    assert fake.deliver_event(client, url, status).status_code == 200
    assert fake.deliver_event(client, url, {**status, "status": "submitted"}).status_code == 200
    callbacks_written(db)
    with db.transaction(write=False) as session:
        stored = session.get(Message, reply.id)
        assert stored is not None
        assert stored.status == DeliveryStatus.DELIVERED
    fake.fail_next_messages(422, "Invalid params", "The value of the `to` parameter is invalid.")
    failed = send_reply(client, db, tenant, incoming.conversation_id, "Otra")
    assert (failed.status, failed.status_reason) == (
        DeliveryStatus.FAILED,
        "Invalid params: The value of the `to` parameter is invalid.",
    )


def test_a_long_sms_missing_a_part_is_shown_after_a_while_and_a_late_part_on_its_own(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeVonage
) -> None:
    channel = _connect(client, db, tenant, fake)

    def part(number: int, text: str) -> dict[str, str]:
        return _inbound(
            f"0E00000000000{number}",
            text,
            concat="true",
            **{"concat-ref": "77", "concat-total": "3", "concat-part": str(number)},
        )

    assert fake.deliver(client, part(1, "Primera parte, ")).status_code == 200
    assert fake.deliver(client, part(3, "y la tercera.")).status_code == 200
    callbacks_written(db)
    with db.transaction() as session:
        assert do_flush_stale_sms_parts(session, utcnow()) == 0  # not waited long enough
        session.execute(update(SmsPart).values(received_at=utcnow() - PART_WAIT - timedelta(minutes=1)))
    assert channel_messages(db, channel["id"]) == []
    with db.transaction() as session:
        assert do_flush_stale_sms_parts(session, utcnow()) == 1
    [shown] = channel_messages(db, channel["id"])
    assert shown.text == "Primera parte, y la tercera."
    assert shown.payload["sms_parts_missing"] == [2]
    assert fake.deliver(client, part(2, "la segunda ")).status_code == 200
    callbacks_written(db)
    shown, late = channel_messages(db, channel["id"])
    assert (late.text, late.payload["sms_late_part"], late.conversation_id) == ("la segunda ", 2, shown.conversation_id)
    with db.transaction() as session:
        assert do_flush_stale_sms_parts(session, utcnow()) == 0


def test_help_and_ayuda_are_answered_with_the_configured_reply_once(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeVonage
) -> None:
    reply = "Tienda Lupita: escribe BAJA para no recibir más. Soporte: 555 0100."
    channel = _connect(client, db, tenant, fake, help_reply=reply)
    for message_id, text in (("0D0000000000001", "HELP"), ("0D0000000000002", "  ayuda "), ("0D0000000000003", "Info")):
        assert fake.deliver(client, _inbound(message_id, text)).status_code == 200
    assert fake.deliver(client, _inbound("0D0000000000002", "  ayuda ")).status_code == 200  # Vonage retrying
    assert fake.deliver(client, _inbound("0D0000000000004", "ayuda con mi pedido")).status_code == 200
    callbacks_written(db)
    stored = channel_messages(db, channel["id"])
    assert [m.payload.get("sms_keyword") for m in stored] == ["help", "help", "help", None]
    # One answer per keyword message (a retried callback is not answered again), from the number,
    # through the SMS API.
    assert [(s["to"], s["from"], s["text"]) for s in fake.sent] == [
        (CUSTOMER.lstrip("+"), NUMBER.lstrip("+"), reply)
    ] * 3
    assert fake.deliver(client, _inbound("0D0000000000001", "HELP")).status_code == 200  # retried much later
    callbacks_written(db)
    assert len(fake.sent) == 3
    with db.transaction(write=False) as session:
        assert session.scalars(select(SmsConsent)).all() == []  # asking for help changes no consent


def test_without_a_help_reply_help_is_only_stored(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeVonage
) -> None:
    channel = _connect(client, db, tenant, fake)
    assert fake.deliver(client, _inbound("0D0000000000005", "AYUDA")).status_code == 200
    callbacks_written(db)
    [stored] = channel_messages(db, channel["id"])
    assert (stored.text, stored.payload.get("sms_keyword")) == ("AYUDA", "help")
    assert fake.sent == []
