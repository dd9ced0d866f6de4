"""A Twilio SMS channel end to end on both databases, against the local fake Twilio REST API
(tests/channels/fake_twilio.py): connecting (API, CLI), callbacks signed by the official SDK's
RequestValidator (behind a proxy too), SMS and MMS in, replies out through the outbox with their
status callbacks, Twilio's refusals and throttling, keywords."""

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from twilio.request_validator import HMAC_SHA256, RequestValidator, get_signature_algorithm
from twilio.twiml.messaging_response import MessagingResponse
from typer.testing import CliRunner

from tertulia.channels.adapters import sms
from tertulia.channels.adapters.twilio import SIGNATURE_SETTINGS_HEADER, TwilioAdapter, signature
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, MessageType, WebhookRejected, WebhookRequest
from tertulia.channels.service import do_create_channel
from tertulia.cli import app
from tertulia.contacts.models import Contact, ContactIdentity
from tertulia.conversations.ingress.callbacks import callback_spool
from tertulia.conversations.models import Direction, Message, SmsConsent, StoredFile
from tertulia.conversations.outbox import process_outbound
from tertulia.kit import db as kit_db
from tertulia.kit import queue, storage
from tertulia.kit import settings as kit_settings
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tests.channels import twilio_samples as tw
from tests.channels.fake_twilio import (
    ACCOUNT_SID,
    API_KEY_SECRET,
    API_KEY_SID,
    AUTH_TOKEN,
    NUMBER,
    NUMBER_SID,
    FakeTwilio,
    fake_twilio,
    post_signed,
    sign,
)
from tests.channels.support import channel_messages, connect
from tests.conftest import Tenant
from tests.conversations.support import sign_in
from tests.fakes import callbacks_written

pytestmark = pytest.mark.usefixtures("immediate_queue")


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with fake_twilio() as server:
        server.add_number()
        yield server


def _manager(db: Database, tenant: Tenant) -> dict[str, str]:
    return sign_in(db, tenant, Role.MANAGER).headers


def _connect(client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio, **config: Any) -> dict[str, Any]:
    secrets = config.pop("secrets", {"auth_token": AUTH_TOKEN})
    config = {"api_base_url": fake.url, "account_sid": ACCOUNT_SID, "from_number": NUMBER, **config}
    return connect(client, db, tenant, "twilio", config, secrets)


class _MultiDict(dict[str, str]):
    """A form with repeated names, as the SDK's validator reads one (Flask's MultiDict.getall)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def getall(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


# ----- the signature ----------------------------------------------------------------------------------


def test_the_signature_is_twilios_own() -> None:
    """The published vector (twilio-python tests/unit/test_request_validator.py), and the SDK's
    RequestValidator agreeing with ours on a form with a repeated name and non-ASCII values."""
    vector = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    assert signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", vector) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    url = "https://crm.example/webhooks/abc?x=1"
    params = {"Body": "¿Envían a Mérida? 🚚", "From": "+34612345678", "MediaUrl0": "https://x/y"}
    assert signature(AUTH_TOKEN, url, list(params.items())) == RequestValidator(AUTH_TOKEN).compute_signature(
        url, params
    )
    repeated = [("a", "2"), ("b", "1"), ("a", "1"), ("a", "2")]
    assert signature(AUTH_TOKEN, url, repeated) == RequestValidator(AUTH_TOKEN).compute_signature(
        url, _MultiDict(repeated)
    )


def test_requests_signed_by_the_official_validator_pass_and_tampered_ones_do_not(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio
) -> None:
    channel = _connect(client, db, tenant, fake)
    params = tw.inbound("SM" + "1" * 32, "Hola")
    url = fake.numbers[NUMBER]["sms_url"]
    assert url == channel["callback_url"]
    good = sign(url, params)
    tampered = {**params, "Body": "Hola!"}
    assert client.post(url, content=tw.body(tampered), headers={"X-Twilio-Signature": good}).status_code == 403
    other_url = url + "?extra=1"
    assert client.post(other_url, content=tw.body(params), headers={"X-Twilio-Signature": good}).status_code == 403
    wrong_token = RequestValidator("0" * 32).compute_signature(url, params)
    assert client.post(url, content=tw.body(params), headers={"X-Twilio-Signature": wrong_token}).status_code == 403
    assert client.post(url, content=tw.body(params)).status_code == 403
    callbacks_written(db)
    assert channel_messages(db, channel["id"]) == []
    assert callback_spool(db).waiting() == 0
    assert fake.deliver(client, params).status_code == 200
    callbacks_written(db)
    assert [m.text for m in channel_messages(db, channel["id"])] == ["Hola"]


def test_behind_a_proxy_the_public_url_is_what_is_checked(db: Database, tenant: Tenant) -> None:
    """Twilio signs the public URL; the app sees the proxy's. The registered callback URL and the
    X-Forwarded-* headers both rebuild it, with or without the default port."""
    adapter = TwilioAdapter()
    with db.transaction() as session:
        channel = do_create_channel(
            session,
            tenant.actor(),
            "twilio",
            "SMS",
            {"account_sid": ACCOUNT_SID, "from_number": NUMBER, "callback_url": "https://crm.example/webhooks/k1"},
            {"auth_token": AUTH_TOKEN},
        )
        session.expunge(channel)
    params = tw.inbound("SM" + "2" * 32, "Hola")
    body = tw.body(params)

    def request(url: str, signed_url: str, **headers: str) -> WebhookRequest:
        return WebhookRequest(
            method="POST",
            url=url,
            headers={"x-twilio-signature": sign(signed_url, params), **headers},
            query={},
            body=body,
        )

    internal = "http://10.0.0.5:8000/webhooks/k1"
    adapter.verify_webhook(channel, request(internal, "https://crm.example/webhooks/k1"))
    adapter.verify_webhook(channel, request(internal, "https://crm.example:443/webhooks/k1"))
    forwarded = {"x-forwarded-proto": "https", "x-forwarded-host": "sms.example.org"}
    adapter.verify_webhook(channel, request(internal, "https://sms.example.org/webhooks/k1", **forwarded))
    with pytest.raises(WebhookRejected):
        adapter.verify_webhook(channel, request(internal, "https://elsewhere.example/webhooks/k1"))


SHARED_KEY_SID = "webhooks_sharedkey_0123456789abcdef"
SHARED_KEY_SECRET = "shared-key-secret-for-webhook-rules"
SHARED_KEY_SETTINGS = f"key={SHARED_KEY_SID},algorithm={HMAC_SHA256}"


def _shared_key_signed(url: str, params: dict[str, str], settings: str = SHARED_KEY_SETTINGS) -> dict[str, str]:
    """A callback a Webhook Rule signed with a shared key, as the official SDK signs and names it."""
    algorithm = get_signature_algorithm(settings)
    return {
        "X-Twilio-Signature": RequestValidator(SHARED_KEY_SECRET).compute_signature(url, params, algorithm),
        SIGNATURE_SETTINGS_HEADER: settings,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def test_the_hmac_sha256_variant_is_the_sdks() -> None:
    """Signed with a webhook shared key and HMAC-SHA256, the same string as the auth token's HMAC-SHA1."""
    url = "https://crm.example/webhooks/abc"
    params = {"Body": "¿Envían a Mérida? 🚚", "From": "+34612345678"}
    ours = signature(SHARED_KEY_SECRET, url, list(params.items()), HMAC_SHA256)
    validator = RequestValidator(SHARED_KEY_SECRET)
    assert ours == validator.compute_signature(url, params, HMAC_SHA256)
    assert validator.validate(url, params, ours, algorithm=get_signature_algorithm(SHARED_KEY_SETTINGS))
    assert ours != signature(SHARED_KEY_SECRET, url, list(params.items()))


def test_callbacks_signed_with_a_webhook_shared_key(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio
) -> None:
    """Accepted with the key's secret and the algorithm its settings header names; refused when the
    channel has no secret for it, for another key, an unknown algorithm or a header dropped."""
    without = _connect(client, db, tenant, fake)
    url = fake.numbers[NUMBER]["sms_url"]
    params = tw.inbound("SM" + "5" * 32, "Hola")
    assert client.post(url, content=tw.body(params), headers=_shared_key_signed(url, params)).status_code == 403
    client.delete(f"/api/v1/channels/{without['id']}", headers=tenant.headers)

    channel = _connect(
        client,
        db,
        tenant,
        fake,
        webhook_key_sid=SHARED_KEY_SID,
        secrets={"auth_token": AUTH_TOKEN, "webhook_key_secret": SHARED_KEY_SECRET},
    )
    url = fake.numbers[NUMBER]["sms_url"]
    assert url == channel["callback_url"]
    headers = _shared_key_signed(url, params)
    refused = [
        # The header dropped: read as the auth token's HMAC-SHA1, which it is not.
        {k: v for k, v in headers.items() if k != SIGNATURE_SETTINGS_HEADER},
        _shared_key_signed(url, params, f"key=webhooks_sharedkey_other,algorithm={HMAC_SHA256}"),
        {**headers, SIGNATURE_SETTINGS_HEADER: f"key={SHARED_KEY_SID},algorithm=HMAC_SHA512"},
        # The auth token's signature with the shared key's header.
        {**headers, "X-Twilio-Signature": sign(url, params)},
    ]
    for attempt in refused:
        assert client.post(url, content=tw.body(params), headers=attempt).status_code == 403
    callbacks_written(db)
    assert channel_messages(db, channel["id"]) == []
    answer = client.post(url, content=tw.body(params), headers=headers)
    assert answer.status_code == 200
    # The auth token's own signature still works for callbacks no rule signs.
    assert fake.deliver(client, tw.inbound("SM" + "6" * 32, "Adiós")).status_code == 200
    callbacks_written(db)
    assert [m.text for m in channel_messages(db, channel["id"])] == ["Hola", "Adiós"]


def test_callbacks_are_answered_with_empty_twiml(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio
) -> None:
    """Twilio reads the answer to an incoming message as TwiML: an empty <Response/>, as text/xml,
    the document the SDK's MessagingResponse() writes, makes it send nothing back."""
    _connect(client, db, tenant, fake)
    expected = ElementTree.fromstring(str(MessagingResponse()))  # noqa: S314  (the SDK's own document)
    incoming = fake.deliver(client, tw.inbound("SM" + "7" * 32, "Hola"))
    assert incoming.status_code == 200
    assert incoming.headers["content-type"].split(";")[0] == "text/xml"
    answer = ElementTree.fromstring(incoming.content)  # noqa: S314  (our own answer)
    assert (answer.tag, list(answer), answer.attrib, (answer.text or "").strip()) == (
        expected.tag,
        list(expected),
        expected.attrib,
        "",
    )
    # A refused one is not TwiML: our JSON error.
    refused = client.post(
        fake.numbers[NUMBER]["sms_url"], content=tw.body(tw.inbound("SM" + "8" * 32, "x")), headers={}
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "webhook_rejected"


# ----- connecting ---------------------------------------------------------------------------------------


def test_connecting_checks_the_account_and_points_the_number_at_us(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio
) -> None:
    created = _connect(client, db, tenant, fake)
    assert created["name"] == "Tienda Lupita"
    assert created["secrets"] == {"auth_token": "set"}
    assert AUTH_TOKEN not in json.dumps(created)
    assert fake.numbers[NUMBER]["sms_url"] == created["callback_url"]
    assert created["callback_url"].endswith(f"/webhooks/{created['key']}")
    with db.transaction(write=False) as session:
        channel = session.get(Channel, created["id"])
        assert channel is not None
        assert channel.config["phone_number_sid"] == NUMBER_SID
        assert channel.secrets["auth_token"] == AUTH_TOKEN
    client.post(f"/api/v1/channels/{created['id']}/disconnect", headers=_manager(db, tenant))
    assert fake.numbers[NUMBER]["sms_url"] == ""


def test_refusals_are_shown_beside_the_field_and_nothing_is_kept(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio
) -> None:
    def attempt(**config: Any) -> dict[str, Any]:
        secrets = config.pop("secrets", {"auth_token": AUTH_TOKEN})
        base = {"api_base_url": fake.url, "account_sid": ACCOUNT_SID, "from_number": NUMBER}
        response = client.post(
            "/api/v1/channels",
            json={"type": "twilio", "config": {**base, **config}, "secrets": secrets},
            headers=_manager(db, tenant),
        )
        assert response.status_code == 422, response.text
        return dict(response.json()["error"]["details"])

    assert attempt(secrets={"auth_token": "a" * 32}) == {"secrets.auth_token": "Twilio: Authenticate (20003)"}
    assert attempt(from_number="+14155550199") == {
        "config.from_number": "Twilio: the account has no number +14155550199"
    }
    assert "config.account_sid" in attempt(account_sid="AC123")
    assert "config.from_number" in attempt(from_number="not a number")
    assert "config.from_number" in attempt(from_number="", messaging_service_sid="")
    assert "secrets.api_key_secret" in attempt(api_key_sid=API_KEY_SID)
    assert "config.api_base_url" in attempt(api_base_url="http://127.0.0.1:9")
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Channel)) == 0


def test_the_cli_connects_as_the_page_does(
    db: Database, tenant: Tenant, fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERTULIA_DATABASE_URL", db.url)
    monkeypatch.setenv("TERTULIA_BASE_URL", "https://crm.example")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()
    try:
        runner = CliRunner()
        args = ["channel", "connect", "twilio", "--workspace", tenant.name, "--set", f"api_base_url={fake.url}"]
        args += ["--set", f"account_sid={ACCOUNT_SID}", "--set", f"from_number={NUMBER}"]
        done = runner.invoke(app, [*args, "--set-from-env", "auth_token=TWILIO_AUTH_TOKEN"])
        assert done.exit_code == 0, done.output
        result = json.loads(done.stdout)
        assert set(result) == {"id", "callback_url"}
        assert result["callback_url"].startswith("https://crm.example/webhooks/")
        assert fake.numbers[NUMBER]["sms_url"] == result["callback_url"]
        refused = runner.invoke(app, [*args, "--set", "auth_token=" + "b" * 32])
        assert refused.exit_code == 1
        assert "Authenticate" in refused.output
    finally:
        kit_db.get_database().dispose()
        kit_settings.get_settings.cache_clear()
        kit_db.get_database.cache_clear()
    with db.transaction(write=False) as session:
        channel = session.get(Channel, result["id"])
        assert channel is not None
        assert channel.secrets["auth_token"] == AUTH_TOKEN


# ----- inbound --------------------------------------------------------------------------------------------


def test_an_sms_is_stored_once_for_the_contact_known_by_their_number(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio
) -> None:
    channel = _connect(client, db, tenant, fake)
    with db.transaction() as session:
        session.add(Contact(workspace_id=tenant.workspace_id, first_name="Lupe", phone="+34612345678"))
    params = tw.inbound("SM" + "3" * 32, "¿Tienen talla M?", sender="+34 612 34 56 78")
    assert fake.deliver(client, params).status_code == 200
    assert fake.deliver(client, params).status_code == 200  # Twilio retrying
    callbacks_written(db)
    [stored] = channel_messages(db, channel["id"])
    assert (stored.text, stored.provider_message_id, stored.direction, stored.type) == (
        "¿Tienen talla M?",
        "SM" + "3" * 32,
        Direction.INCOMING,
        MessageType.TEXT,
    )
    with db.transaction(write=False) as session:
        contact = session.get(Contact, stored.contact_id)
        assert contact is not None
        assert (contact.first_name, contact.phone) == ("Lupe", "+34612345678")
        identity = session.scalar(select(ContactIdentity).where(ContactIdentity.contact_id == contact.id))
        assert identity is not None
        assert (identity.channel, identity.external_id) == ("twilio", "+34612345678")


def test_mms_media_becomes_our_files_within_twilios_limits(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio
) -> None:
    channel = _connect(client, db, tenant, fake)
    photo = fake.media_url("MM" + "4" * 32, b"\xff\xd8\xff jpeg", "image/jpeg")
    huge = fake.media_url("MM" + "5" * 32, b"x" * (5 * 1024 * 1024 + 1), "image/png")
    foreign = "https://evil.example/2010-04-01/Accounts/x/Messages/y/Media/z"
    assert fake.deliver(client, tw.mms("MM" + "4" * 32, "así llegó", [(photo, "image/jpeg")])).status_code == 200
    assert (
        fake.deliver(client, tw.mms("MM" + "5" * 32, "", [(huge, "image/png"), (foreign, "image/png")])).status_code
        == 200
    )
    callbacks_written(db)
    first, second = channel_messages(db, channel["id"])
    assert (first.type, first.text) == (MessageType.IMAGE, "así llegó")
    [attachment] = first.attachments
    assert attachment["content_type"] == "image/jpeg"
    with db.transaction(write=False) as session:
        kept = session.get(StoredFile, attachment["file_id"])
        assert kept is not None
        assert kept.conversation_id == first.conversation_id
        assert storage.get_storage().get(kept.storage_key) == b"\xff\xd8\xff jpeg"
    assert [a.get("unavailable") for a in second.attachments] == [
        "larger than Twilio's 5 MB MMS limit",
        "the media URL is not on the Twilio API's host",
    ]


def test_keywords_are_marked_and_help_is_answered(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio
) -> None:
    channel = _connect(client, db, tenant, fake, help_reply="Tienda Lupita: escribe BAJA para no recibir más.")
    for index, text in enumerate(("stop", "Baja", "START", "ayuda", "stop please")):
        assert fake.deliver(client, tw.inbound(f"SM{index:032d}", text)).status_code == 200
    callbacks_written(db)
    stored = channel_messages(db, channel["id"])
    assert [m.payload.get("sms_keyword") for m in stored] == ["opt_out", "opt_out", "opt_in", "help", None]
    [answer] = fake.messages
    assert (answer["To"], answer["From"], answer["Body"]) == (
        tw.CUSTOMER,
        NUMBER,
        "Tienda Lupita: escribe BAJA para no recibir más.",
    )


# ----- outbound and statuses -----------------------------------------------------------------------------


def _incoming(client: TestClient, db: Database, fake: FakeTwilio, channel_id: int) -> Message:
    assert fake.deliver(client, tw.inbound("SM" + "9" * 32, "Hola")).status_code == 200
    callbacks_written(db)
    return channel_messages(db, channel_id)[0]


def test_replies_go_out_with_a_status_callback_and_statuses_only_move_forward(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio
) -> None:
    channel = _connect(
        client,
        db,
        tenant,
        fake,
        api_key_sid=API_KEY_SID,
        secrets={
            "auth_token": AUTH_TOKEN,
            "api_key_secret": API_KEY_SECRET,
        },
    )
    incoming = _incoming(client, db, fake, channel["id"])
    reply = client.post(
        f"/api/v1/conversations/{incoming.conversation_id}/messages",
        json={"text": "Sí, talla M 👕"},
        headers=tenant.headers,
    )
    assert reply.status_code == 201, reply.text
    [sent] = fake.messages
    assert (sent["To"], sent["From"], sent["Body"], sent["StatusCallback"]) == (
        tw.CUSTOMER,
        NUMBER,
        "Sí, talla M 👕",
        channel["callback_url"],
    )

    def state() -> tuple[DeliveryStatus | None, str | None]:
        with db.transaction(write=False) as session:
            message = session.get(Message, reply.json()["id"])
            assert message is not None
            assert message.provider_message_id == sent["sid"]
            return message.status, message.status_reason

    assert state() == (DeliveryStatus.SENT, None)
    for status in ("delivered", "sent", "undelivered"):  # late ones change nothing
        assert fake.status(client, sent["sid"], status, "30003" if status == "undelivered" else None).status_code == 200
        callbacks_written(db)
    assert state() == (DeliveryStatus.DELIVERED, None)
    second = client.post(
        f"/api/v1/conversations/{incoming.conversation_id}/messages",
        json={"text": "¿Sigue ahí?"},
        headers=tenant.headers,
    )
    assert fake.status(client, fake.messages[1]["sid"], "undelivered", "30007").status_code == 200
    callbacks_written(db)
    with db.transaction(write=False) as session:
        failed = session.get(Message, second.json()["id"])
        assert failed is not None
        assert (failed.status, failed.status_reason) == (
            DeliveryStatus.FAILED,
            "30007: Message filtered by the carrier",
        )


def test_a_recipient_who_replied_stop_fails_with_twilios_reason_and_throttling_is_retried(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio
) -> None:
    channel = _connect(client, db, tenant, fake)
    incoming = _incoming(client, db, fake, channel["id"])
    fake.unsubscribed.add(tw.CUSTOMER)
    refused = client.post(
        f"/api/v1/conversations/{incoming.conversation_id}/messages", json={"text": "Oferta"}, headers=tenant.headers
    )
    with db.transaction(write=False) as session:
        failed = session.get(Message, refused.json()["id"])
        assert failed is not None
        assert failed.status == DeliveryStatus.FAILED
        assert failed.status_reason == (
            "The recipient replied STOP: they must text START before they can be sent messages again. "
            "Twilio: Attempt to send to unsubscribed recipient (21610)"
        )
    fake.unsubscribed.clear()
    fake.fail_next(429, 20429, "Too Many Requests")
    throttled = client.post(
        f"/api/v1/conversations/{incoming.conversation_id}/messages", json={"text": "Hola"}, headers=tenant.headers
    )
    with db.transaction(write=False) as session:
        waiting = session.get(Message, throttled.json()["id"])
        assert waiting is not None
        assert waiting.status == DeliveryStatus.PENDING
        found = session.get(Channel, channel["id"])
        assert found is not None
        assert found.last_error == "Too Many Requests (20429)"


# ----- SMS rules ---------------------------------------------------------------------------------------


def test_segments_count_gsm7_extension_characters_and_ucs2() -> None:
    assert sms.segments("a" * 160) == sms.Segments("GSM-7", 160, 1, 160)
    assert sms.segments("a" * 161) == sms.Segments("GSM-7", 161, 2, 153)
    assert sms.segments("€" * 80).segments == 1  # two septets each: 160
    assert sms.segments("€" * 81).segments == 2
    # 69 characters and one emoji: 71 UTF-16 units, over the 70 of one UCS-2 segment.
    assert sms.segments("a" * 69 + "😀") == sms.Segments("UCS-2", 71, 2, 67)
    assert sms.segments("ñ" * 70) == sms.Segments("GSM-7", 70, 1, 160)  # ñ is in GSM-7
    assert sms.segments("ç" * 70) == sms.Segments("UCS-2", 70, 1, 70)  # ç is not
    assert sms.segments("").segments == 0


def test_numbers_are_e164_and_other_senders_keep_their_spelling() -> None:
    assert sms.e164("+34 612 34 56 78") == "+34612345678"
    assert sms.e164("34612345678") == "+34612345678"  # Vonage's msisdn
    assert sms.e164("0034612345678") == "+34612345678"
    assert sms.e164("+1") is None
    assert sms.sender_id("TWILIO") == "TWILIO"
    assert sms.sender_id("+1 415 555 0100") == "+14155550100"


def test_a_verbatim_callback_with_a_redacted_number_is_kept(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio
) -> None:
    channel = _connect(client, db, tenant, fake)
    url = channel["callback_url"]
    params = dict(parse_qsl(tw.INBOUND_VERBATIM.decode(), keep_blank_values=True))
    response = client.post(url, content=tw.INBOUND_VERBATIM, headers={"X-Twilio-Signature": sign(url, params)})
    assert response.status_code == 200
    callbacks_written(db)
    [stored] = channel_messages(db, channel["id"])
    assert (stored.text, stored.provider_message_id) == ("plan 5 potato", tw.INBOUND_VERBATIM_SID)


def test_stop_blocks_the_next_send_with_a_readable_reason_and_start_lifts_it(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio
) -> None:
    channel = _connect(client, db, tenant, fake)
    incoming = _incoming(client, db, fake, channel["id"])
    url = f"/api/v1/conversations/{incoming.conversation_id}/messages"
    # A reply written before the customer's STOP arrives, waiting in the queue.
    queue.huey.immediate = False
    try:
        waiting = client.post(url, json={"text": "¿Le confirmo el pedido?"}, headers=tenant.headers)
        assert waiting.status_code == 201, waiting.text
    finally:
        queue.huey.immediate = True
    stop = tw.inbound("SM" + "a1" * 16, "Baja")
    assert fake.deliver(client, stop).status_code == 200
    assert fake.deliver(client, stop).status_code == 200  # a repeat is the same evidence
    callbacks_written(db)

    def reply(text: str) -> Message:
        response = client.post(url, json={"text": text}, headers=tenant.headers)
        assert response.status_code == 201, response.text
        with db.transaction(write=False) as session:
            found = session.get(Message, response.json()["id"])
            assert found is not None
            return found

    # The waiting reply fails in the outbox, with the reason, before any call to Twilio.
    assert process_outbound(db, waiting.json()["id"]).state == "failed"
    with db.transaction(write=False) as session:
        blocked = session.get(Message, waiting.json()["id"])
        assert blocked is not None
    assert blocked.status == DeliveryStatus.FAILED
    assert blocked.status_reason is not None
    assert blocked.status_reason.startswith(f"{tw.CUSTOMER} opted out of messages from this number (Baja, ")
    assert blocked.status_reason.endswith("UTC): nothing is sent until they text START or ALTA")
    # A new reply is refused when it is written, naming the rule.
    refused = client.post(url, json={"text": "¿Seguro?"}, headers=tenant.headers)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "opted_out"
    assert refused.json()["error"]["message"] == blocked.status_reason
    assert fake.messages == []
    with db.transaction(write=False) as session:
        [consent] = session.scalars(select(SmsConsent)).all()
        evidence = session.get(Message, consent.evidence_message_id)
        assert evidence is not None
        assert (evidence.text, evidence.provider_message_id) == ("Baja", "SM" + "a1" * 16)
        assert (consent.channel_id, consent.recipient, consent.opted_out) == (channel["id"], tw.CUSTOMER, True)
    assert fake.deliver(client, tw.inbound("SM" + "b2" * 16, "start")).status_code == 200
    callbacks_written(db)
    allowed = reply("¡Bienvenida de nuevo!")
    assert allowed.status == DeliveryStatus.SENT
    assert [m["Body"] for m in fake.messages] == ["¡Bienvenida de nuevo!"]
    with db.transaction(write=False) as session:
        [consent] = session.scalars(select(SmsConsent)).all()
        assert (consent.opted_out, consent.keyword) == (False, "start")


OPT_OUT_WORDS = (
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "BAJA",
    "CANCELAR",
    "ALTO",
)
OPT_IN_WORDS = ("START", "YES", "UNSTOP", "ALTA")


def _as_typed(word: str) -> str:
    """The word as a phone may send it: mixed case, with spaces around it."""
    mixed = "".join(c.lower() if i % 2 else c for i, c in enumerate(word))
    return f"  {mixed} \t"


def test_the_keyword_lists_are_the_issues() -> None:
    assert frozenset(OPT_OUT_WORDS) == sms.OPT_OUT
    assert frozenset(OPT_IN_WORDS) == sms.OPT_IN


@pytest.mark.parametrize(
    ("opt_out", "opt_in"),
    [(word, OPT_IN_WORDS[i % len(OPT_IN_WORDS)]) for i, word in enumerate(OPT_OUT_WORDS)],
)
def test_every_opt_out_keyword_blocks_sends_and_every_opt_in_lifts_the_block(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio, opt_out: str, opt_in: str
) -> None:
    """Each keyword, as typed (any case, spaces around), in a signed inbound callback: the consent
    record changes with that message as evidence, a reply is refused before any call to Twilio,
    and the opt-in keyword lets the next one out."""
    channel = _connect(client, db, tenant, fake)
    incoming = _incoming(client, db, fake, channel["id"])
    url = f"/api/v1/conversations/{incoming.conversation_id}/messages"

    def consent() -> tuple[bool, str, str | None]:
        with db.transaction(write=False) as session:
            [row] = session.scalars(select(SmsConsent).where(SmsConsent.channel_id == channel["id"])).all()
            evidence = session.get(Message, row.evidence_message_id)
            assert evidence is not None
            assert row.recipient == tw.CUSTOMER
            return row.opted_out, row.keyword, evidence.provider_message_id

    out_sid, in_sid = "SM" + "c3" * 16, "SM" + "d4" * 16
    assert fake.deliver(client, tw.inbound(out_sid, _as_typed(opt_out))).status_code == 200
    callbacks_written(db)
    assert consent() == (True, _as_typed(opt_out).strip(), out_sid)
    refused = client.post(url, json={"text": "¿Le confirmo el pedido?"}, headers=tenant.headers)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "opted_out"
    assert _as_typed(opt_out).strip() in refused.json()["error"]["message"]
    assert fake.messages == []

    assert fake.deliver(client, tw.inbound(in_sid, _as_typed(opt_in))).status_code == 200
    callbacks_written(db)
    assert consent() == (False, _as_typed(opt_in).strip(), in_sid)
    allowed = client.post(url, json={"text": "¡Bienvenida de nuevo!"}, headers=tenant.headers)
    assert allowed.status_code == 201, allowed.text
    assert [m["Body"] for m in fake.messages] == ["¡Bienvenida de nuevo!"]


@pytest.mark.parametrize("text", ["STOP now", "stopp", "please STOP", "ST OP"])
def test_a_keyword_inside_a_sentence_is_no_keyword(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio, text: str
) -> None:
    channel = _connect(client, db, tenant, fake)
    assert fake.deliver(client, tw.inbound("SM" + "e5" * 16, text)).status_code == 200
    callbacks_written(db)
    [stored] = channel_messages(db, channel["id"])
    assert stored.payload.get("sms_keyword") is None
    with db.transaction(write=False) as session:
        assert session.scalars(select(SmsConsent)).all() == []


def test_a_messaging_service_sends_with_its_sid_instead_of_a_from_number(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTwilio
) -> None:
    """A channel set up with a Messaging Service (no number): Twilio picks the sender from the
    service's pool, so each send carries MessagingServiceSid and no From (Twilio's Messages
    resource takes one or the other); the HELP reply too."""
    service = "MG" + "0123456789abcdef" * 2
    channel = _connect(
        client, db, tenant, fake, from_number=None, messaging_service_sid=service, help_reply="Escribe BAJA."
    )
    # The service's inbound requests go where its settings say: the channel's callback URL, pasted there.
    assert fake.numbers[NUMBER]["sms_url"] == ""
    assert post_signed(client, channel["callback_url"], tw.inbound("SM" + "f6" * 16, "Hola")).status_code == 200
    assert post_signed(client, channel["callback_url"], tw.inbound("SM" + "f7" * 16, "AYUDA")).status_code == 200
    callbacks_written(db)
    incoming = channel_messages(db, channel["id"])[0]
    reply = client.post(
        f"/api/v1/conversations/{incoming.conversation_id}/messages", json={"text": "Hola 👋"}, headers=tenant.headers
    )
    assert reply.status_code == 201, reply.text
    help_sent, sent = fake.messages
    for message in (help_sent, sent):
        assert message["MessagingServiceSid"] == service
        assert "From" not in message
        assert message["To"] == tw.CUSTOMER
    assert (help_sent["Body"], sent["Body"], sent["StatusCallback"]) == (
        "Escribe BAJA.",
        "Hola 👋",
        channel["callback_url"],
    )
    with db.transaction(write=False) as session:
        stored = session.get(Message, reply.json()["id"])
        assert stored is not None
        assert (stored.status, stored.provider_message_id) == (DeliveryStatus.SENT, sent["sid"])
    assert fake.status(client, sent["sid"], "delivered").status_code == 200
    callbacks_written(db)
    with db.transaction(write=False) as session:
        delivered = session.get(Message, reply.json()["id"])
        assert delivered is not None
        assert delivered.status == DeliveryStatus.DELIVERED
