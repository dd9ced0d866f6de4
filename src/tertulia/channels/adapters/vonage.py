"""The Vonage SMS adapter: a Vonage number over the SMS API (`api`: "sms", the default) or the
Messages API (`api`: "messages").

Wire format: ../shared/reference/channels.md sections 9 and 11 (and developer.vonage.com).

- Connect (`connect`): SMS API: the credentials are checked (`GET /account/get-balance`), the number
  found among the account's (`GET /account/numbers`) and its inbound webhook set to the channel's
  callback URL (`POST /number/update`, `moHttpUrl`). Messages API: the credentials are checked the
  same way (the account API is on `account_api_base_url`, default https://rest.nexmo.com); the
  inbound and status URLs are set by the manager on the Vonage Application (docs/channels/vonage.md).
  Every call goes to the channel's `api_base_url` (SMS API default https://rest.nexmo.com, Messages
  API https://api.nexmo.com): a proxy or, in tests, a local fake.
- Callbacks, SMS API: form posts (or JSON with "POST-JSON") carrying `sig`, the hex HMAC (md5 by
  default, sha1, sha256 or sha512, as set in the dashboard: `signature_method`) with the signature
  secret over `&key=value` for every other parameter, keys sorted, `&` and `=` in values replaced by
  `_`; the legacy `md5hash` is md5 of the same string followed by the secret. Unsigned callbacks are
  refused: the account must have signed webhooks on. A GET is refused too (the inbound webhook method
  must be POST). Messages API: `Authorization: Bearer <JWT>`, HS256 with the signature secret, whose
  `payload_hash` claim is the SHA-256 of the body. Either way a callback signed more than
  `signature_max_age` seconds from now (default 300; 30 to 86400) is refused as a replay: the SMS
  API's signed `timestamp`, the JWT's `iat`.
- Identity: the sender's `msisdn` (`from` in the Messages API) in E.164, one contact per person.
- Inbound: SMS text. A long SMS arrives in parts (`concat-ref`, `concat-total`, `concat-part`): each
  part is a message with payload `sms_part`, which the inbox reassembles (conversations/sms_parts.py)
  into one message once every part is in. Keywords as for every SMS provider (`sms_keyword`;
  HELP/AYUDA answered with `help_reply`). Provider message id: `messageId` / `message_uuid`.
- Statuses: SMS API delivery receipts (`status` delivered, accepted/buffered = sent, expired/failed/
  rejected = failed with `err-code`; `err-code` 9 means the recipient opted out, recorded as such);
  Messages API status webhooks (submitted = sent, delivered, read, rejected/undeliverable = failed
  with the error's title and detail). Sent with every message: `callback` / `webhook_url`.
- Outbound: text, `type=unicode` when the text is not GSM-7 (SMS API). SMS API answers 200 with a
  `status` per part: 1 (throttled), 5 (internal error) and 10 (too many binds: "back-off and retry")
  are TransientErrors, any other non-zero status a PermanentError with Vonage's `error-text`.
  Messages API answers RFC 7807 problems: 429 and 5xx transient, anything else permanent with the
  title and detail. Whose fault: the SMS API's
  status or the Messages API's error code (FAULTS: 4 bad credentials, 8/9/11 the account barred, out
  of credit or not enabled, 15 a sender the account may not use; 1060 the account barred, 1070 its
  quota, 1120 its sender refused), else the HTTP status (HTTP_FAULTS: 401 the credentials, 402 the
  balance); a barred or invalid number fails the message alone. A failure reported later is judged
  by the same table: a Messages API status's `error.type` code, and a delivery receipt's `err-code`
  as "dlr:<err-code>" (apart from the send statuses it shares numbers with): 16, 39, 50 and 51 (the
  account's quota, a sender refused for the US, its India DLT entity or header) are the channel's;
  an unreachable, barred or opted-out recipient the message's.
"""

import hashlib
import hmac
import json
import re
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
import jwt

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
from tertulia.kit.clock import utcnow
from tertulia.kit.errors import ValidationFailed

TYPE = "vonage"
SMS_API = "sms"
MESSAGES_API = "messages"
DEFAULT_SMS_BASE_URL = "https://rest.nexmo.com"
DEFAULT_MESSAGES_BASE_URL = "https://api.nexmo.com"
SIGNATURE_METHODS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
LEGACY_MD5 = "md5hash"
MAX_TEXT = sms.MAX_TEXT
# How old a signed callback may be (its `timestamp`, or the JWT's `iat`), either way: a captured
# callback replayed later is refused. Vonage retries a callback it got no 2xx for; a retry signed at
# the first attempt's time is refused too once it is older than this, so a longer outage wants more.
DEFAULT_SIGNATURE_MAX_AGE = 300
MIN_SIGNATURE_MAX_AGE = 30
MAX_SIGNATURE_MAX_AGE = 86_400  # Vonage's retry horizon for the SMS API
API_KEY = re.compile(r"^[0-9a-zA-Z]{6,16}$")
ALPHANUMERIC_SENDER = re.compile(r"^[0-9A-Za-z ]{1,11}$")
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
FOLLOW_UPS = frozenset({"help_reply"})
# SMS API send statuses worth retrying: 1 throttled, 5 internal error, 10 too many existing binds
# (its documented resolution: "Back-off and retry").
SMS_RETRYABLE = frozenset({"1", "5", "10"})
# Whose fault Vonage's codes are, one table for a refused send and a failure reported later: the SMS
# API's send statuses (developer.vonage.com/messaging/sms/guides/troubleshooting-sms), the Messages
# API's error codes, in a refused request's and in a status webhook's `error.type`
# (developer.vonage.com/api-errors/messages-olympus), and the SMS API's delivery receipt `err-code`s,
# "dlr:<err-code>" (DLR_ERRORS). An unlisted one (2, 3, 6 bad parameters, 7 number barred, 12 too
# long, 22 bad network, 29 not a whitelisted destination, 33 number deactivated; 1050 number barred;
# a receipt's unreachable, barred or opted-out recipient, a refused content template or consent)
# fails the message.
FAULTS: dict[str, Fault] = {
    "1": Fault.ACCOUNT,  # throttled: faster than the account's limit (retried)
    "4": Fault.CREDENTIALS,  # invalid credentials
    "14": Fault.CREDENTIALS,  # invalid signature
    "32": Fault.CREDENTIALS,  # signature and API secret both given, disallowed
    "8": Fault.ACCOUNT,  # the account is barred
    "9": Fault.ACCOUNT,  # partner quota violation: not enough credit
    "10": Fault.ACCOUNT,  # too many existing binds
    "11": Fault.ACCOUNT,  # the account is not enabled for HTTP
    "15": Fault.ACCOUNT,  # invalid sender address (the account may not send from it)
    "23": Fault.ACCOUNT,  # invalid callback URL
    "5": Fault.PROVIDER,  # internal error (retried)
    "1000": Fault.ACCOUNT,  # throttled: the account's submission capacity
    "1030": Fault.PROVIDER,  # internal error
    "1060": Fault.ACCOUNT,  # partner account barred
    "1070": Fault.ACCOUNT,  # provider quota exceeded
    "1080": Fault.ACCOUNT,  # the account is not enabled for REST
    "1100": Fault.PROVIDER,  # communication failed
    "1120": Fault.ACCOUNT,  # illegal sender address: local rules refuse the channel's sender id
    "dlr:16": Fault.ACCOUNT,  # gateway quota exceeded: the account's requests per period (US, France)
    "dlr:39": Fault.ACCOUNT,  # illegal sender address for a US destination: not the account's US number
    "dlr:50": Fault.ACCOUNT,  # entity filter: the account's `entity-id` (India DLT) incorrect or missing
    "dlr:51": Fault.ACCOUNT,  # header filter: the header id (the channel's `from`) incorrect or missing
}
RECEIPT_CODE = "dlr:{}"
# Whose fault a refused HTTP request is (the Messages API's RFC 7807 problems, the account API).
HTTP_FAULTS: dict[int, Fault] = {
    401: Fault.CREDENTIALS,
    403: Fault.CREDENTIALS,
    402: Fault.ACCOUNT,  # low balance
    429: Fault.ACCOUNT,  # the account's rate limit
}
OPTED_OUT = "9"  # DLR err-code: the recipient opted out (Vonage "Messaging Opted-out Numbers")

DLR_STATUSES = {
    "delivered": DeliveryStatus.DELIVERED,
    "accepted": DeliveryStatus.SENT,
    "buffered": DeliveryStatus.SENT,
    "expired": DeliveryStatus.FAILED,
    "failed": DeliveryStatus.FAILED,
    "rejected": DeliveryStatus.FAILED,
}
MESSAGES_STATUSES = {
    "submitted": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "rejected": DeliveryStatus.FAILED,
    "undeliverable": DeliveryStatus.FAILED,
}
# Delivery receipt error codes, as Vonage documents them: the "DLR error codes" table of
# developer.vonage.com/messaging/sms/guides/delivery-receipts, whose source
# (`_documentation/en/messaging/sms/guides/delivery-receipts.md` in Nexmo/nexmo-developer) gained
# 16 and 50-54 with the India DLT rules (pull request 3412, "Updated delivery-receipts documentation
# with new errors in line with DLT", December 2020) and 39 later. Vonage API Support's "Vonage SMS
# Delivery Error Codes and Descriptions" gives the same meanings as far as it could be read (0-14).
DLR_ERRORS = {
    "0": "Delivered",
    "1": "Unknown",
    "2": "Absent subscriber - temporary",
    "3": "Absent subscriber - permanent",
    "4": "Call barred by user",
    "5": "Portability error",
    "6": "Anti-spam rejection",
    "7": "Handset busy",
    "8": "Network error",
    "9": "Illegal number: the recipient opted out",
    "10": "Illegal message",
    "11": "Unroutable",
    "12": "Destination unreachable",
    "13": "Subscriber age restriction",
    "14": "Number blocked by carrier",
    "15": "Prepaid insufficient funds",
    "16": "Gateway quota exceeded",
    "39": "Illegal sender address for US destination",
    "50": "Entity filter",
    "51": "Header filter",
    "52": "Content filter",
    "53": "Consent filter",
    "54": "Regulation error",
    "99": "General error",
}


def _api(channel: Channel) -> str:
    return str((channel.config or {}).get("api") or SMS_API)


class VonageAdapter:
    type: ClassVar[str] = TYPE
    rules: ClassVar[ChannelRules] = sms.RULES
    # Given with `--set` (CLI) or the form, but kept encrypted and never shown again.
    secret_fields: ClassVar[frozenset[str]] = frozenset({"api_secret", "signature_secret"})

    # ----- callbacks ------------------------------------------------------------------------------

    def verify_webhook(self, channel: Channel, request: WebhookRequest) -> None:
        secret = sms.posted_secret("Vonage", channel, request, "signature_secret")
        max_age = int((channel.config or {}).get("signature_max_age") or DEFAULT_SIGNATURE_MAX_AGE)
        if _api(channel) == MESSAGES_API:
            _check_age(_verify_jwt(secret, request), max_age, "the token's iat")
            return
        try:
            params = _params(request.body)
        except ValueError as exc:
            raise WebhookRejected(str(exc)) from exc
        given = str(params.pop("sig", "")).lower()
        method = str((channel.config or {}).get("signature_method") or "md5")
        if not given or not hmac.compare_digest(given, sms_signature(secret, method, params)):
            raise WebhookRejected("bad or missing sig")
        _check_age(params.get("timestamp"), max_age, "the signed timestamp")

    def parse_webhook(self, channel: Channel, request: WebhookRequest) -> ParsedWebhook:
        """Raises ValueError for a body that is neither an incoming message nor a receipt."""
        if _api(channel) == MESSAGES_API:
            return _parse_messages_api(channel, request.body)
        params = _params(request.body)
        if params.get("text") is not None or params.get("concat") or params.get("type") in ("text", "unicode"):
            message = _inbound_sms(params)
            return ParsedWebhook(messages=[message], follow_ups=_help(channel, message))
        if params.get("messageId") and params.get("status"):
            return ParsedWebhook(statuses=_dlr(params))
        raise ValueError("neither an inbound SMS nor a delivery receipt")

    # ----- sending --------------------------------------------------------------------------------

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        text = message.text or ""
        if message.attachments:
            raise PermanentError("this channel sends text only")
        if not text.strip():
            raise PermanentError("nothing to send: the message has no text")
        if len(text) > MAX_TEXT:
            raise PermanentError(f"Vonage sends at most {MAX_TEXT} characters in one message")
        provider_id = Api(channel).send_text(message.recipient_id, text, message.idempotency_key)
        return SendResult(provider_message_id=provider_id)

    # ----- settings -------------------------------------------------------------------------------

    def public_config(self, channel: Channel) -> dict[str, Any]:
        config = channel.config or {}
        return {"name": channel.name, "from_number": config.get("from_number"), "api": _api(channel)}

    def clean_config(self, config: dict[str, Any], secrets_: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        api = str(config.get("api") or SMS_API).strip().lower()
        if api not in (SMS_API, MESSAGES_API):
            raise ValidationFailed.field("config.api", "must be sms or messages")
        default_base = DEFAULT_MESSAGES_BASE_URL if api == MESSAGES_API else DEFAULT_SMS_BASE_URL
        cleaned: dict[str, Any] = {
            "api": api,
            "api_base_url": clean_api_base_url(config.get("api_base_url") or default_base),
        }
        cleaned["account_api_base_url"] = clean_api_base_url(config.get("account_api_base_url") or DEFAULT_SMS_BASE_URL)
        key = str(config.get("api_key") or "").strip()
        if not API_KEY.match(key):
            raise ValidationFailed.field("config.api_key", "must be the API key shown in the Vonage dashboard")
        cleaned["api_key"] = key
        api_secret = str(secrets_.get("api_secret") or "").strip()
        if not api_secret:
            raise ValidationFailed.field("secrets.api_secret", "is required")
        signature_secret = str(secrets_.get("signature_secret") or "").strip()
        if not signature_secret:
            raise ValidationFailed.field("secrets.signature_secret", "is required")
        method = str(config.get("signature_method") or "md5").strip().lower()
        if method not in (*SIGNATURE_METHODS, LEGACY_MD5):
            raise ValidationFailed.field("config.signature_method", "must be md5hash, md5, sha1, sha256 or sha512")
        cleaned["signature_method"] = method
        max_age = str(config.get("signature_max_age") or DEFAULT_SIGNATURE_MAX_AGE).strip()
        if not max_age.isdigit() or not MIN_SIGNATURE_MAX_AGE <= int(max_age) <= MAX_SIGNATURE_MAX_AGE:
            raise ValidationFailed.field(
                "config.signature_max_age",
                f"must be a number of seconds from {MIN_SIGNATURE_MAX_AGE} to {MAX_SIGNATURE_MAX_AGE}",
            )
        cleaned["signature_max_age"] = int(max_age)
        number = str(config.get("from_number") or "").strip()
        normalised = sms.e164(number) or (
            number if ALPHANUMERIC_SENDER.match(number) and not number.isdigit() else None
        )
        if normalised is None:
            raise ValidationFailed.field(
                "config.from_number", "must be a phone number with its country code, like +14155550100"
            )
        cleaned["from_number"] = normalised
        help_reply = " ".join(str(config.get("help_reply") or "").split())
        if len(help_reply) > MAX_TEXT:
            raise ValidationFailed.field("config.help_reply", "must be at most 1600 characters")
        if help_reply:
            cleaned["help_reply"] = help_reply
        for name in ("callback_url", "account_name"):
            if config.get(name):
                cleaned[name] = str(config[name])
        return cleaned, {"api_secret": api_secret, "signature_secret": signature_secret}

    def owns_identity(self, channel: Channel, external_id: str) -> bool:
        return sms.e164(external_id) is not None

    # ----- connecting -------------------------------------------------------------------------------

    def connect(self, channel: Channel, callback_url: str) -> dict[str, Any]:
        api = Api(channel)
        try:
            api.account("GET", "/account/get-balance")
        except TransientError as exc:
            raise SetupRefused(exc.reason, field="config.api_base_url", code="unreachable") from exc
        except PermanentError as exc:
            raise SetupRefused(exc.reason, field="secrets.api_secret", code="token") from exc
        updates: dict[str, Any] = {"callback_url": callback_url, "account_name": f"Vonage {api.key}"}
        if _api(channel) == MESSAGES_API:
            return updates
        number = (channel.config or {}).get("from_number")
        if not str(number).startswith("+"):
            return updates  # an alphanumeric sender receives nothing
        digits = str(number).lstrip("+")
        try:
            found = api.account("GET", "/account/numbers", params={"pattern": digits, "search_pattern": "0"})
        except ChannelError as exc:
            raise SetupRefused(exc.reason, field="config.from_number", code="number") from exc
        numbers = [n for n in found.get("numbers") or [] if str(n.get("msisdn")) == digits]
        if not numbers:
            raise SetupRefused(f"the account has no number {number}", field="config.from_number", code="number")
        try:
            api.account(
                "POST",
                "/number/update",
                data={"country": str(numbers[0].get("country") or ""), "msisdn": digits, "moHttpUrl": callback_url},
            )
        except ChannelError as exc:
            raise SetupRefused(exc.reason, field="callback_url", code="callback") from exc
        return updates

    def disconnect(self, channel: Channel) -> None:
        number = str((channel.config or {}).get("from_number") or "")
        if _api(channel) == MESSAGES_API or not number.startswith("+"):
            return
        api = Api(channel)
        found = api.account("GET", "/account/numbers", params={"pattern": number[1:], "search_pattern": "0"})
        for item in found.get("numbers") or []:
            if str(item.get("msisdn")) == number[1:]:
                api.account(
                    "POST",
                    "/number/update",
                    data={"country": str(item.get("country")), "msisdn": number[1:], "moHttpUrl": ""},
                )

    def check_connection(self, channel: Channel) -> dict[str, Any]:
        """The account's balance and where the number's SMS go, as Vonage says."""
        api = Api(channel)
        balance = api.account("GET", "/account/get-balance")
        config = channel.config or {}
        facts: dict[str, Any] = {
            "account_name": f"Vonage {api.key}",
            "account_status": f"balance {balance.get('value')}",
            "sender": config.get("from_number"),
        }
        number = str(config.get("from_number") or "")
        if _api(channel) == SMS_API and number.startswith("+"):
            found = api.account("GET", "/account/numbers", params={"pattern": number[1:], "search_pattern": "0"})
            numbers = [n for n in found.get("numbers") or [] if str(n.get("msisdn")) == number[1:]]
            if not numbers:
                raise PermanentError(f"the account has no number {number}")
            facts["sms_url"] = numbers[0].get("moHttpUrl")
        return facts

    # ----- follow-ups ------------------------------------------------------------------------------

    def fetch_media(self, channel: Channel, reference: dict[str, Any]) -> FetchedMedia:
        raise PermanentError("Vonage SMS carries no files")

    def follow_up(self, channel: Channel, call: dict[str, Any]) -> None:
        if call.get("method") not in FOLLOW_UPS:
            raise ValueError(f"not a follow-up call: {call.get('method')!r}")
        Api(channel).send_text(str(call["to"]), str(call["text"]), None)


# ----- signatures -----------------------------------------------------------------------------------


def sms_signature(secret: str, method: str, params: dict[str, Any]) -> str:
    """The SMS API's `sig` over `params` (without `sig`), as Vonage computes it."""
    joined = "".join(
        f"&{key}={value.replace('&', '_').replace('=', '_') if isinstance(value, str) else value}"
        for key, value in sorted(params.items())
    )
    if method == LEGACY_MD5:
        return hashlib.md5((joined + secret).encode(), usedforsecurity=False).hexdigest()
    return hmac.new(secret.encode(), joined.encode(), SIGNATURE_METHODS[method]).hexdigest()


def _check_age(stamp: Any, max_age: int, what: str) -> None:
    """Refuses a signed callback whose Unix time `stamp` is more than `max_age` seconds away from now."""
    try:
        signed_at = int(str(stamp))
    except ValueError as exc:
        raise WebhookRejected(f"{what} is missing or not a Unix time") from exc
    age = utcnow().timestamp() - signed_at
    if abs(age) > max_age:
        raise WebhookRejected(f"{what} is {int(age)} s from now; at most {max_age} s is accepted (signature_max_age)")


def _verify_jwt(secret: str, request: WebhookRequest) -> Any:
    """Checks the Messages API webhook's JWT and its payload hash; its `iat`."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not token:
        raise WebhookRejected("no bearer token")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["iat"]})
    except jwt.PyJWTError as exc:
        raise WebhookRejected(f"bad token: {exc}") from exc
    expected = hashlib.sha256(request.body).hexdigest()
    if not hmac.compare_digest(str(claims.get("payload_hash") or ""), expected):
        raise WebhookRejected("payload_hash does not match the body")
    return claims["iat"]


def _params(body: bytes) -> dict[str, Any]:
    """An SMS API callback's parameters: a form, or JSON when the webhook is POST-JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("the body is not UTF-8") from exc
    if text.lstrip().startswith("{"):
        try:
            found = json.loads(text)
        except ValueError as exc:
            raise ValueError("the body is not JSON") from exc
        if not isinstance(found, dict):
            raise ValueError("expected a JSON object")
        return found
    return dict(parse_qsl(text, keep_blank_values=True))


# ----- the APIs ------------------------------------------------------------------------------------


class Api:
    def __init__(self, channel: Channel) -> None:
        config, secrets_ = channel.config or {}, channel.secrets or {}
        self.api = _api(channel)
        default = DEFAULT_MESSAGES_BASE_URL if self.api == MESSAGES_API else DEFAULT_SMS_BASE_URL
        self.base = str(config.get("api_base_url") or default).rstrip("/")
        self.account_base = str(config.get("account_api_base_url") or DEFAULT_SMS_BASE_URL).rstrip("/")
        if self.api == SMS_API:
            self.account_base = self.base
        self.key = str(config.get("api_key") or "")
        self.secret = str(secrets_.get("api_secret") or "")
        self.config = config

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return httpx.request(method, url, timeout=TIMEOUT, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientError("Vonage did not answer in time") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"Vonage could not be reached ({type(exc).__name__})") from exc

    def account(
        self, method: str, path: str, *, params: dict[str, str] | None = None, data: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """A call to the account and numbers API (api_key and api_secret as parameters)."""
        credentials = {"api_key": self.key, "api_secret": self.secret}
        if method == "GET":
            response = self._request(method, self.account_base + path, params={**credentials, **(params or {})})
        else:
            response = self._request(method, self.account_base + path, data={**credentials, **(data or {})})
        body = _json(response)
        if response.status_code < 300:
            if str(body.get("error-code") or "200") not in ("200", ""):
                raise PermanentError(f"{body.get('error-code-label') or 'refused'} ({body.get('error-code')})")
            return body
        reason = str(
            body.get("error-code-label") or body.get("title") or f"Vonage answered HTTP {response.status_code}"
        )
        fault = HTTP_FAULTS.get(response.status_code)
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(reason, code=str(response.status_code), fault=fault)
        raise PermanentError(reason, code=str(response.status_code), fault=fault)

    def send_text(self, to: str, text: str, reference: str | None) -> str:
        recipient = sms.e164(to)
        if recipient is None:
            raise PermanentError(f"{to!r} is not a phone number Vonage can send to")
        sender = str(self.config.get("from_number") or "").lstrip("+")
        callback = self.config.get("callback_url")
        if self.api == MESSAGES_API:
            payload: dict[str, Any] = {
                "message_type": "text",
                "text": text,
                "to": recipient.lstrip("+"),
                "from": sender,
                "channel": "sms",
            }
            if reference:
                payload["client_ref"] = reference
            if callback:
                payload["webhook_url"] = callback
            response = self._request("POST", f"{self.base}/v1/messages", json=payload, auth=(self.key, self.secret))
            return _messages_result(response)
        form = {
            "api_key": self.key,
            "api_secret": self.secret,
            "from": sender,
            "to": recipient.lstrip("+"),
            "text": text,
        }
        if sms.segments(text).encoding == "UCS-2":
            form["type"] = "unicode"
        if reference:
            form["client-ref"] = reference
        if callback:
            form["callback"] = str(callback)
        return _sms_result(self._request("POST", f"{self.base}/sms/json", data=form))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _sms_result(response: httpx.Response) -> str:
    body = _json(response)
    fault = HTTP_FAULTS.get(response.status_code)
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(
            f"Vonage answered HTTP {response.status_code}", code=str(response.status_code), fault=fault
        )
    if response.status_code >= 300:
        raise PermanentError(
            f"Vonage answered HTTP {response.status_code}", code=str(response.status_code), fault=fault
        )
    parts = [p for p in body.get("messages") or [] if isinstance(p, dict)]
    if not parts:
        raise PermanentError("Vonage answered without a message")
    for part in parts:
        status = str(part.get("status") or "")
        if status != "0":
            reason = f"{part.get('error-text') or 'refused'} ({status})"
            if status in SMS_RETRYABLE:
                raise TransientError(reason, code=status, fault=FAULTS.get(status))
            raise PermanentError(reason, code=status, fault=FAULTS.get(status))
    # A long message is sent in parts, each with its id; the first part's receipt is the message's.
    return str(parts[0].get("message-id"))


def _messages_result(response: httpx.Response) -> str:
    body = _json(response)
    if response.status_code < 300 and body.get("message_uuid"):
        return str(body["message_uuid"])
    title = str(body.get("title") or f"Vonage answered HTTP {response.status_code}")
    detail = str(body.get("detail") or "")
    reason = f"{title}: {detail}" if detail else title
    code = str(body.get("type") or response.status_code).rpartition("#")[2]
    fault = FAULTS.get(code) or HTTP_FAULTS.get(response.status_code)
    if response.status_code == 429 or response.status_code >= 500:
        retry_after = response.headers.get("retry-after")
        wait = float(retry_after) if retry_after and retry_after.isdigit() else None
        raise TransientError(reason, code=code, retry_after=wait, fault=fault)
    raise PermanentError(reason, code=code, fault=fault)


# ----- inbound ----------------------------------------------------------------------------------------


def _keyword_payload(text: str | None, payload: dict[str, Any]) -> dict[str, Any]:
    found = sms.keyword(text)
    if found is not None:
        payload["sms_keyword"] = found.value
    return payload


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


def _inbound_sms(params: dict[str, Any]) -> InboundMessage:
    sender = str(params.get("msisdn") or "")
    message_id = str(params.get("messageId") or "")
    if not sender or not message_id:
        raise ValueError("an inbound SMS needs a msisdn and a messageId")
    text = str(params.get("text") or "")
    payload: dict[str, Any] = {
        "vonage": {
            "message_id": message_id,
            "to": params.get("to"),
            "type": params.get("type"),
            "message_timestamp": params.get("message-timestamp"),
        }
    }
    if str(params.get("concat") or "").lower() == "true":
        payload["sms_part"] = {
            "ref": str(params.get("concat-ref") or ""),
            "total": int(str(params.get("concat-total") or "1")),
            "part": int(str(params.get("concat-part") or "1")),
        }
    else:
        _keyword_payload(text, payload)
    return InboundMessage(
        sender_id=sms.sender_id(sender),
        provider_message_id=message_id,
        text=text or None,
        payload=payload,
        phone=sms.e164(sender),
    )


def _dlr(params: dict[str, Any]) -> list[StatusUpdate]:
    status = DLR_STATUSES.get(str(params.get("status") or "").lower())
    if status is None:
        return []
    code = str(params.get("err-code") or "")
    reason = None
    error = None
    if status == DeliveryStatus.FAILED:
        reason = (
            f"{code}: {DLR_ERRORS.get(code, 'see the Vonage delivery receipt codes')}"
            if code
            else str(params["status"])
        )
        if code and code != "0":
            tagged = RECEIPT_CODE.format(code)
            error = PermanentError(reason, code=tagged, fault=FAULTS.get(tagged))
    return [
        StatusUpdate(
            provider_message_id=str(params["messageId"]),
            status=status,
            reason=reason,
            recipient_id=sms.e164(str(params.get("msisdn") or "")),
            opted_out=code == OPTED_OUT,
            error=error,
        )
    ]


def _status_error(error: dict[str, Any], reason: str) -> PermanentError | None:
    """A Messages API status webhook's `error` (`{"type": ".../messages-olympus#1060", "title": 1060,
    "detail"}`) by the table a refused request is judged by; None when it names no code."""
    code = str(error.get("type") or "").rpartition("#")[2] or str(error.get("title") or "")
    if not code.isdigit():
        return None
    return PermanentError(reason, code=code, fault=FAULTS.get(code))


def _parse_messages_api(channel: Channel, body: bytes) -> ParsedWebhook:
    event = json.loads(body)
    if not isinstance(event, dict):
        raise ValueError("expected a JSON object")
    if event.get("status"):
        uuid = str(event.get("message_uuid") or "")
        status = MESSAGES_STATUSES.get(str(event["status"]).lower())
        if not uuid or status is None:
            return ParsedWebhook()
        reason = None
        failure = None
        if status == DeliveryStatus.FAILED:
            error: dict[str, Any] = event["error"] if isinstance(event.get("error"), dict) else {}
            title, detail = str(error.get("title") or event["status"]), str(error.get("detail") or "")
            reason = f"{title}: {detail}" if detail else title
            failure = _status_error(error, reason)
        update = StatusUpdate(
            provider_message_id=uuid,
            status=status,
            reason=reason,
            recipient_id=sms.e164(str(event.get("to") or "")),
            error=failure,
        )
        return ParsedWebhook(statuses=[update])
    if event.get("channel", "sms") != "sms" or event.get("message_type", "text") != "text":
        raise ValueError("not an inbound SMS text")
    sender = str(event.get("from") or "")
    uuid = str(event.get("message_uuid") or "")
    if not sender or not uuid:
        raise ValueError("an inbound message needs a from and a message_uuid")
    text = str(event.get("text") or "")
    payload = _keyword_payload(
        text,
        {
            "vonage": {
                "message_uuid": uuid,
                "to": event.get("to"),
                "num_messages": (event.get("sms") or {}).get("num_messages"),
            }
        },
    )
    message = InboundMessage(
        sender_id=sms.sender_id(sender),
        provider_message_id=uuid,
        text=text or None,
        payload=payload,
        phone=sms.e164(sender),
    )
    return ParsedWebhook(messages=[message], follow_ups=_help(channel, message))
