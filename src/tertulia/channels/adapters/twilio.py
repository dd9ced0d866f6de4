"""The Twilio SMS adapter: a Twilio number (or a Messaging Service) over the 2010-04-01 REST API.

Wire format: ../shared/reference/channels.md sections 8 and 11 (and twilio.com/docs/messaging).

- Connect (`connect`): the account is read (`GET /Accounts/{AccountSid}.json`) to check the
  credentials and name the channel; with a sender number, the number is found among the account's
  (`IncomingPhoneNumbers.json?PhoneNumber=`) and its SMS webhook set to the channel's callback URL
  (`SmsUrl`, `SmsMethod=POST`). A Messaging Service's inbound URL is set by the manager in Twilio's
  console (docs/channels/twilio.md). Disconnect clears the number's `SmsUrl`. Every call goes to the
  channel's `api_base_url` (default https://api.twilio.com): a proxy or, in tests, a local fake.
  Credentials: the Account SID and auth token, or an API key (SK...) and its secret for the REST
  calls; the auth token is needed either way, because Twilio signs callbacks with it.
- Callbacks: `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, URL + every form parameter's
  name and value, sorted by name, a repeated name's values sorted)). The URL is the one Twilio
  called: the request's own, the one rebuilt from X-Forwarded-Proto/-Host behind a proxy, and the
  callback URL registered at connect (what Twilio was told to call), each with and without the
  default port, as Twilio's own validator tries. A JSON body carries `bodySHA256` in the URL
  instead, and only the URL is signed. There is no handshake. A callback a Webhook Rule signs with a
  shared key says so in `X-Twilio-Webhooks-Signature-Settings: key=<key id>,algorithm=HMAC_SHA256`:
  the same string is signed with that algorithm under the key's secret (`webhook_key_secret`; with
  `webhook_key_sid`, only that key is accepted). Every callback is answered with empty TwiML,
  `<Response/>` as text/xml: Twilio reads the answer to an incoming message as instructions.
- Identity: the sender's number in E.164 (channels/adapters/sms.py), one contact per person; a short
  code or alphanumeric sender keeps its spelling.
- Inbound: SMS text and MMS media (`MediaUrl{N}`/`MediaContentType{N}`, fetched with the account's
  credentials, only from the API's own host, at most 5 MB, Twilio's MMS limit). A message that is
  an opt-out, opt-in or help keyword carries payload `sms_keyword`; HELP/AYUDA is answered with the
  channel's `help_reply` when one is set (a follow-up call once the message is stored). Provider
  message id: `MessageSid`, so a callback delivered twice is stored once.
- Status callbacks (`StatusCallback`, sent with every message): `MessageStatus` sent, delivered,
  read (WhatsApp senders), undelivered/failed (with `ErrorCode` and its meaning) and canceled; the
  inbox moves statuses forward only. Queued/accepted/sending/scheduled say nothing new.
- Outbound: text, at most 1600 characters (Twilio's limit for `Body`); Twilio splits it into
  segments itself. Errors: HTTP 429, code 20429 and 63017 (rate limits), 5xx and timeouts are
  TransientErrors; anything else is a PermanentError whose reason is Twilio's message and code
  (21610: the recipient replied STOP). Whose fault (FAULTS): a refused login (20003, HTTP 401),
  an inactive account, a sender the account does not own, a Messaging Service without numbers or
  the account's rate limit are the channel's; a bad or unsubscribed recipient, a carrier's refusal,
  the WhatsApp window are the message's alone. A status callback's `ErrorCode` is judged by the same
  table: an account suspended after the send was queued (30002) or an unregistered 10DLC number
  (30034) puts the channel in error; an unreachable, unknown or landline number or a carrier's
  filter (30003-30008) fails the message alone.
"""

import base64
import hashlib
import hmac
import re
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx

from tertulia.channels.adapters import sms
from tertulia.channels.adapters.telegram import clean_api_base_url
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    ChannelError,
    ChannelRules,
    DeliveryStatus,
    Fault,
    FetchedMedia,
    InboundMessage,
    MessageType,
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

TYPE = "twilio"
DEFAULT_API_BASE_URL = "https://api.twilio.com"
API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "x-twilio-signature"
# Present when a Webhook Rule signs the callback with a shared key (SharedKey) instead of the auth token.
SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
HMAC_SHA1 = "HMAC_SHA1"
HMAC_SHA256 = "HMAC_SHA256"
ALGORITHMS = {HMAC_SHA1: hashlib.sha1, HMAC_SHA256: hashlib.sha256}
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
MAX_BODY = sms.MAX_TEXT  # characters Twilio accepts in one message's Body
MAX_MEDIA_BYTES = 5 * 1024 * 1024  # Twilio's MMS limit
MAX_HELP_REPLY = 1600
ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
API_KEY_SID = re.compile(r"^SK[0-9a-fA-F]{32}$")
SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
AUTH_TOKEN = re.compile(r"^[0-9A-Za-z]{32}$")
SHORT_CODE = re.compile(r"^[0-9]{3,8}$")
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
MEDIA_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
RATE_LIMITED = frozenset({"20429", "63017"})
FOLLOW_UPS = frozenset({"help_reply"})

# MessageStatus -> ours; the statuses not listed (queued, accepted, sending, scheduled) say nothing new.
STATUSES = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "partially_delivered": DeliveryStatus.SENT,
    "read": DeliveryStatus.READ,
    "undelivered": DeliveryStatus.FAILED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}
# What the delivery error codes mean (twilio.com/docs/errors), for the reason a failed message shows.
ERRORS = {
    "21211": "Invalid 'To' phone number",
    "21408": "Permission to send an SMS has not been enabled for the region",
    "21610": "The recipient replied STOP: they must text START before they can be sent messages again",
    "21614": "'To' number is not a valid mobile number",
    "21617": "The message body is too long",
    "30003": "Unreachable destination handset",
    "30004": "Message blocked",
    "30005": "Unknown destination handset",
    "30006": "Landline or unreachable carrier",
    "30007": "Message filtered by the carrier",
    "30008": "Unknown error",
    "30001": "Queue overflow: the account sent faster than its queue could hold",
    "30002": "Account suspended",
    "30032": "Toll-free number not verified",
    "30034": "Message from an unregistered number (US A2P 10DLC)",
    "63016": "Outside the WhatsApp 24-hour window: only templates may be sent",
    "63017": "Rate limit exceeded",
}
# Whose fault Twilio's error codes are (twilio.com/docs/errors). Unlisted 4xx codes fail the message.
FAULTS: dict[str, Fault] = {
    "20003": Fault.CREDENTIALS,  # authentication failed (wrong Account SID, token or API key)
    "20008": Fault.CREDENTIALS,  # test credentials cannot send
    "20005": Fault.ACCOUNT,  # the account is not active (suspended, closed)
    "20404": Fault.ACCOUNT,  # the account (or its Messages resource) was not found
    "20429": Fault.ACCOUNT,  # too many requests for the account
    "63017": Fault.ACCOUNT,  # the sender's rate limit
    "21212": Fault.ACCOUNT,  # the From number is invalid
    "21606": Fault.ACCOUNT,  # the From number is not an SMS-capable number of the account
    "21659": Fault.ACCOUNT,  # the From number is not a Twilio number
    "21703": Fault.ACCOUNT,  # the Messaging Service has no number available to send from
    "21704": Fault.ACCOUNT,  # the Messaging Service contains no phone numbers
    "21705": Fault.ACCOUNT,  # the Messaging Service is invalid
    "30034": Fault.ACCOUNT,  # an unregistered US A2P 10DLC number
    # Reported later, in a status callback's ErrorCode (twilio.com/docs/api/errors/<code>):
    "30001": Fault.ACCOUNT,  # queue overflow: the account sends faster than its queue holds
    "30002": Fault.ACCOUNT,  # the account was suspended (unpaid, or a policy violation) after queueing
    "30032": Fault.ACCOUNT,  # an unverified toll-free sender
    "30003": Fault.MESSAGE,  # unreachable handset
    "30004": Fault.MESSAGE,  # blocked (by the recipient or their carrier)
    "30005": Fault.MESSAGE,  # unknown handset
    "30006": Fault.MESSAGE,  # a landline or an unreachable carrier
    "30007": Fault.MESSAGE,  # filtered by the carrier (this message's content)
    "30008": Fault.MESSAGE,  # unknown error, for this message
    "21211": Fault.MESSAGE,  # invalid To number
    "21408": Fault.MESSAGE,  # the recipient's region is not enabled
    "21610": Fault.MESSAGE,  # the recipient replied STOP
    "21614": Fault.MESSAGE,  # not a mobile number
    "21617": Fault.MESSAGE,  # body too long
    "63016": Fault.MESSAGE,  # outside the WhatsApp window
}
MEDIA_TYPES = {"image": MessageType.IMAGE, "audio": MessageType.AUDIO, "video": MessageType.VIDEO}


class TwilioAdapter:
    type: ClassVar[str] = TYPE
    rules: ClassVar[ChannelRules] = sms.RULES
    # Given with `--set` (CLI) or the form, but kept encrypted and never shown again.
    secret_fields: ClassVar[frozenset[str]] = frozenset({"auth_token", "api_key_secret", "webhook_key_secret"})

    # ----- callbacks ------------------------------------------------------------------------------

    def verify_webhook(self, channel: Channel, request: WebhookRequest) -> None:
        # A Webhook Rule's shared key signs when the settings header says so; the auth token otherwise.
        settings = request.headers.get(SIGNATURE_SETTINGS_HEADER, "").strip()
        key = sms.posted_secret("Twilio", channel, request, "webhook_key_secret" if settings else "auth_token")
        algorithm = _shared_key_algorithm(channel, settings) if settings else HMAC_SHA1
        given = request.headers.get(SIGNATURE_HEADER, "")
        if not given:
            raise WebhookRejected("no X-Twilio-Signature")
        # The parameters' part is the same for every URL tried, and the URL as called is tried first:
        # the other forms are worked out only when it fails (this runs while the provider waits).
        signed = _signed_parameters(request)
        if not any(
            hmac.compare_digest(given.encode(), _digest(key, url + signed, algorithm).encode())
            for url in _urls(channel, request)
        ):
            raise WebhookRejected("bad X-Twilio-Signature")

    def callback_answer(self, request: WebhookRequest) -> tuple[str, str]:
        """Empty TwiML: Twilio reads the answer to an incoming message as instructions, and an empty
        <Response/> tells it to send nothing back (a reply goes out later through the REST API)."""
        return EMPTY_TWIML, "text/xml"

    def parse_webhook(self, channel: Channel, request: WebhookRequest) -> ParsedWebhook:
        """Raises ValueError for a body that is neither an incoming message nor a status callback."""
        params = dict(_form(request.body))
        if params.get("MessageStatus"):
            return ParsedWebhook(statuses=_status(params))
        sid = params.get("MessageSid") or params.get("SmsSid")
        if not sid or not params.get("From"):
            raise ValueError("an incoming message needs a MessageSid and a From")
        message = _inbound(params, sid)
        follow_ups: list[dict[str, Any]] = []
        help_reply = str((channel.config or {}).get("help_reply") or "")
        if help_reply and message.payload.get("sms_keyword") == sms.Keyword.HELP:
            follow_ups.append(
                {
                    "method": "help_reply",
                    "to": params["From"],
                    "from": params.get("To"),
                    "text": help_reply,
                    "message_id": sid,
                }
            )
        return ParsedWebhook(messages=[message], follow_ups=follow_ups)

    # ----- sending --------------------------------------------------------------------------------

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        text = message.text or ""
        if message.attachments:
            raise PermanentError("this channel sends text only")
        if not text.strip():
            raise PermanentError("nothing to send: the message has no text")
        if len(text) > MAX_BODY:
            raise PermanentError(f"Twilio sends at most {MAX_BODY} characters in one message")
        result = RestApi(channel).send_text(message.recipient_id, text)
        sid = result.get("sid") if isinstance(result, dict) else None
        if not sid:
            raise PermanentError("Twilio accepted the message without a sid")
        return SendResult(provider_message_id=str(sid))

    # ----- settings -------------------------------------------------------------------------------

    def public_config(self, channel: Channel) -> dict[str, Any]:
        config = channel.config or {}
        return {
            "name": channel.name,
            "from_number": config.get("from_number"),
            "messaging_service_sid": config.get("messaging_service_sid"),
        }

    def clean_config(self, config: dict[str, Any], secrets_: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        base = clean_api_base_url(config.get("api_base_url") or DEFAULT_API_BASE_URL)
        account = str(config.get("account_sid") or "").strip()
        if not ACCOUNT_SID.match(account):
            raise ValidationFailed.field("config.account_sid", "must be the Account SID, AC followed by 32 characters")
        token = str(secrets_.get("auth_token") or "").strip()
        if not AUTH_TOKEN.match(token):
            raise ValidationFailed.field("secrets.auth_token", "must be the account's auth token (32 characters)")
        cleaned: dict[str, Any] = {"api_base_url": base, "account_sid": account}
        kept: dict[str, Any] = {"auth_token": token}
        key_sid = str(config.get("api_key_sid") or "").strip()
        if key_sid:
            if not API_KEY_SID.match(key_sid):
                raise ValidationFailed.field(
                    "config.api_key_sid", "must be an API key SID, SK followed by 32 characters"
                )
            key_secret = str(secrets_.get("api_key_secret") or "").strip()
            if not key_secret:
                raise ValidationFailed.field("secrets.api_key_secret", "is required with an API key")
            cleaned["api_key_sid"], kept["api_key_secret"] = key_sid, key_secret
        number = str(config.get("from_number") or "").strip()
        service = str(config.get("messaging_service_sid") or "").strip()
        if bool(number) == bool(service):
            raise ValidationFailed.field(
                "config.from_number", "give either the sender number or a Messaging Service SID"
            )
        if service:
            if not SERVICE_SID.match(service):
                raise ValidationFailed.field(
                    "config.messaging_service_sid", "must be a Messaging Service SID, MG followed by 32 characters"
                )
            cleaned["messaging_service_sid"] = service
        else:
            normalised = sms.e164(number) or (number if SHORT_CODE.match(number) else None)
            if normalised is None:
                raise ValidationFailed.field(
                    "config.from_number", "must be a phone number with its country code, like +14155550100"
                )
            cleaned["from_number"] = normalised
        webhook_key_sid = str(config.get("webhook_key_sid") or "").strip()
        if webhook_key_sid:
            cleaned["webhook_key_sid"] = webhook_key_sid
        webhook_key_secret = str(secrets_.get("webhook_key_secret") or "").strip()
        if webhook_key_secret:
            kept["webhook_key_secret"] = webhook_key_secret
        help_reply = " ".join(str(config.get("help_reply") or "").split())
        if len(help_reply) > MAX_HELP_REPLY:
            raise ValidationFailed.field("config.help_reply", "must be at most 1600 characters")
        if help_reply:
            cleaned["help_reply"] = help_reply
        # Set by `connect`: what Twilio calls and what the account is named.
        for name in ("callback_url", "account_name", "phone_number_sid"):
            if config.get(name):
                cleaned[name] = str(config[name])
        return cleaned, kept

    def owns_identity(self, channel: Channel, external_id: str) -> bool:
        # Any number can be texted from any of the workspace's Twilio senders.
        return sms.e164(external_id) is not None

    # ----- connecting -------------------------------------------------------------------------------

    def connect(self, channel: Channel, callback_url: str) -> dict[str, Any]:
        api = RestApi(channel)
        try:
            account = api.call("GET", f"Accounts/{api.account}.json")
        except TransientError as exc:
            raise SetupRefused(exc.reason, field="config.api_base_url", code="unreachable") from exc
        except PermanentError as exc:
            field = "config.account_sid" if exc.code == "20404" else "secrets.auth_token"
            raise SetupRefused(exc.reason, field=field, code="token") from exc
        if str(account.get("status") or "active") != "active":
            raise SetupRefused(f"the account is {account.get('status')}", field="config.account_sid", code="token")
        updates: dict[str, Any] = {"callback_url": callback_url, "account_name": account.get("friendly_name")}
        number = (channel.config or {}).get("from_number")
        if number and not SHORT_CODE.match(str(number)):
            try:
                found = api.call(
                    "GET", f"Accounts/{api.account}/IncomingPhoneNumbers.json", params={"PhoneNumber": number}
                )
            except ChannelError as exc:
                raise SetupRefused(exc.reason, field="config.from_number", code="number") from exc
            numbers = found.get("incoming_phone_numbers") or []
            if not numbers:
                raise SetupRefused(f"the account has no number {number}", field="config.from_number", code="number")
            sid = str(numbers[0].get("sid"))
            try:
                api.call(
                    "POST",
                    f"Accounts/{api.account}/IncomingPhoneNumbers/{sid}.json",
                    data={"SmsUrl": callback_url, "SmsMethod": "POST"},
                )
            except ChannelError as exc:
                raise SetupRefused(exc.reason, field="callback_url", code="callback") from exc
            updates["phone_number_sid"] = sid
        return updates

    def check_connection(self, channel: Channel) -> dict[str, Any]:
        """The account's name and state and where the sender number's SMS go, as Twilio says."""
        api = RestApi(channel)
        account = api.call("GET", f"Accounts/{api.account}.json")
        config = channel.config or {}
        facts: dict[str, Any] = {
            "account_name": account.get("friendly_name"),
            "account_status": account.get("status"),
            "sender": config.get("from_number") or config.get("messaging_service_sid"),
        }
        number = config.get("from_number")
        if number and not SHORT_CODE.match(str(number)):
            found = api.call("GET", f"Accounts/{api.account}/IncomingPhoneNumbers.json", params={"PhoneNumber": number})
            numbers = found.get("incoming_phone_numbers") or []
            if not numbers:
                raise PermanentError(f"the account has no number {number}")
            facts["sms_url"] = numbers[0].get("sms_url")
        return facts

    def disconnect(self, channel: Channel) -> None:
        sid = (channel.config or {}).get("phone_number_sid")
        if sid:
            api = RestApi(channel)
            api.call("POST", f"Accounts/{api.account}/IncomingPhoneNumbers/{sid}.json", data={"SmsUrl": ""})

    # ----- media and follow-ups --------------------------------------------------------------------

    def fetch_media(self, channel: Channel, reference: dict[str, Any]) -> FetchedMedia:
        api = RestApi(channel)
        url = str(reference.get("url") or "")
        # Only the API's own media URLs get the account's credentials.
        if urlsplit(url)[:2] != urlsplit(api.base)[:2]:
            raise PermanentError("the media URL is not on the Twilio API's host")
        data, content_type = api.download(url)
        declared = str(reference.get("content_type") or content_type or "application/octet-stream").lower()
        return FetchedMedia(data=data, content_type=declared, name=str(reference.get("name") or "media"))

    def follow_up(self, channel: Channel, call: dict[str, Any]) -> None:
        if call.get("method") not in FOLLOW_UPS:
            raise ValueError(f"not a follow-up call: {call.get('method')!r}")
        RestApi(channel).send_text(str(call["to"]), str(call["text"]))


# ----- the REST API ---------------------------------------------------------------------------------


def signature(key: str, url: str, params: list[tuple[str, str]], algorithm: str = HMAC_SHA1) -> str:
    """X-Twilio-Signature for a callback to `url` with these form parameters, under the auth token
    (HMAC-SHA1) or a webhook shared key (the algorithm its settings header names). A name's repeated
    values are sorted, and an identical value counts once, as Twilio's own validator does."""
    return _digest(key, url + _parameters_text(params), algorithm)


def _parameters_text(params: list[tuple[str, str]]) -> str:
    """What a signature covers after the URL: each name followed by each of its distinct values."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    return "".join(name + value for name in sorted(values) for value in sorted(values[name]))


def _digest(key: str, payload: str, algorithm: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), payload.encode(), ALGORITHMS[algorithm]).digest()).decode()


def _shared_key_algorithm(channel: Channel, settings: str) -> str:
    """The algorithm X-Twilio-Webhooks-Signature-Settings (`key=<id>,algorithm=HMAC_SHA256`) names
    for a callback signed with a shared key. Raises WebhookRejected for an algorithm we do not know,
    or another key than the channel's `webhook_key_sid` when it has one."""
    parts = dict(part.strip().partition("=")[::2] for part in settings.split(","))
    algorithm = parts.get("algorithm", "").strip().upper() or HMAC_SHA1
    if algorithm not in ALGORITHMS:
        raise WebhookRejected(f"signed with {algorithm}, which this server does not know")
    key_sid = str((channel.config or {}).get("webhook_key_sid") or "")
    if key_sid and parts.get("key", "").strip() != key_sid:
        raise WebhookRejected("signed with another webhook key than the channel's webhook_key_sid")
    return algorithm


def _form(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError("not a form-encoded body") from exc


def _with_and_without_port(url: str) -> Iterator[str]:
    yield url
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    yield urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    if default is not None:
        yield urlunsplit((parts.scheme, f"{host}:{parts.port or default}", parts.path, parts.query, ""))


def _candidates(channel: Channel, request: WebhookRequest) -> Iterator[str]:
    yield request.url
    called = urlsplit(request.url)
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
    host = request.headers.get("x-forwarded-host", "").split(",")[0].strip() or request.headers.get("host", "")
    if proto or host:
        yield urlunsplit((proto or called.scheme, host or called.netloc, called.path, called.query, ""))
    registered = str((channel.config or {}).get("callback_url") or "")
    if registered:
        ours = urlsplit(registered)
        yield urlunsplit((ours.scheme, ours.netloc, ours.path, called.query, ""))


def _urls(channel: Channel, request: WebhookRequest) -> Iterator[str]:
    """The URLs Twilio may have signed for this request (see the module's docstring), each once, the
    URL as called first; worked out as they are asked for."""
    seen: set[str] = set()
    for candidate in _candidates(channel, request):
        for url in _with_and_without_port(candidate):
            if url not in seen:
                seen.add(url)
                yield url


def _signed_parameters(request: WebhookRequest) -> str:
    """What a valid signature covers after the URL."""
    query = dict(parse_qsl(urlsplit(request.url).query))
    if "bodySHA256" in query:
        # A JSON body: only the URL is signed, and the URL carries the body's hash.
        digest = hashlib.sha256(request.body).hexdigest()
        if not hmac.compare_digest(digest, query["bodySHA256"].lower()):
            raise WebhookRejected("the body does not match bodySHA256")
        return ""
    try:
        return _parameters_text(_form(request.body))
    except ValueError as exc:
        raise WebhookRejected(str(exc)) from exc


class RestApi:
    """Calls to one account's REST API; every failure is a TransientError or a PermanentError."""

    def __init__(self, channel: Channel) -> None:
        config, secrets_ = channel.config or {}, channel.secrets or {}
        self.base = str(config.get("api_base_url") or DEFAULT_API_BASE_URL).rstrip("/")
        self.account = str(config.get("account_sid") or "")
        self.config = config
        if config.get("api_key_sid"):
            self.auth = (str(config["api_key_sid"]), str(secrets_.get("api_key_secret") or ""))
        else:
            self.auth = (self.account, str(secrets_.get("auth_token") or ""))

    def call(
        self, method: str, path: str, *, data: dict[str, str] | None = None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        url = f"{self.base}/{API_VERSION}/{path}"
        try:
            response = httpx.request(method, url, data=data, params=params, auth=self.auth, timeout=TIMEOUT)
        except httpx.TimeoutException as exc:
            raise TransientError("Twilio did not answer in time") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"Twilio could not be reached ({type(exc).__name__})") from exc
        return _result(response)

    def send_text(self, to: str, text: str) -> dict[str, Any]:
        recipient = sms.e164(to)
        if recipient is None:
            raise PermanentError(f"{to!r} is not a phone number Twilio can send to", code="21211")
        data = {"To": recipient, "Body": text}
        if self.config.get("messaging_service_sid"):
            data["MessagingServiceSid"] = str(self.config["messaging_service_sid"])
        else:
            data["From"] = str(self.config.get("from_number") or "")
        if self.config.get("callback_url"):
            data["StatusCallback"] = str(self.config["callback_url"])
        return self.call("POST", f"Accounts/{self.account}/Messages.json", data=data)

    def download(self, url: str) -> tuple[bytes, str | None]:
        chunks: list[bytes] = []
        received = 0
        try:
            # Twilio answers a media URL with a redirect to its CDN; httpx drops the credentials
            # when a redirect leaves the host.
            with httpx.stream("GET", url, auth=self.auth, timeout=MEDIA_TIMEOUT, follow_redirects=True) as response:
                if response.status_code >= 500 or response.status_code == 429:
                    raise TransientError(f"the media download answered {response.status_code}")
                if response.status_code != 200:
                    raise PermanentError(f"the media download answered {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > MAX_MEDIA_BYTES:
                    raise PermanentError("larger than Twilio's 5 MB MMS limit")
                for chunk in response.iter_bytes():
                    received += len(chunk)
                    if received > MAX_MEDIA_BYTES:
                        raise PermanentError("larger than Twilio's 5 MB MMS limit")
                    chunks.append(chunk)
                content_type = response.headers.get("content-type")
        except httpx.TimeoutException as exc:
            raise TransientError("the media download timed out") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"the media download failed ({type(exc).__name__})") from exc
        return b"".join(chunks), content_type.split(";")[0].strip() if content_type else None


def _result(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    if response.status_code < 300:
        return body
    code = str(body.get("code") or response.status_code)
    message = str(body.get("message") or f"Twilio answered HTTP {response.status_code}")
    reason = f"{ERRORS[code]}. Twilio: {message} ({code})" if code == "21610" else f"{message} ({code})"
    fault = FAULTS.get(code) or (Fault.CREDENTIALS if response.status_code == 401 else None)
    if response.status_code == 429 or code in RATE_LIMITED:
        retry_after = response.headers.get("retry-after")
        wait = float(retry_after) if retry_after and retry_after.isdigit() else None
        raise TransientError(reason, code=code, retry_after=wait, fault=fault or Fault.ACCOUNT)
    if response.status_code >= 500:
        raise TransientError(reason, code=code, fault=fault)
    raise PermanentError(reason, code=code, fault=fault)


# ----- inbound ----------------------------------------------------------------------------------------


def _inbound(params: dict[str, str], sid: str) -> InboundMessage:
    text = params.get("Body", "")
    files: list[dict[str, Any]] = []
    count = int(params["NumMedia"]) if params.get("NumMedia", "").isdigit() else 0
    kinds: list[MessageType] = []
    for index in range(count):
        url = params.get(f"MediaUrl{index}")
        if not url:
            continue
        content_type = params.get(f"MediaContentType{index}", "application/octet-stream").lower()
        kinds.append(MEDIA_TYPES.get(content_type.split("/")[0], MessageType.FILE))
        extension = content_type.rpartition("/")[2].split(";")[0] or "bin"
        name = f"{url.rstrip('/').rpartition('/')[2] or sid}-{index}.{extension}"
        files.append({"provider_file": {"url": url, "content_type": content_type, "name": name}})
    kind = (
        kinds[0] if kinds and all(k == kinds[0] for k in kinds) else (MessageType.FILE if kinds else MessageType.TEXT)
    )
    payload: dict[str, Any] = {
        "twilio": {
            "message_sid": sid,
            "to": params.get("To"),
            "num_segments": params.get("NumSegments"),
            "messaging_service_sid": params.get("MessagingServiceSid"),
            "from_country": params.get("FromCountry"),
        }
    }
    found = sms.keyword(text)
    if found is not None:
        payload["sms_keyword"] = found.value
    number = sms.e164(params["From"])
    return InboundMessage(
        sender_id=sms.sender_id(params["From"]),
        provider_message_id=sid,
        type=kind,
        text=text or None,
        attachments=files,
        payload=payload,
        phone=number,
    )


def _status(params: dict[str, str]) -> list[StatusUpdate]:
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = STATUSES.get(params.get("MessageStatus", "").lower())
    if not sid or status is None:
        return []
    reason = None
    error = None
    if status == DeliveryStatus.FAILED:
        code = params.get("ErrorCode", "")
        if code:
            reason = f"{code}: {ERRORS.get(code, 'see twilio.com/docs/errors/' + code)}"
            # The same code, the same fault as when Twilio refuses the send (FAULTS).
            error = PermanentError(reason, code=code, fault=FAULTS.get(code))
        else:
            reason = params["MessageStatus"]
    recipient = sms.e164(params.get("To"))
    return [StatusUpdate(provider_message_id=sid, status=status, reason=reason, recipient_id=recipient, error=error)]
