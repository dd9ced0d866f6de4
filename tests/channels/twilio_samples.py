"""Twilio's documented callbacks (form-encoded, as Twilio posts them).

Sources:
- INBOUND_VERBATIM: twilio/twilio-node `spec/integration/rest/monitor/v1/alert.spec.js`, the
  `request_variables` of an alert: an incoming SMS exactly as Twilio posted it (its redactions
  included: `FromZp` without a value, `To=%2B1` and `From=%2B1`). Listed in
  ../shared/reference/channels.md section 8.
- The other bodies are assembled from the parameter lists at
  twilio.com/docs/messaging/guides/webhook-request (incoming messages, MMS media) and
  twilio.com/docs/messaging/guides/outbound-message-logging (status callbacks), with values filled in.
"""

from urllib.parse import urlencode

from tests.channels.fake_twilio import ACCOUNT_SID, NUMBER

INBOUND_VERBATIM = (
    b"ToCountry=US&ToState=CA&SmsMessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&NumMedia=0&ToCity=&FromZp"
    b"&FromState=CA&SmsStatus=received&FromCity=SAN+FRANCISCO&Body=plan+5+potato&FromCountry=US&To=%2B1"
    b"&ToZip=&NumSegments=1&MessageSid=SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    b"&AccountSid=ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&From=%2B1&ApiVersion=2010-04-01"
)
INBOUND_VERBATIM_SID = "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

CUSTOMER = "+34612345678"


def inbound(sid: str, body: str, sender: str = CUSTOMER, **extra: str) -> dict[str, str]:
    """An incoming SMS's parameters (twilio.com/docs/messaging/guides/webhook-request)."""
    return {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "SAN FRANCISCO",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "ES",
        "To": NUMBER,
        "ToZip": "94105",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "ApiVersion": "2010-04-01",
        **extra,
    }


def mms(sid: str, body: str, media: list[tuple[str, str]]) -> dict[str, str]:
    """An incoming MMS: `MediaUrl{N}` and `MediaContentType{N}` for each (url, content type)."""
    extra = {"NumMedia": str(len(media))}
    for index, (url, content_type) in enumerate(media):
        extra[f"MediaUrl{index}"] = url
        extra[f"MediaContentType{index}"] = content_type
    return inbound(sid, body, **extra)


def status(sid: str, message_status: str, to: str = CUSTOMER, error_code: str | None = None) -> dict[str, str]:
    """A status callback (twilio.com/docs/messaging/guides/outbound-message-logging)."""
    params = {
        "SmsSid": sid,
        "SmsStatus": message_status,
        "MessageStatus": message_status,
        "To": to,
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": NUMBER,
        "ApiVersion": "2010-04-01",
    }
    if error_code:
        params["ErrorCode"] = error_code
    return params


def body(params: dict[str, str]) -> bytes:
    return urlencode(params).encode()
