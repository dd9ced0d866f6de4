"""Every adapter against the contract (tests/channels/contract.py). A new adapter adds its case to
CASES; `test_every_adapter_has_a_case` fails until it does."""

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl

import pytest

from tertulia.channels import registry
from tertulia.channels.adapters import ADAPTERS
from tertulia.channels.adapters.bird import BirdAdapter
from tertulia.channels.adapters.email import EmailAdapter, ingest_signature, message_id_for
from tertulia.channels.adapters.instagram import InstagramAdapter
from tertulia.channels.adapters.messenger import MessengerAdapter
from tertulia.channels.adapters.meta_graph import hub_signature
from tertulia.channels.adapters.telegram import TelegramAdapter
from tertulia.channels.adapters.twilio import TwilioAdapter
from tertulia.channels.adapters.vonage import VonageAdapter
from tertulia.channels.adapters.webchat import WebchatAdapter, callback_signature
from tertulia.channels.adapters.whatsapp import WhatsAppAdapter, signature
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus
from tests.channels import fake_bird, telegram_samples
from tests.channels import meta_samples as meta
from tests.channels import twilio_samples as tw
from tests.channels import whatsapp_samples as wa
from tests.channels.contract import (
    AdapterCase,
    Refusal,
    test_bad_or_missing_signature_is_rejected,
    test_callbacks_store_each_message_once_and_forgeries_nothing,
    test_handshake_is_answered,
    test_samples_parse_to_messages_with_provider_ids,
    test_send_maps_provider_errors,
    test_send_tells_a_broken_channel_from_a_refused_recipient,
    test_statuses_only_move_forward,
)
from tests.channels.fake_meta_graph import graph_error
from tests.channels.fake_telegram import BOT_TOKEN
from tests.channels.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, NUMBER
from tests.channels.fake_twilio import sign as twilio_sign
from tests.channels.fake_vonage import API_KEY as VONAGE_KEY
from tests.channels.fake_vonage import API_SECRET as VONAGE_SECRET
from tests.channels.fake_vonage import NUMBER as VONAGE_NUMBER
from tests.channels.fake_vonage import SIGNATURE_SECRET as VONAGE_SIGNATURE_SECRET
from tests.channels.fake_vonage import messages_token, problem
from tests.fakes import FAKE_SECRET, FakeHttpAdapter
from tests.mailservers import scripted_smtp


def _json(data: object) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def _webchat() -> AdapterCase:
    def sign(channel: Channel, body: bytes) -> dict[str, str]:
        return {"X-Tertulia-Signature": f"sha256={callback_signature(channel, body)}"}

    def handshake(channel: Channel) -> tuple[dict[str, str], str]:
        return {"challenge": "ch-42", "signature": callback_signature(channel, b"ch-42")}, "ch-42"

    sample = _json({"messages": [{"id": "m1", "user_id": "u-7", "text": "Hola ñandú", "name": "Ana Ruiz"}]})
    two = _json(
        {"messages": [{"id": "a", "user_id": "u-1", "text": "uno"}, {"id": "b", "user_id": "u-2", "text": "dos"}]}
    )
    return AdapterCase(
        adapter=WebchatAdapter(),
        sign=sign,
        handshake=handshake,
        samples=[(sample, ["{c}:u:u-7:m1"]), (two, ["{c}:u:u-1:a", "{c}:u:u-2:b"])],
        config={"allowed_origins": ["https://shop.example"]},
    )


def _fakehttp() -> AdapterCase:
    def sign(channel: Channel, body: bytes) -> dict[str, str]:
        return {"X-Signature": hmac.new(FAKE_SECRET.encode(), body, hashlib.sha256).hexdigest()}

    def status_body(provider_id: str, status: DeliveryStatus) -> bytes:
        return _json({"statuses": [{"id": provider_id, "status": status.value, "reason": "x"}]})

    sample = _json({"messages": [{"from": "5215512345678", "id": "wamid.A", "text": "Hola", "name": "Pablo"}]})
    return AdapterCase(
        adapter=FakeHttpAdapter(),
        sign=sign,
        handshake=lambda _channel: ({"verify_token": FAKE_SECRET, "challenge": "1158201444"}, "1158201444"),
        samples=[(sample, ["wamid.A"])],
        send_config=lambda url: {"url": url},
        refusal=Refusal(400, {"error": "outside the 24-hour window"}, "outside the 24-hour window"),
        credentials_refusal=(401, {"error": "the access token has expired"}),
        status_body=status_body,
        recipient_id="5215512345678",
        retry_after=0,
    )


def _telegram() -> AdapterCase:
    """Telegram's own samples (tests/channels/telegram_samples.py, from core.telegram.org); the secret
    token is a header sent with the body, not a signature over it."""

    def sign(channel: Channel, _body: bytes) -> dict[str, str]:
        return {"X-Telegram-Bot-Api-Secret-Token": str(channel.secrets["webhook_secret"])}

    def error_body(status: int, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": text}
        if status == 429:
            body["parameters"] = {"retry_after": 3}
        return body

    chat = {"id": 5551234, "type": "private", "first_name": "Ana"}
    accepted = {"ok": True, "result": {"message_id": 42, "date": 1764150000, "chat": chat, "text": "hola"}}
    return AdapterCase(
        adapter=TelegramAdapter(),
        sign=sign,
        handshake=None,
        body_signed=False,
        samples=[
            (telegram_samples.renumbered(telegram_samples.TEXT, 1), ["1111111:1365"]),
            (telegram_samples.renumbered(telegram_samples.DOCUMENT, 2, 1366), ["1111111:1366"]),
            (telegram_samples.renumbered(telegram_samples.CALLBACK_QUERY, 3), ["cbq:4382bfdwdsb323b2d9"]),
        ],
        config={},
        secrets={"bot_token": BOT_TOKEN},
        send_config=lambda url: {"api_base_url": url},
        refusal=Refusal(
            403,
            error_body(403, "Forbidden: bot was blocked by the user"),
            "Forbidden: bot was blocked by the user",
        ),
        credentials_refusal=(401, error_body(401, "Unauthorized")),
        error_body=error_body,
        accepted=(accepted, "5551234:42"),
        retry_after=3,
        recipient_id="5551234",
    )


def _whatsapp() -> AdapterCase:
    def sign(channel: Channel, body: bytes) -> dict[str, str]:
        return {"X-Hub-Signature-256": f"sha256={signature(channel, body)}"}

    def handshake(channel: Channel) -> tuple[dict[str, str], str]:
        token = str(channel.secrets["verify_token"])
        return {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}, "1158201444"

    return AdapterCase(
        adapter=WhatsAppAdapter(),
        sign=sign,
        handshake=handshake,
        samples=[
            (wa.body(wa.TEXT), [wa.TEXT_ID]),
            (wa.body(wa.DASHBOARD_TEST), ["ABGGFlA5Fpa"]),
            (wa.body(wa.IMAGE), ["wamid.image1"]),
            (wa.body(wa.BUTTON_REPLY), ["wamid.button1"]),
        ],
        config={"phone_number_id": wa.PHONE_NUMBER_ID, "business_account_id": wa.BUSINESS_ACCOUNT_ID},
        secrets={"access_token": "EAAG-test-token", "app_secret": wa.APP_SECRET},
        send_config=lambda url: {"api_base_url": url.removesuffix("/send")},
        refusal=Refusal(400, wa.RE_ENGAGEMENT, wa.RE_ENGAGEMENT_REASON),
        credentials_refusal=(401, graph_error(190, "Error validating access token: Session has expired", 463)),
        status_body=lambda provider_id, status: wa.body(wa.status(provider_id, status.value)),
        recipient_id="16505551234",
        accepted=(wa.accepted("prov-1"), "prov-1"),
    )


def _meta_sign(channel: Channel, body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": f"sha256={hub_signature(str(channel.secrets['app_secret']), body)}"}


def _meta_handshake(channel: Channel) -> tuple[dict[str, str], str]:
    token = str(channel.secrets["verify_token"])
    return {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}, "1158201444"


def _graph_error_body(status: int, text: str) -> dict[str, Any]:
    """Graph's answers to throttling (613, "Calls to this api have exceeded the rate limit") and to
    its own faults (2, "Service temporarily unavailable")."""
    return graph_error(613, text) if status == 429 else graph_error(2, text)


# Nothing listens on port 9 (discard): profile look-ups fail at once, and are tolerated.
UNREACHABLE = "http://127.0.0.1:9"


def _messenger() -> AdapterCase:
    """Meta's documented Messenger events (tests/channels/meta_samples.py)."""

    def status_body(provider_id: str, status: DeliveryStatus) -> bytes | None:
        if status == DeliveryStatus.DELIVERED:
            return meta.body(meta.envelope(meta.delivery(provider_id)))
        if status == DeliveryStatus.READ:
            return meta.body(meta.envelope(meta.read()))
        return None

    refusal = graph_error(10, "(#10) This message is sent outside of allowed window.", 2018278)
    return AdapterCase(
        adapter=MessengerAdapter(),
        sign=_meta_sign,
        handshake=_meta_handshake,
        samples=[
            (meta.body(meta.envelope(meta.TEXT)), [meta.TEXT["message"]["mid"]]),
            (
                meta.body(meta.envelope(meta.IMAGE, meta.QUICK_REPLY)),
                ["mid.1458696618141:b4ef9d19ec21086067", "mid.1457764197618:quick"],
            ),
            (meta.body(meta.envelope(meta.POSTBACK)), ["m_postback-1"]),
            (meta.body(meta.envelope(meta.REFERRAL)), [f"referral:{meta.PSID}:1458692752478"]),
        ],
        config={"page_id": meta.PAGE_ID, "api_base_url": UNREACHABLE},
        secrets={"page_access_token": meta.PAGE_TOKEN, "app_secret": meta.APP_SECRET},
        send_config=lambda url: {"api_base_url": url.removesuffix("/send")},
        refusal=Refusal(
            400,
            refusal,
            "Sent outside the 24-hour window without a message tag that allows it. "
            "(#10) This message is sent outside of allowed window.",
        ),
        # Graph answers an invalid token 400 with code 190: the code decides, not the status.
        credentials_refusal=(400, graph_error(190, "Invalid OAuth access token - Cannot parse access token")),
        status_body=status_body,
        error_body=_graph_error_body,
        accepted=({"recipient_id": meta.PSID, "message_id": "m_accepted"}, "m_accepted"),
        retry_after=60.0,
        recipient_id=meta.PSID,
    )


def _instagram() -> AdapterCase:
    """Meta's documented Instagram events (tests/channels/meta_samples.py), Instagram Login variant."""

    def status_body(provider_id: str, status: DeliveryStatus) -> bytes | None:
        # Instagram reports only that a message was seen (messaging_seen).
        if status == DeliveryStatus.READ:
            return meta.body(meta.ig_envelope(meta.ig_seen(provider_id)))
        return None

    refusal = graph_error(10, "(#10) This message is sent outside of allowed window.", 2018278)
    return AdapterCase(
        adapter=InstagramAdapter(),
        sign=_meta_sign,
        handshake=_meta_handshake,
        samples=[
            (meta.body(meta.ig_envelope(meta.IG_TEXT)), [meta.IG_TEXT["message"]["mid"]]),
            (
                meta.body(meta.ig_envelope(meta.IG_IMAGE, meta.IG_STORY_REPLY, meta.IG_STORY_MENTION)),
                [m["message"]["mid"] for m in (meta.IG_IMAGE, meta.IG_STORY_REPLY, meta.IG_STORY_MENTION)],
            ),
            (meta.body(meta.ig_envelope(meta.IG_UNSUPPORTED)), [meta.IG_UNSUPPORTED["message"]["mid"]]),
        ],
        config={"ig_user_id": meta.IG_ID, "api_base_url": UNREACHABLE},
        secrets={"access_token": meta.PAGE_TOKEN, "app_secret": meta.APP_SECRET},
        send_config=lambda url: {"api_base_url": url.removesuffix("/send")},
        refusal=Refusal(
            400,
            refusal,
            "Sent outside the 24-hour window without a message tag that allows it. "
            "(#10) This message is sent outside of allowed window.",
        ),
        # Graph answers an invalid token 400 with code 190: the code decides, not the status.
        credentials_refusal=(400, graph_error(190, "Invalid OAuth access token - Cannot parse access token")),
        status_body=status_body,
        error_body=_graph_error_body,
        accepted=({"recipient_id": meta.IGSID, "message_id": "m_ig_accepted"}, "m_ig_accepted"),
        retry_after=60.0,
        recipient_id=meta.IGSID,
    )


def _twilio() -> AdapterCase:
    """Twilio's documented callbacks (tests/channels/twilio_samples.py), signed by the official SDK's
    RequestValidator over the URL called and the form parameters."""

    def sign_url(_channel: Channel, url: str, body: bytes) -> dict[str, str]:
        return {"X-Twilio-Signature": twilio_sign(url, dict(parse_qsl(body.decode(), keep_blank_values=True)))}

    def error_body(status: int, text: str) -> dict[str, Any]:
        code = 20429 if status == 429 else 20500
        return {
            "code": code,
            "message": text,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }

    refusal = {
        "code": 21610,
        "message": "Attempt to send to unsubscribed recipient",
        "more_info": "https://www.twilio.com/docs/errors/21610",
        "status": 400,
    }
    statuses = {DeliveryStatus.SENT: "sent", DeliveryStatus.DELIVERED: "delivered", DeliveryStatus.READ: "read"}
    mms = tw.mms(
        "MM" + "b" * 32, "foto", [("https://api.twilio.com/2010-04-01/Accounts/x/Messages/y/Media/z", "image/jpeg")]
    )
    return AdapterCase(
        adapter=TwilioAdapter(),
        sign=lambda _channel, _body: {},
        sign_url=sign_url,
        handshake=None,
        samples=[
            (tw.INBOUND_VERBATIM, [tw.INBOUND_VERBATIM_SID]),
            (tw.body(tw.inbound("SM" + "c" * 32, "Hola, ¿hay envíos?")), ["SM" + "c" * 32]),
            (tw.body(mms), ["MM" + "b" * 32]),
        ],
        config={"account_sid": ACCOUNT_SID, "from_number": NUMBER},
        secrets={"auth_token": AUTH_TOKEN},
        send_config=lambda url: {"api_base_url": url.removesuffix("/send")},
        refusal=Refusal(
            400,
            refusal,
            "The recipient replied STOP: they must text START before they can be sent messages again. "
            "Twilio: Attempt to send to unsubscribed recipient (21610)",
        ),
        credentials_refusal=(
            401,
            {
                "code": 20003,
                "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            },
        ),
        status_body=lambda sid, status: tw.body(
            tw.status(
                sid, statuses.get(status, "failed"), error_code="30003" if status == DeliveryStatus.FAILED else None
            )
        ),
        error_body=error_body,
        accepted=({"sid": "SM" + "d" * 32, "status": "queued"}, "SM" + "d" * 32),
        recipient_id=tw.CUSTOMER,
    )


def _vonage() -> AdapterCase:
    """Vonage's Messages API (JWT-signed webhooks); the SMS API, whose signature travels inside the
    body, has the same checks in tests/channels/test_vonage.py. Inbound sample: the official PHP SDK's
    test WebhookTest::testWillHydrateIncomingSMS (../shared/reference/channels.md section 9); status
    webhook assembled from developer.vonage.com/en/api/messages-olympus (message status)."""

    def sign(_channel: Channel, body: bytes) -> dict[str, str]:
        return {"Authorization": f"Bearer {messages_token(body)}"}

    def inbound(uuid: str, text: str) -> bytes:
        return _json(
            {
                "channel": "sms",
                "message_uuid": uuid,
                "to": "447700900000",
                "from": "447700900001",
                "timestamp": "2020-01-01T14:00:00.000Z",
                "message_type": "text",
                "text": text,
                "sms": {"num_messages": "1"},
            }
        )

    def status_body(uuid: str, status: DeliveryStatus) -> bytes:
        names = {DeliveryStatus.SENT: "submitted", DeliveryStatus.DELIVERED: "delivered", DeliveryStatus.READ: "read"}
        event: dict[str, Any] = {
            "message_uuid": uuid,
            "to": "447700900001",
            "from": "447700900000",
            "timestamp": "2020-01-01T14:00:03.010Z",
            "status": names.get(status, "rejected"),
            "channel": "sms",
        }
        if status == DeliveryStatus.FAILED:
            event["error"] = {
                "type": "https://developer.vonage.com/api-errors/messages#1320",
                "title": "1320",
                "detail": "Message failed because the number is blocked",
            }
        return _json(event)

    refusal = problem(422, "Invalid params", "The value of the `to` parameter is barred.")
    return AdapterCase(
        adapter=VonageAdapter(),
        sign=sign,
        handshake=None,
        samples=[
            (
                inbound("aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "Hello from Vonage!"),
                ["aaaaaaaa-bbbb-cccc-dddd-0123456789ab"],
            ),
            (inbound("d8f86df1-dec6-442f-870a-2241be27d721", "¿Hay envíos?"), ["d8f86df1-dec6-442f-870a-2241be27d721"]),
        ],
        config={"api": "messages", "api_key": VONAGE_KEY, "from_number": VONAGE_NUMBER},
        secrets={"api_secret": VONAGE_SECRET, "signature_secret": VONAGE_SIGNATURE_SECRET},
        send_config=lambda url: {"api_base_url": url.removesuffix("/send")},
        refusal=Refusal(422, refusal, "Invalid params: The value of the `to` parameter is barred."),
        credentials_refusal=(401, problem(401, "Unauthorized", "You did not provide correct credentials.")),
        status_body=status_body,
        error_body=lambda status, text: problem(
            status, "Too Many Requests" if status == 429 else "Internal Error", text
        ),
        accepted=({"message_uuid": "d8f86df1-dec6-442f-870a-2241be27d721"}, "d8f86df1-dec6-442f-870a-2241be27d721"),
        recipient_id="+447400123456",
    )


def _bird() -> AdapterCase:
    """Bird's Channels API: the documented inbound SMS message (docs.bird.com, receiving messages) in
    its webhook envelope, signed over the URL called as docs.bird.com's "verifying a webhook" says."""

    def status_body(message_id: str, status: DeliveryStatus) -> bytes | None:
        names = {
            DeliveryStatus.SENT: "sent",
            DeliveryStatus.DELIVERED: "delivered",
            DeliveryStatus.FAILED: "delivery_failed",
        }
        if status not in names:
            return None  # SMS has no read receipts
        return _json(fake_bird.outbound_status(message_id, names[status], reason="Unreachable handset"))

    return AdapterCase(
        adapter=BirdAdapter(),
        sign=lambda _channel, _body: {},
        sign_url=lambda _channel, url, body: fake_bird.signature_headers(url, body),
        handshake=None,
        samples=[
            (
                _json(fake_bird.inbound("96a0b5fa-a986-453d-be5c-3117f989f025", "Sample incoming text message")),
                ["96a0b5fa-a986-453d-be5c-3117f989f025"],
            ),
            (
                _json(fake_bird.inbound("0b9a3f0c-1111-4222-8333-444455556666", "¿Hay envíos?")["payload"]),
                ["0b9a3f0c-1111-4222-8333-444455556666"],
            ),
        ],
        config={"workspace_id": fake_bird.WORKSPACE, "channel_id": fake_bird.CHANNEL, "from_number": fake_bird.NUMBER},
        secrets={"access_key": fake_bird.ACCESS_KEY, "signing_key": fake_bird.SIGNING_KEY},
        send_config=lambda url: {"api_base_url": url.removesuffix("/send")},
        refusal=Refusal(
            422,
            {"code": "InvalidPayload", "message": "receiver is not a valid phone number"},
            "receiver is not a valid phone number",
        ),
        credentials_refusal=(401, {"code": "Unauthorized", "message": "The access key is not valid"}),
        status_body=status_body,
        error_body=lambda status, text: {
            "code": "TooManyRequests" if status == 429 else "InternalError",
            "message": text,
        },
        accepted=(
            {"id": "5d1f5a6c-0000-4000-8000-000000000001", "status": "accepted"},
            "5d1f5a6c-0000-4000-8000-000000000001",
        ),
        recipient_id=fake_bird.CUSTOMER,
    )


INGEST_SECRET = "ingest-secret-for-tests"
TOKEN_SECRET = "token-secret-for-tests"


def _email() -> AdapterCase:
    """Raw RFC 5322 mail, as the fetcher spools it or a mail server's pipe posts it (signed with the
    channel's ingest secret); sending goes to a real SMTP server (aiosmtpd) answering as scripted:
    4xx is transient, 5xx a refusal with the server's words."""

    def sign(channel: Channel, body: bytes) -> dict[str, str]:
        return {"X-Tertulia-Signature": f"sha256={ingest_signature(str(channel.secrets['ingest_secret']), body)}"}

    def raw(message_id: str, text: str, sender: str = "ana@example.com") -> bytes:
        return (
            f"From: Ana Ruiz <{sender}>\r\nTo: support@shop.example.com\r\nSubject: Pedido\r\n"
            f"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: {message_id}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        ).encode()

    @contextmanager
    def smtp(answers: list[tuple[int, dict[str, Any]]]) -> Iterator[str]:
        script = ["250 OK" if status == 200 else str(body["smtp"]) for status, body in answers]
        with scripted_smtp(script) as port:
            yield str(port)

    def error_body(status: int, text: str) -> dict[str, Any]:
        code = {429: "421 4.7.0", 503: "451 4.3.0"}.get(status, "550 5.7.1")
        return {"smtp": f"{code} {text}"}

    config = {
        "address": "support@shop.example.com",
        "incoming_host": "127.0.0.1",
        "incoming_port": 9,
        "incoming_security": "plain",
        "smtp_host": "127.0.0.1",
        "smtp_port": 9,
        "smtp_security": "plain",
        "sent_folder": "",
    }
    secrets = {"password": "pw", "ingest_secret": INGEST_SECRET, "token_secret": TOKEN_SECRET}
    sent_id = message_id_for(Channel(config=config, secrets=secrets), 7)
    return AdapterCase(
        adapter=EmailAdapter(),
        sign=sign,
        handshake=None,
        samples=[
            (raw("<a1@example.com>", "Hola ñandú"), ["<a1@example.com>"]),
            (raw("<b2@example.com>", "Otra", "bob@example.net"), ["<b2@example.com>"]),
        ],
        config=config,
        secrets=secrets,
        send_config=lambda port: {"smtp_port": int(port)},
        provider=smtp,
        refusal=Refusal(550, error_body(550, "Message rejected as spam"), "550 5.7.1 Message rejected as spam"),
        error_body=error_body,
        accepted=({}, sent_id),
        recipient_id="ana@example.com",
    )


# Production adapters, plus the test-only HTTP provider that exercises the sending half.
CASES: dict[str, Callable[[], AdapterCase]] = {
    "webchat": _webchat,
    "fakehttp": _fakehttp,
    "whatsapp": _whatsapp,
    "telegram": _telegram,
    "messenger": _messenger,
    "instagram": _instagram,
    "twilio": _twilio,
    "vonage": _vonage,
    "bird": _bird,
    "email": _email,
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Iterator[AdapterCase]:
    built = CASES[request.param]()
    if built.adapter.type in registry.registered_types():
        yield built
        return
    with registry.registered(built.adapter):
        yield built


def test_every_adapter_has_a_case() -> None:
    assert {adapter.type for adapter in ADAPTERS} <= set(CASES)


__all__ = [
    "test_bad_or_missing_signature_is_rejected",
    "test_callbacks_store_each_message_once_and_forgeries_nothing",
    "test_handshake_is_answered",
    "test_samples_parse_to_messages_with_provider_ids",
    "test_send_maps_provider_errors",
    "test_send_tells_a_broken_channel_from_a_refused_recipient",
    "test_statuses_only_move_forward",
]
