"""What Meta's three messaging platforms (WhatsApp, Messenger, Instagram) share.

../shared/reference/channels.md §2: callbacks are verified the same way on all three (a GET
handshake answered with `hub.challenge` when `hub.verify_token` matches, then POSTs signed with
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`), and the Graph API refuses a
request with the same error shape (`{"error": {"message", "type", "code", "error_subcode",
"error_data", "fbtrace_id"}}`). Each adapter keeps its own table of which codes are worth retrying,
and of whose fault a code is (`Fault`) beyond the codes every Graph API shares (GRAPH_FAULTS: the
token, permissions, app and account rate limits, a blocked account). Meta's `type` says little
("OAuthException" also comes with 131047, the 24-hour window), so the code decides. An error
object a webhook reports later (WhatsApp's `statuses[].errors[]`) is judged by the same rules
(`classify_graph_error`, without an HTTP status).

A channel of any of them keeps `app_secret` and `verify_token` among its secrets and its Graph root
in `api_base_url` + `api_version` (tests point them at a local fake).
"""

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

import httpx

from tertulia.channels.models import Channel
from tertulia.channels.protocol import Fault, PermanentError, TransientError, WebhookRejected, WebhookRequest
from tertulia.kit.errors import ValidationFailed

DEFAULT_API_VERSION = "v26.0"
SIGNATURE_HEADER = "x-hub-signature-256"
TIMEOUT = httpx.Timeout(15.0, connect=5.0)
_VERSION = re.compile(r"^v[0-9]{1,3}\.[0-9]$")

# Whose fault a Graph error code is, for every Meta platform (Graph API error handling; §3.4 of
# the channel reference): (code, subcode), or (code, None) for any subcode. An adapter's own table
# is looked at first (Messenger's code 10 with subcode 2018278 is the 24-hour window, not a
# permission). Codes 200-299 are permissions (PERMISSION_CODES).
GRAPH_FAULTS: dict[tuple[int, int | None], Fault] = {
    (190, None): Fault.CREDENTIALS,  # access token invalid, expired or revoked
    (102, None): Fault.CREDENTIALS,  # API session (the user's login) no longer valid
    (10, None): Fault.CREDENTIALS,  # the app lacks a permission
    (3, None): Fault.CREDENTIALS,  # the app lacks the capability
    (4, None): Fault.ACCOUNT,  # application-level rate limit
    (17, None): Fault.ACCOUNT,  # user-level rate limit
    (32, None): Fault.ACCOUNT,  # Page-level rate limit
    (613, None): Fault.ACCOUNT,  # calls exceed the rate limit
    (80007, None): Fault.ACCOUNT,  # business-account rate limit
    (368, None): Fault.ACCOUNT,  # temporarily blocked for policy violations
    (1, None): Fault.PROVIDER,  # unknown error
    (2, None): Fault.PROVIDER,  # service temporarily unavailable
}
PERMISSION_CODES = range(200, 300)


def hub_signature(app_secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 Meta sends in X-Hub-Signature-256 (after `sha256=`)."""
    return hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_hub_request(channel: Channel, request: WebhookRequest) -> None:
    """Meta's handshake (GET, the verify token) or a signed callback (POST, the app secret)."""
    secrets = channel.secrets or {}
    if request.method == "GET":
        token = str(secrets.get("verify_token", ""))
        given = request.query.get("hub.verify_token", "")
        if request.query.get("hub.mode") != "subscribe" or not token or not hmac.compare_digest(given, token):
            raise WebhookRejected("bad verify token")
        return
    secret = str(secrets.get("app_secret", ""))
    header = request.headers.get(SIGNATURE_HEADER, "")
    if (
        not secret
        or not header.startswith("sha256=")
        or not hmac.compare_digest(header.removeprefix("sha256="), hub_signature(secret, request.body))
    ):
        raise WebhookRejected("bad signature")


def handshake_reply(request: WebhookRequest) -> str:
    return request.query.get("hub.challenge", "")


def graph_root(channel: Channel, default_base: str) -> str:
    """The Graph API root of this channel: its base URL and version."""
    config = channel.config or {}
    base = str(config.get("api_base_url") or default_base).rstrip("/")
    return f"{base}/{config.get('api_version') or DEFAULT_API_VERSION}"


def clean_graph_location(config: Mapping[str, Any], default_base: str) -> dict[str, str]:
    """`api_base_url` and `api_version` of a manager's settings, checked."""
    base = str(config.get("api_base_url") or default_base).strip().rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise ValidationFailed.field("config.api_base_url", "must be an http(s) URL")
    version = str(config.get("api_version") or DEFAULT_API_VERSION).strip()
    if not _VERSION.match(version):
        raise ValidationFailed.field("config.api_version", "must be a Graph API version like v26.0")
    return {"api_base_url": base, "api_version": version}


def graph_reason(error: Mapping[str, Any]) -> str:
    """Meta's words for an error: `(#code) title: details`."""
    code = error.get("code")
    title = str(error.get("title") or error.get("message") or "error")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    text = f"(#{code}) {title}" if code is not None and f"#{code}" not in title else title
    return f"{text}: {details}" if details and details not in text else text


def graph_error_of(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def graph_fault(
    code: int | None,
    subcode: int | None,
    status: int | None,
    faults: Mapping[tuple[int, int | None], Fault] | None = None,
) -> Fault | None:
    """Whose fault a Graph error is: the adapter's table, then GRAPH_FAULTS, by (code, subcode) then
    (code, any); then by HTTP status (401: the token; None for an error a webhook reported). None:
    the error class's default (a retryable error the provider's, any other the message's)."""
    if code is not None:
        for table in (faults or {}, GRAPH_FAULTS):
            found = table.get((code, subcode)) or table.get((code, None))
            if found is not None:
                return found
        if code in PERMISSION_CODES:
            return Fault.CREDENTIALS
    if status == 401:
        return Fault.CREDENTIALS
    return None


def graph_error(
    response: httpx.Response,
    *,
    provider: str,
    retryable: Mapping[int, float | None],
    explain: Mapping[tuple[int, int | None], str] | None = None,
    faults: Mapping[tuple[int, int | None], Fault] | None = None,
) -> TransientError | PermanentError:
    """The error a refused Graph request means: retryable (throttling, Meta's faults; `retryable`
    maps a code to the seconds to wait, None for the usual backoff) or permanent. The reason is
    Meta's own words, after our explanation of the (code, subcode) when `explain` has one; the
    error's code is `<provider>:<code>`; its fault is `graph_fault`'s."""
    error = graph_error_of(response)
    if error is None:
        reason = f"{provider} answered HTTP {response.status_code}"
        fault = graph_fault(None, None, response.status_code)
        if response.status_code == 429 or response.status_code >= 500:
            return TransientError(reason, code=f"http:{response.status_code}", fault=fault)
        return PermanentError(reason, code=f"http:{response.status_code}", fault=fault)
    return classify_graph_error(
        error, response.status_code, provider=provider, retryable=retryable, explain=explain, faults=faults
    )


def classify_graph_error(
    error: Mapping[str, Any],
    status: int | None,
    *,
    provider: str,
    retryable: Mapping[int, float | None],
    explain: Mapping[tuple[int, int | None], str] | None = None,
    faults: Mapping[tuple[int, int | None], Fault] | None = None,
) -> TransientError | PermanentError:
    """One Graph error object (`{"code", "error_subcode", "message"|"title", "error_data"}`) as our
    error, by the same rules whether it answered a request (`status`, its HTTP status) or a webhook
    reported it later (`status` None: WhatsApp's `statuses[].errors[]`)."""
    code = error.get("code")
    subcode = error.get("error_subcode")
    reason = graph_reason(error)
    explained = (explain or {}).get((code, subcode)) if isinstance(code, int) else None
    if explained is None and isinstance(code, int):
        explained = (explain or {}).get((code, None))
    if explained:
        reason = f"{explained} {reason}"
    tagged = f"{provider.lower()}:{code}"
    fault = graph_fault(
        code if isinstance(code, int) else None,
        subcode if isinstance(subcode, int) else None,
        status,
        faults,
    )
    if isinstance(code, int) and code in retryable:
        return TransientError(reason, code=tagged, retry_after=retryable[code], fault=fault)
    if status is not None and (status == 429 or status >= 500):
        return TransientError(reason, code=tagged, fault=fault)
    return PermanentError(reason, code=tagged, fault=fault)
