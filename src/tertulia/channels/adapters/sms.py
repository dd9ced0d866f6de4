"""What every SMS provider shares: phone numbers, segments and keywords.

Rules: ../shared/reference/channels.md section 11.

- Numbers: a customer is known by their number in E.164 (`e164`), whichever provider carried the
  message, so contacts' identity function (contacts/identities.py: an SMS number is vouched for)
  joins one person's texts to one contact. A sender that is not a phone number (a short code, an
  alphanumeric sender id) keeps its own spelling: such a message is still stored, never dropped.
- Segments (`segments`): GSM-7 fits 160 septets in one segment and 153 per part of a longer one; the
  extension characters (^ { } \\ [ ] ~ | €) cost two septets. One character outside GSM-7 makes the
  whole message UCS-2: 70 UTF-16 units, or 67 per part; an emoji is two units.
- Keywords (`keyword`): the message's whole text, one word, any case. Opt-out (Twilio's defaults and
  their Spanish counterparts), opt-in and help.
- What every SMS adapter shares: its rules (`RULES`: text only, at most 1600 characters, delivery
  receipts, our own keyword consent) and the opening of its callback check (`posted_secret`: a
  POST, and the channel's secret that signs it).
"""

import enum
import math
from dataclasses import dataclass

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
import phonenumbers

from tertulia.channels.models import Channel
from tertulia.channels.protocol import ChannelRules, MessageType, WebhookRejected, WebhookRequest

MAX_TEXT = 1600  # characters one message may have: Twilio's Body limit, and Vonage's and Bird's as used here
GSM_SINGLE = 160
GSM_PART = 153
UCS2_SINGLE = 70
UCS2_PART = 67

OPT_OUT = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "BAJA", "CANCELAR", "ALTO"}
)
OPT_IN = frozenset({"START", "YES", "UNSTOP", "ALTA"})
HELP = frozenset({"HELP", "INFO", "AYUDA"})


RULES = ChannelRules(
    reply_window=None,
    max_text_length=MAX_TEXT,
    delivery_receipts=True,
    message_types=frozenset({MessageType.TEXT}),
    keyword_consent=True,
)


def posted_secret(provider: str, channel: Channel, request: WebhookRequest, secret: str) -> str:
    """The opening of an SMS provider's callback check: the callback must be a POST (SMS providers
    have no handshake) and the channel must have the `secret` that signs it; its value."""
    if request.method != "POST":
        raise WebhookRejected(f"{provider} posts its callbacks: set the webhook's method to POST")
    value = str((channel.secrets or {}).get(secret) or "")
    if not value:
        raise WebhookRejected(f"the channel has no {secret}")
    return value


class Keyword(enum.StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


def e164(raw: str | None) -> str | None:
    """The number in E.164, or None when `raw` is not a valid phone number. Providers that write
    numbers without the leading + (Vonage's msisdn, Bird's legacy recipients) are read as
    international numbers."""
    if not raw:
        return None
    candidate = raw.strip()
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    elif candidate[:1].isdigit():
        candidate = "+" + candidate
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def sender_id(raw: str | None) -> str:
    """A customer's id on an SMS channel: the number in E.164 when it is one, else as given."""
    return e164(raw) or (raw or "").strip()


@dataclass(frozen=True)
class Segments:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    per_segment: int  # what one segment holds at this length


def segments(text: str) -> Segments:
    """How many SMS segments `text` is sent as."""
    try:
        units = len(text.encode("gsm03.38"))
        single, part, encoding = GSM_SINGLE, GSM_PART, "GSM-7"
    except UnicodeEncodeError:
        units = len(text.encode("utf-16-le")) // 2
        single, part, encoding = UCS2_SINGLE, UCS2_PART, "UCS-2"
    if units <= single:
        return Segments(encoding, units, 1 if units else 0, single)
    return Segments(encoding, units, math.ceil(units / part), part)


def keyword(text: str | None) -> Keyword | None:
    """The keyword a message is, if its whole text is one (exact, single word, any case)."""
    word = (text or "").strip().upper()
    if not word or " " in word:
        return None
    if word in OPT_OUT:
        return Keyword.OPT_OUT
    if word in OPT_IN:
        return Keyword.OPT_IN
    if word in HELP:
        return Keyword.HELP
    return None
