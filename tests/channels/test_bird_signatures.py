"""Bird's and MessageBird's webhook signatures: every one of MessageBird's 44 published JWT vectors
(tests/channels/messagebird_vectors.py) gets its published verdict, at the moment each was made."""

import base64
import hashlib
import hmac

import pytest

from tertulia.channels.adapters.bird import bird_signature, messagebird_jwt
from tertulia.channels.protocol import WebhookRejected
from tests.channels.messagebird_vectors import CASES, NOW, SECRET, Case

# Our words are PyJWT's where the check is PyJWT's (the signature, the algorithm); the claim checks
# are ours and say what MessageBird's validators say.
OWN_WORDING = {"invalid jwt: signature is invalid", "invalid jwt: signing method none is invalid"}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_messagebird_vectors(case: Case) -> None:
    body = (case.payload or "").encode()
    if case.valid:
        claims = messagebird_jwt(case.token, str(case.secret), case.url, body, NOW)
        assert claims["iss"] == "MessageBird"
        return
    with pytest.raises(WebhookRejected) as refused:
        messagebird_jwt(case.token, case.secret or SECRET, case.url, body, NOW)
    if case.reason not in OWN_WORDING:
        assert refused.value.reason == case.reason


def test_all_44_published_cases_are_here() -> None:
    assert len(CASES) == 44
    assert sum(case.valid for case in CASES) == 24


def test_a_valid_token_is_refused_once_it_has_expired() -> None:
    [case] = [c for c in CASES if c.name == "Valid JWT with no URL parameters or payload - POST"]
    messagebird_jwt(case.token, SECRET, case.url, b"", NOW + 59)
    with pytest.raises(WebhookRejected, match="exp is in the past"):
        messagebird_jwt(case.token, SECRET, case.url, b"", NOW + 61)


def test_the_bird_signature_is_the_documented_hmac() -> None:
    """docs.bird.com/api/notifications-api/api-reference/webhooks/verifying-a-webhook: base64 of
    HMAC-SHA256(signing key, timestamp + "\\n" + URL + "\\n" + the SHA-256 digest of the body)."""
    body = b'{"service":"channels","event":"sms.inbound","payload":{}}'
    expected = base64.b64encode(
        hmac.new(
            b"signing-key",
            b"1764150000\nhttps://crm.example/webhooks/k\n" + hashlib.sha256(body).digest(),
            hashlib.sha256,
        ).digest()
    ).decode()
    assert bird_signature("signing-key", "1764150000", "https://crm.example/webhooks/k", body) == expected
    assert bird_signature("signing-key", "1764150001", "https://crm.example/webhooks/k", body) != expected
