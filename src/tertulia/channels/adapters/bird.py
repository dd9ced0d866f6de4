"""The Bird SMS adapter: an SMS channel of Bird's Channels API (`api`: "channels", the default), or a
number of the legacy MessageBird REST API (`api`: "legacy").

Wire format: ../shared/reference/channels.md sections 10 and 11 (docs.bird.com, developers.messagebird.com).

- Connect (`connect`): Channels API: the channel is read (`GET /workspaces/{workspace}/channels/{channel}`)
  to check the access key and name the channel; the webhook is a Notifications API subscription the
  manager creates in Bird (its signing key is pasted here; docs/channels/bird.md). Legacy: the
  access key is checked by reading the balance (`GET /balance`); the number's inbound flow and the
  status report URL are set in the MessageBird dashboard. Every call goes to the channel's
  `api_base_url` (default https://api.bird.com, legacy https://rest.messagebird.com).
- Callbacks, Channels API: `messagebird-signature` = base64(HMAC-SHA256(signing key,
  timestamp + "\\n" + URL + "\\n" + SHA-256 digest of the body)), with `messagebird-request-timestamp`;
  the URL is the one Bird called (the request's own, the one X-Forwarded-Proto/-Host rebuild behind a
  proxy, or the callback URL registered at connect). Legacy: `MessageBird-Signature-JWT`, an
  HS256/384/512 JWT signed with the signing key whose claims are iss=MessageBird, nbf/exp (checked
  against the clock), `url_hash` = SHA-256 of the URL called and `payload_hash` = SHA-256 of the body,
  present exactly when there is a body (`messagebird_jwt`; MessageBird's 44 published vectors pass).
- Identity: the sender's number in E.164, one contact per person.
- Inbound: SMS text (Channels API: `sms.inbound` events whose message is `direction: incoming`;
  legacy: the form a number's flow forwards: id, originator, recipient, body). Keywords as for every
  SMS provider. Provider message id: the message's `id`.
- Statuses: Channels API `sms.outbound` events (sent, delivered; rejected, sending_failed,
  delivery_failed = failed with Bird's reason); legacy status reports (sent, buffered, delivered;
  expired, delivery_failed = failed with the statusErrorCode).
- Outbound: text. Channels API answers errors as `{"code", "message"}`, legacy as
  `{"errors": [{"code", "description", "parameter"}]}`: 429 and 5xx transient, anything else a
  PermanentError with the provider's own words. Whose fault: the HTTP status (HTTP_FAULTS: 401/403
  the access key, 402 the balance, 404 a workspace or channel id that does not exist, 429 the
  account's rate limit) or the legacy error code (LEGACY_FAULTS: 2 the access key, 25 the
  balance); a refused number or body fails the message alone. A failed status's `failure` is judged
  the same way (FAILURE_SOURCE_FAULTS): a failure whose source is Bird's accounting is the
  account's, like a 402, with or without a code; a code 12XXX Bird's own; an unknown subscriber
  (15005) or any other code the message's.
"""

import base64
import hashlib
import hmac
import json
import time
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import jwt

from tertulia.channels.adapters import sms
from tertulia.channels.adapters.telegram import clean_api_base_url
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    ChannelRules,
    DeliveryStatus,
    Fault,
    FetchedMedia,
    InboundMessage,
    OutboundMessage,
    ParsedWebhook,
    PermanentError,
    SendResult,
    SetupRefused,
    StatusUpdate,
    TransientError,
    WebhookRejected,
    WebhookRequest,
)
from tertulia.kit.errors import ValidationFailed

TYPE = "bird"
CHANNELS_API = "channels"
LEGACY_API = "legacy"
DEFAULT_BASE_URL = "https://api.bird.com"
DEFAULT_LEGACY_BASE_URL = "https://rest.messagebird.com"
SIGNATURE_HEADER = "messagebird-signature"
TIMESTAMP_HEADER = "messagebird-request-timestamp"
JWT_HEADER = "messagebird-signature-jwt"
JWT_ALGORITHMS = ["HS256", "HS384", "HS512"]
JWT_LEEWAY = 1.0  # seconds of clock difference tolerated on nbf and exp
MAX_TEXT = sms.MAX_TEXT
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
FOLLOW_UPS = frozenset({"help_reply"})

CHANNEL_STATUSES = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "rejected": DeliveryStatus.FAILED,
    "sending_failed": DeliveryStatus.FAILED,
    "delivery_failed": DeliveryStatus.FAILED,
}
LEGACY_STATUSES = {
    "sent": DeliveryStatus.SENT,
    "buffered": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "expired": DeliveryStatus.FAILED,
    "delivery_failed": DeliveryStatus.FAILED,
}


def _api(channel: Channel) -> str:
    return str((channel.config or {}).get("api") or CHANNELS_API)


class BirdAdapter:
    type: ClassVar[str] = TYPE
    rules: ClassVar[ChannelRules] = sms.RULES
    # Given with `--set` (CLI) or the form, but kept encrypted and never shown again.
    secret_fields: ClassVar[frozenset[str]] = frozenset({"access_key", "signing_key"})

    # ----- callbacks ------------------------------------------------------------------------------

    def verify_webhook(self, channel: Channel, request: WebhookRequest) -> None:
        key = sms.posted_secret("Bird", channel, request, "signing_key")
        urls = _urls(channel, request)
        if _api(channel) == LEGACY_API:
            token = request.headers.get(JWT_HEADER, "")
            errors: list[str] = []
            for url in urls:
                try:
                    messagebird_jwt(token, key, url, request.body, time.time())
                    return
                except WebhookRejected as exc:
                    errors.append(exc.reason)
            raise WebhookRejected(errors[0] if errors else "no MessageBird-Signature-JWT")
        given = request.headers.get(SIGNATURE_HEADER, "")
        stamp = request.headers.get(TIMESTAMP_HEADER, "")
        if not given or not stamp:
            raise WebhookRejected("no messagebird-signature")
        if not any(
            hmac.compare_digest(given.encode(), bird_signature(key, stamp, url, request.body).encode()) for url in urls
        ):
            raise WebhookRejected("bad messagebird-signature")

    def parse_webhook(self, channel: Channel, request: WebhookRequest) -> ParsedWebhook:
        """Raises ValueError for a body that is neither an incoming message nor a status."""
        if _api(channel) == LEGACY_API:
            return _parse_legacy(channel, dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)))
        event = json.loads(request.body)
        if not isinstance(event, dict):
            raise ValueError("expected a JSON object")
        # The subscription's envelope, {"service", "event", "payload"}; a bare message object too.
        message = event.get("payload") if isinstance(event.get("payload"), dict) else event
        if not isinstance(message, dict) or not message.get("id"):
            raise ValueError("a message needs an id")
        if message.get("direction") == "incoming":
            inbound = _inbound_channels(message)
            return ParsedWebhook(messages=[inbound], follow_ups=_help(channel, inbound))
        return ParsedWebhook(statuses=_channel_status(message))

    # ----- sending --------------------------------------------------------------------------------

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        text = message.text or ""
        if message.attachments:
            raise PermanentError("this channel sends text only")
        if not text.strip():
            raise PermanentError("nothing to send: the message has no text")
        if len(text) > MAX_TEXT:
            raise PermanentError(f"Bird sends at most {MAX_TEXT} characters in one message")
        return SendResult(
            provider_message_id=Api(channel).send_text(message.recipient_id, text, message.idempotency_key)
        )

    # ----- settings -------------------------------------------------------------------------------

    def public_config(self, channel: Channel) -> dict[str, Any]:
        config = channel.config or {}
        return {"name": channel.name, "from_number": config.get("from_number"), "api": _api(channel)}

    def clean_config(self, config: dict[str, Any], secrets_: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        api = str(config.get("api") or CHANNELS_API).strip().lower()
        if api not in (CHANNELS_API, LEGACY_API):
            raise ValidationFailed.field("config.api", "must be channels or legacy")
        default = DEFAULT_LEGACY_BASE_URL if api == LEGACY_API else DEFAULT_BASE_URL
        cleaned: dict[str, Any] = {
            "api": api,
            "api_base_url": clean_api_base_url(config.get("api_base_url") or default),
        }
        if api == CHANNELS_API:
            for name in ("workspace_id", "channel_id"):
                value = str(config.get(name) or "").strip()
                if not value or len(value) > 64 or not all(c.isalnum() or c == "-" for c in value):
                    raise ValidationFailed.field(
                        f"config.{name}", "must be the id Bird shows (letters, digits and dashes)"
                    )
                cleaned[name] = value
        number = str(config.get("from_number") or "").strip()
        normalised = sms.e164(number) or (
            number
            if number and len(number) <= 11 and number.replace(" ", "").isalnum() and not number.isdigit()
            else None
        )
        if normalised is None and (api == LEGACY_API or number):
            raise ValidationFailed.field(
                "config.from_number", "must be a phone number with its country code, like +14155550100"
            )
        if normalised:
            cleaned["from_number"] = normalised
        access_key = str(secrets_.get("access_key") or "").strip()
        if not access_key:
            raise ValidationFailed.field("secrets.access_key", "is required")
        signing_key = str(secrets_.get("signing_key") or "").strip()
        if not signing_key:
            raise ValidationFailed.field("secrets.signing_key", "is required")
        help_reply = " ".join(str(config.get("help_reply") or "").split())
        if len(help_reply) > MAX_TEXT:
            raise ValidationFailed.field("config.help_reply", "must be at most 1600 characters")
        if help_reply:
            cleaned["help_reply"] = help_reply
        for name in ("callback_url", "account_name"):
            if config.get(name):
                cleaned[name] = str(config[name])
        return cleaned, {"access_key": access_key, "signing_key": signing_key}

    def owns_identity(self, channel: Channel, external_id: str) -> bool:
        return sms.e164(external_id) is not None

    # ----- connecting -------------------------------------------------------------------------------

    def connect(self, channel: Channel, callback_url: str) -> dict[str, Any]:
        try:
            facts = self.check_connection(channel)
        except TransientError as exc:
            raise SetupRefused(exc.reason, field="config.api_base_url", code="unreachable") from exc
        except PermanentError as exc:
            field = "config.channel_id" if exc.code in ("404", "NotFound") else "secrets.access_key"
            raise SetupRefused(exc.reason, field=field, code="token") from exc
        return {"callback_url": callback_url, "account_name": facts.get("account_name")}

    def disconnect(self, channel: Channel) -> None:
        """The webhook subscription is the manager's, in Bird: nothing to undo here."""

    def check_connection(self, channel: Channel) -> dict[str, Any]:
        api = Api(channel)
        config = channel.config or {}
        if api.api == LEGACY_API:
            balance = api.call("GET", "/balance")
            return {
                "account_name": "MessageBird",
                "account_status": f"balance {balance.get('amount')} {balance.get('type') or ''}".strip(),
                "sender": config.get("from_number"),
            }
        found = api.call("GET", f"/workspaces/{api.workspace}/channels/{api.channel}")
        return {
            "account_name": found.get("name") or f"Bird {api.channel}",
            "account_status": found.get("status"),
            "sender": config.get("from_number") or found.get("identifier"),
        }

    # ----- follow-ups ------------------------------------------------------------------------------

    def fetch_media(self, channel: Channel, reference: dict[str, Any]) -> FetchedMedia:
        raise PermanentError("this channel carries no files")

    def follow_up(self, channel: Channel, call: dict[str, Any]) -> None:
        if call.get("method") not in FOLLOW_UPS:
            raise ValueError(f"not a follow-up call: {call.get('method')!r}")
        Api(channel).send_text(str(call["to"]), str(call["text"]), None)


# ----- signatures -----------------------------------------------------------------------------------


def bird_signature(signing_key: str, timestamp: str, url: str, body: bytes) -> str:
    """Bird's `messagebird-signature` for a webhook to `url` (docs.bird.com, verifying a webhook)."""
    signed = timestamp.encode() + b"\n" + url.encode() + b"\n" + hashlib.sha256(body).digest()
    return base64.b64encode(hmac.new(signing_key.encode(), signed, hashlib.sha256).digest()).decode()


def messagebird_jwt(token: str, signing_key: str, url: str, body: bytes, now: float) -> dict[str, Any]:
    """The claims of a valid `MessageBird-Signature-JWT` for a request to `url` with `body` at `now`;
    raises WebhookRejected with the reason otherwise."""
    if not token:
        raise WebhookRejected("no MessageBird-Signature-JWT")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            signing_key,
            algorithms=JWT_ALGORITHMS,
            issuer="MessageBird",
            options={"require": ["iss", "nbf", "exp"], "verify_exp": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        raise WebhookRejected(f"invalid jwt: {exc}") from exc
    if float(claims["nbf"]) > now + JWT_LEEWAY:
        raise WebhookRejected("invalid jwt: claim nbf is in the future")
    if float(claims["exp"]) <= now - JWT_LEEWAY:
        raise WebhookRejected("invalid jwt: claim exp is in the past")
    if not hmac.compare_digest(str(claims.get("url_hash") or ""), hashlib.sha256(url.encode()).hexdigest()):
        raise WebhookRejected("invalid jwt: claim url_hash is invalid")
    payload_hash = claims.get("payload_hash")
    if body and not payload_hash:
        raise WebhookRejected("invalid jwt: claim payload_hash is not set but payload is present")
    if payload_hash and not body:
        raise WebhookRejected("invalid jwt: claim payload_hash is set but actual payload is missing")
    if body and not hmac.compare_digest(str(payload_hash), hashlib.sha256(body).hexdigest()):
        raise WebhookRejected("invalid jwt: claim payload_hash is invalid")
    return claims


def _urls(channel: Channel, request: WebhookRequest) -> list[str]:
    """The URLs the provider may have signed: as the app saw it, as a proxy's X-Forwarded-* say it
    was called, and the callback URL registered at connect (with this request's query)."""
    called = urlsplit(request.url)
    candidates = [request.url]
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
    host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
    if proto or host:
        candidates.append(urlunsplit((proto or called.scheme, host or called.netloc, called.path, called.query, "")))
    registered = str((channel.config or {}).get("callback_url") or "")
    if registered:
        ours = urlsplit(registered)
        candidates.append(urlunsplit((ours.scheme, ours.netloc, ours.path, called.query, "")))
    return list(dict.fromkeys(candidates))


# ----- the APIs ------------------------------------------------------------------------------------


class Api:
    def __init__(self, channel: Channel) -> None:
        config = channel.config or {}
        self.api = _api(channel)
        default = DEFAULT_LEGACY_BASE_URL if self.api == LEGACY_API else DEFAULT_BASE_URL
        self.base = str(config.get("api_base_url") or default).rstrip("/")
        self.workspace = str(config.get("workspace_id") or "")
        self.channel = str(config.get("channel_id") or "")
        self.key = str((channel.secrets or {}).get("access_key") or "")
        self.config = config

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = httpx.request(
                method,
                self.base + path,
                json=body,
                headers={"Authorization": f"AccessKey {self.key}", "Accept": "application/json"},
                timeout=TIMEOUT,
            )
        except httpx.TimeoutException as exc:
            raise TransientError("Bird did not answer in time") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"Bird could not be reached ({type(exc).__name__})") from exc
        try:
            found = response.json()
        except ValueError:
            found = {}
        answer: dict[str, Any] = found if isinstance(found, dict) else {}
        if response.status_code < 300:
            return answer
        reason, code = _error(answer, response.status_code)
        fault = _fault(answer, response.status_code, code)
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = response.headers.get("retry-after")
            wait = float(retry_after) if retry_after and retry_after.isdigit() else None
            raise TransientError(reason, code=code, retry_after=wait, fault=fault)
        raise PermanentError(reason, code=code, fault=fault)

    def send_text(self, to: str, text: str, reference: str | None) -> str:
        recipient = sms.e164(to)
        if recipient is None:
            raise PermanentError(f"{to!r} is not a phone number Bird can send to")
        if self.api == LEGACY_API:
            body: dict[str, Any] = {
                "recipients": [recipient.lstrip("+")],
                "originator": str(self.config.get("from_number") or "").lstrip("+"),
                "body": text,
            }
            if reference:
                body["reference"] = reference
            if self.config.get("callback_url"):
                body["reportUrl"] = self.config["callback_url"]
            sent = self.call("POST", "/messages", body)
        else:
            payload: dict[str, Any] = {
                "receiver": {"contacts": [{"identifierValue": recipient}]},
                "body": {"type": "text", "text": {"text": text}},
            }
            if reference:
                payload["reference"] = reference
            sent = self.call("POST", f"/workspaces/{self.workspace}/channels/{self.channel}/messages", payload)
        if not sent.get("id"):
            raise PermanentError("Bird accepted the message without an id")
        return str(sent["id"])


HTTP_FAULTS: dict[int, Fault] = {
    401: Fault.CREDENTIALS,
    403: Fault.CREDENTIALS,
    402: Fault.ACCOUNT,
    # Sending goes to the channel's own path (/workspaces/{id}/channels/{id}/messages, or the
    # legacy /messages): not found means the settings name something Bird does not have.
    404: Fault.ACCOUNT,
    429: Fault.ACCOUNT,
}
# The legacy REST API's error codes (2: "Request not allowed (incorrect access_key)", 25: not enough
# balance, 99: internal error); 9, 10, 20 and 21 (missing or invalid parameters) fail the message.
LEGACY_FAULTS: dict[str, Fault] = {"2": Fault.CREDENTIALS, "25": Fault.ACCOUNT, "99": Fault.PROVIDER}


# A failed message's `failure` in a status webhook, `{"code": 15005, "source": {"name", "code"}}`
# (docs.bird.com/api/channels-api/message-status-and-interactions/message-failure-codes and
# /message-failure-sources). Its source says where it failed: "accounting", "an accounting/billing
# service error (before being sent to a third-party platform)", is the workspace's billing (Bird's
# 402 when it refuses a send), whatever its code; Bird names no code for it, so the source alone
# decides. Codes 12XXX are Bird's own "Service Errors ... not directly caused by the user" (12001
# DEPENDENCY_ERROR); the rest (11XXX the message as submitted, 14XXX "Customer Error", 15XXX the
# platform or carrier, as "unknown subscriber" 15005) fail the message alone.
FAILURE_SOURCE_FAULTS: dict[str, Fault] = {"accounting": HTTP_FAULTS[402]}
SERVICE_FAILURES = range(12000, 13000)


def _fault(answer: dict[str, Any], status: int, code: str) -> Fault | None:
    if isinstance(answer.get("errors"), list) and code in LEGACY_FAULTS:
        return LEGACY_FAULTS[code]
    return HTTP_FAULTS.get(status)


def _error(answer: dict[str, Any], status: int) -> tuple[str, str]:
    errors = answer.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        where = f" ({first['parameter']})" if first.get("parameter") else ""
        return f"{first.get('description') or 'refused'}{where}", str(first.get("code") or status)
    message = str(answer.get("message") or f"Bird answered HTTP {status}")
    return message, str(answer.get("code") or status)


# ----- inbound ----------------------------------------------------------------------------------------


def _help(channel: Channel, message: InboundMessage) -> list[dict[str, Any]]:
    help_reply = str((channel.config or {}).get("help_reply") or "")
    if help_reply and message.payload.get("sms_keyword") == sms.Keyword.HELP:
        return [
            {
                "method": "help_reply",
                "to": message.sender_id,
                "text": help_reply,
                "message_id": message.provider_message_id,
            }
        ]
    return []


def _message(message_id: str, sender: str, text: str, details: dict[str, Any]) -> InboundMessage:
    payload: dict[str, Any] = {"bird": details}
    found = sms.keyword(text)
    if found is not None:
        payload["sms_keyword"] = found.value
    return InboundMessage(
        sender_id=sms.sender_id(sender),
        provider_message_id=message_id,
        text=text or None,
        payload=payload,
        phone=sms.e164(sender),
    )


def _inbound_channels(message: dict[str, Any]) -> InboundMessage:
    contact = ((message.get("sender") or {}).get("contact")) or {}
    sender = str(contact.get("identifierValue") or "")
    if not sender:
        raise ValueError("an incoming message needs a sender")
    body = message.get("body") or {}
    text = str(((body.get("text") or {}).get("text")) or "") if body.get("type") == "text" else ""
    details = {"channel_id": message.get("channelId"), "contact_id": contact.get("id"), "type": body.get("type")}
    return _message(str(message["id"]), sender, text, details)


def _channel_status(message: dict[str, Any]) -> list[StatusUpdate]:
    status = CHANNEL_STATUSES.get(str(message.get("status") or "").lower())
    if status is None:
        return []
    reason = None
    error = None
    if status == DeliveryStatus.FAILED:
        failure = message.get("failure") if isinstance(message.get("failure"), dict) else {}
        reason = str(message.get("reason") or (failure or {}).get("description") or message["status"])
        error = _failure_error(failure or {}, reason)
    contacts = ((message.get("receiver") or {}).get("contacts")) or [{}]
    recipient = sms.e164(str(contacts[0].get("identifierValue") or "")) if isinstance(contacts[0], dict) else None
    return [
        StatusUpdate(
            provider_message_id=str(message["id"]), status=status, reason=reason, recipient_id=recipient, error=error
        )
    ]


def _failure_error(failure: dict[str, Any], reason: str) -> PermanentError | None:
    """A failed message's `failure` as our error (FAILURE_SOURCE_FAULTS, SERVICE_FAILURES); None when
    it names neither a code nor a source that decides whose fault it is."""
    raw_code = failure.get("code")
    code = raw_code if isinstance(raw_code, int) else None
    source = failure.get("source") if isinstance(failure.get("source"), dict) else {}
    fault = FAILURE_SOURCE_FAULTS.get(str((source or {}).get("name") or ""))
    if fault is None and code is not None and code in SERVICE_FAILURES:
        fault = Fault.PROVIDER
    if code is None and fault is None:
        return None
    return PermanentError(reason, code=None if code is None else str(code), fault=fault)


def _parse_legacy(channel: Channel, params: dict[str, str]) -> ParsedWebhook:
    if params.get("originator") and params.get("id") and "body" in params:
        inbound = _message(params["id"], params["originator"], params["body"], {"recipient": params.get("recipient")})
        return ParsedWebhook(messages=[inbound], follow_ups=_help(channel, inbound))
    status = LEGACY_STATUSES.get(params.get("status", "").lower())
    if params.get("id") and status is not None:
        reason = None
        if status == DeliveryStatus.FAILED:
            code = params.get("statusErrorCode", "")
            reason = f"{params['status']}: {params.get('statusReason') or 'no reason given'}" + (
                f" ({code})" if code else ""
            )
        update = StatusUpdate(params["id"], status, reason, recipient_id=sms.e164(params.get("recipient")))
        return ParsedWebhook(statuses=[update])
    if params.get("id") and params.get("status"):
        return ParsedWebhook()  # scheduled and the like: nothing new
    raise ValueError("neither an incoming message nor a status report")
