"""WhatsApp Cloud API callback bodies, as Meta documents them (../shared/reference/channels.md §2-3).

Sources:
- TEXT: verbatim from developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/
  reference/messages (updated 2026-06-17); the "field" line and closing brackets follow the
  published skeleton.
- DASHBOARD_TEST: the App Dashboard's "Test" button fixture (entry id "0", wa_id "16315551181").
- The message and status elements of IMAGE, BUTTON_REPLY, LIST_REPLY, TEMPLATE_BUTTON, DELIVERED and
  FAILED: david-lev/pywa (MIT) tests/data/updates/*.json, which follow Meta's skeletons; wrapped in
  the envelope of TEXT.
- LOCATION, CONTACTS, REACTION, STICKER, VOICE, DOCUMENT, UNSUPPORTED: Meta's message reference
  (same page as TEXT), values filled in (assembled).
- BSUID_ONLY, BSUID_AND_PHONE: developers.facebook.com/documentation/business-messaging/whatsapp/
  business-scoped-user-ids (updated 2026-11-05): `contacts[].user_id` beside or instead of `wa_id`
  (assembled).
- SIGNATURE_VECTOR: self-computed vector of the reference notes (§2).
- failed_status(): a `failed` status with its `errors[]`, in the syntax of Meta's status webhook
  reference (developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/
  messages/status: `statuses[]` of `id`, `status`, `timestamp`, `recipient_id` and, when failed,
  `errors[]` of `code`, `title`, `message`, `error_data.details`, `href`); the codes' titles and
  details in ASYNC_ERRORS are those of Meta's error-codes page
  (developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes) (assembled).
"""

import json
from typing import Any

PHONE_NUMBER_ID = "106540352242922"
BUSINESS_ACCOUNT_ID = "102290129340398"
APP_SECRET = "app_secret_123"

SIGNATURE_VECTOR = (
    APP_SECRET,
    b'{"object":"whatsapp_business_account","entry":[]}',
    "02fe0c96d28c59ddb7cf81eff0ca05809b360ba73b63c28210b5906a0a107d1f",
)


def envelope(
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
    }
    if contacts is not None:
        value["contacts"] = contacts
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": BUSINESS_ACCOUNT_ID, "changes": [{"value": value, "field": "messages"}]}],
    }


def body(data: dict[str, Any]) -> bytes:
    """Serialised the way Meta sends it: non-ASCII characters escaped as \\uXXXX."""
    return json.dumps(data).encode()


TEXT = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
                        "messages": [
                            {
                                "from": "16505551234",
                                "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                                "timestamp": "1749416383",
                                "type": "text",
                                "text": {"body": "Does it come in another color?"},
                            }
                        ],
                    },
                    "field": "messages",
                }
            ],
        }
    ],
}
TEXT_ID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="

DASHBOARD_TEST = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "0",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": "16505551111", "phone_number_id": "123456123"},
                        "contacts": [{"profile": {"name": "test user name"}, "wa_id": "16315551181"}],
                        "messages": [
                            {
                                "from": "16315551181",
                                "id": "ABGGFlA5Fpa",
                                "timestamp": "1504902988",
                                "type": "text",
                                "text": {"body": "this is a text message"},
                            }
                        ],
                    },
                }
            ],
        }
    ],
}

CUSTOMER = [{"profile": {"name": "Pablo Ruiz"}, "wa_id": "972987654321"}]

IMAGE = envelope(
    contacts=CUSTOMER,
    messages=[
        {
            "from": "972987654321",
            "id": "wamid.image1",
            "timestamp": "1697043379",
            "type": "image",
            "image": {"mime_type": "image/jpeg", "sha256": "4654+8g=", "id": "65463453", "caption": "¿Así?"},
        }
    ],
)

BUTTON_REPLY = envelope(
    contacts=CUSTOMER,
    messages=[
        {
            "context": {"from": "1122334455667", "id": "wamid.asked"},
            "from": "972987654321",
            "id": "wamid.button1",
            "timestamp": "1698266730",
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": "callback_data", "title": "title"}},
        }
    ],
)

LIST_REPLY = envelope(
    contacts=CUSTOMER,
    messages=[
        {
            "from": "972987654321",
            "id": "wamid.list1",
            "timestamp": "1698266731",
            "type": "interactive",
            "interactive": {
                "type": "list_reply",
                "list_reply": {"id": "size_m", "title": "Talla M", "description": "Mediana"},
            },
        }
    ],
)

TEMPLATE_BUTTON = envelope(
    contacts=CUSTOMER,
    messages=[
        {
            "context": {"from": "1122334455667", "id": "wamid.template"},
            "from": "972987654321",
            "id": "wamid.tbutton1",
            "timestamp": "1698266732",
            "type": "button",
            "button": {"payload": "TRACK_42", "text": "Seguir pedido"},
        }
    ],
)

LOCATION = envelope(
    contacts=CUSTOMER,
    messages=[
        {
            "from": "972987654321",
            "id": "wamid.location1",
            "timestamp": "1698266733",
            "type": "location",
            "location": {
                "latitude": 19.4326,
                "longitude": -99.1332,
                "name": "Zócalo",
                "address": "Plaza de la Constitución, CDMX",
            },
        }
    ],
)

CONTACTS = envelope(
    contacts=CUSTOMER,
    messages=[
        {
            "from": "972987654321",
            "id": "wamid.contacts1",
            "timestamp": "1698266734",
            "type": "contacts",
            "contacts": [
                {
                    "name": {"formatted_name": "Ana Gómez", "first_name": "Ana", "last_name": "Gómez"},
                    "phones": [{"phone": "+52 55 1234 5678", "type": "CELL", "wa_id": "5215512345678"}],
                }
            ],
        }
    ],
)

REACTION = envelope(
    contacts=CUSTOMER,
    messages=[
        {
            "from": "972987654321",
            "id": "wamid.reaction1",
            "timestamp": "1698266735",
            "type": "reaction",
            "reaction": {"message_id": "wamid.ours", "emoji": "👍"},
        }
    ],
)

STICKER = envelope(
    contacts=CUSTOMER,
    messages=[
        {
            "from": "972987654321",
            "id": "wamid.sticker1",
            "timestamp": "1698266736",
            "type": "sticker",
            "sticker": {"mime_type": "image/webp", "sha256": "abc=", "id": "777", "animated": False},
        }
    ],
)

VOICE = envelope(
    contacts=CUSTOMER,
    messages=[
        {
            "from": "972987654321",
            "id": "wamid.voice1",
            "timestamp": "1698266737",
            "type": "audio",
            "audio": {"mime_type": "audio/ogg; codecs=opus", "sha256": "def=", "id": "888", "voice": True},
        }
    ],
)

DOCUMENT = envelope(
    contacts=CUSTOMER,
    messages=[
        {
            "from": "972987654321",
            "id": "wamid.document1",
            "timestamp": "1698266738",
            "type": "document",
            "document": {
                "mime_type": "application/pdf",
                "sha256": "ghi=",
                "id": "999",
                "filename": "factura.pdf",
                "caption": "Mi factura",
            },
        }
    ],
)

UNSUPPORTED = envelope(
    contacts=CUSTOMER,
    messages=[
        {
            "from": "972987654321",
            "id": "wamid.unsupported1",
            "timestamp": "1698266739",
            "type": "unsupported",
            "errors": [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown"}],
        }
    ],
)

DELIVERED = envelope(
    statuses=[
        {
            "id": "wamid.xyzxyz",
            "status": "delivered",
            "timestamp": "1698266945",
            "recipient_id": "972987654321",
            "pricing": {"billable": True, "pricing_model": "PMP", "category": "service"},
        }
    ]
)

FAILED = envelope(
    statuses=[
        {
            "id": "wamid.failed1",
            "status": "failed",
            "timestamp": "1698266946",
            "recipient_id": "972987654321",
            "errors": [
                {
                    "code": 131026,
                    "title": "Message undeliverable",
                    "error_data": {"details": "Message Undeliverable."},
                }
            ],
        }
    ]
)

BSUID = "US.13491208655302741918"

BSUID_ONLY = envelope(
    contacts=[{"profile": {"name": "Lupita"}, "user_id": BSUID, "parent_user_id": "US.ENT.5551234"}],
    messages=[{"id": "wamid.bsuid1", "timestamp": "1764950000", "type": "text", "text": {"body": "hola, soy Lupita"}}],
)

BSUID_AND_PHONE = envelope(
    contacts=[{"profile": {"name": "Lupita"}, "wa_id": "5215598765432", "user_id": BSUID}],
    messages=[
        {
            "from": "5215598765432",
            "id": "wamid.bsuid2",
            "timestamp": "1764950100",
            "type": "text",
            "text": {"body": "ya con mi número"},
        }
    ],
)


def status(provider_id: str, value: str) -> dict[str, Any]:
    return envelope(
        statuses=[{"id": provider_id, "status": value, "timestamp": "1698266950", "recipient_id": "972987654321"}]
    )


# Graph's error body (§2, assembled from the error-codes and error-handling pages).
RE_ENGAGEMENT = {
    "error": {
        "message": "(#131047) Re-engagement message",
        "type": "OAuthException",
        "code": 131047,
        "error_data": {
            "messaging_product": "whatsapp",
            "details": "Message failed to send because more than 24 hours have passed since the customer last "
            "replied to this number.",
        },
        "error_subcode": 2494010,
        "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
    }
}
RE_ENGAGEMENT_REASON = (
    "(#131047) Re-engagement message: Message failed to send because more than 24 hours have passed since the "
    "customer last replied to this number."
)


def graph_error(code: int, message: str = "error") -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "A1"}}


def accepted(provider_id: str) -> dict[str, Any]:
    """The send endpoint's answer (§3.3)."""
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
        "messages": [{"id": provider_id, "message_status": "accepted"}],
    }


# Errors Meta reports later, in a failed status: code -> (title, details), as the error-codes page
# gives them. The first ones are the channel's (the account, the number, the token), the last ones
# one message's.
ASYNC_ERRORS: dict[int, tuple[str, str]] = {
    131031: (
        "Account has been locked",
        "Your WhatsApp Business Account has been restricted or disabled for violating a platform policy, or we "
        "were unable to verify data included in the request against data set on the WhatsApp Business Account.",
    ),
    131042: (
        "Business eligibility payment issue",
        "Message failed to send because there were one or more errors related to your payment method.",
    ),
    131045: ("Incorrect certificate", "Message failed to send due to a phone number registration error."),
    368: (
        "Temporarily blocked for policies violations",
        "The WhatsApp Business Account associated with the app has been restricted or disabled for violating a "
        "platform policy.",
    ),
    190: ("Access token has expired", "Your access token has expired."),
    131005: ("Access denied", "Permission is either not granted or has been removed."),
    130429: (
        "Rate limit hit",
        "Message failed to send because there were too many messages sent from this phone number in a short "
        "period of time",
    ),
    131048: (
        "Spam rate limit hit",
        "Message failed to send because there are restrictions on how many messages can be sent from this phone "
        "number. This may be because too many previous messages were blocked or flagged as spam.",
    ),
    80007: ("Rate limit issues", "The WhatsApp Business Account has reached its rate limit."),
    131000: ("Something went wrong", "Message failed to send due to an unknown error."),
    131026: ("Message undeliverable", "Unable to deliver message."),
    131047: (
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
    ),
    131051: ("Unsupported message type", "Unsupported message type."),
    131049: (
        "Meta chose not to deliver.",
        "This message was not delivered to maintain healthy ecosystem engagement.",
    ),
    131056: (
        "(Business Account, Consumer Account) pair rate limit hit",
        "Too many messages sent from the sender phone number to the same recipient phone number in a short "
        "period of time.",
    ),
}
CHANNEL_LEVEL_ASYNC = (131031, 131042, 131045, 368, 190, 131005, 130429, 131048, 80007)
MESSAGE_LEVEL_ASYNC = (131026, 131047, 131051, 131049, 131056)


def failed_status(provider_id: str, code: int, timestamp: str = "1698266950") -> dict[str, Any]:
    """A callback saying our message `provider_id` failed with error `code` (ASYNC_ERRORS)."""
    title, details = ASYNC_ERRORS[code]
    error = {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details},
        "href": "https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes/",
    }
    return envelope(
        statuses=[
            {
                "id": provider_id,
                "status": "failed",
                "timestamp": timestamp,
                "recipient_id": "16505551234",
                "errors": [error],
            }
        ]
    )
