"""Messenger and Instagram webhook payloads, as Meta documents them.

Sources (developers.facebook.com, as of 2026; ../shared/reference/channels.md §4-5):
- Messenger events: /documentation/business-messaging/messenger-platform/webhooks/webhook-events/
  messages (text, quick_reply, attachments; updated 2026-03-27), messaging_postbacks,
  messaging_referrals, message_echoes (updated 2026-03-18), message_deliveries, message_reads,
  message_reactions.
- Page feed comments: /docs/graph-api/webhooks/reference/page/#feed (value of a `comment` `add`).
- Instagram: /documentation/instagram-platform/webhooks/examples (updated 2025-11-24): the
  `object: "instagram"` envelope, messages with attachments, story replies (`reply_to.story`),
  story mentions (attachment `story_mention`), `is_unsupported`, reactions, `messaging_seen`.

Each event is the documented one with its placeholders (<PSID>, <PAGE_ID>, <ATTACHMENT_URL>, ...)
filled in with values of our own ("assembled" in the reference's words); structure and key names
are Meta's.
"""

import json
import time
from typing import Any

PAGE_ID = "1067280970047460"
PSID = "6543210987654321"
APP_SECRET = "app_secret_123"
PAGE_TOKEN = "EAAPageToken-test"
IG_ID = "17841405822304914"
IGSID = "9876543210123456"


def envelope(*events: dict[str, Any], page_id: str = PAGE_ID, obj: str = "page") -> dict[str, Any]:
    return {"object": obj, "entry": [{"id": page_id, "time": 1458692752478, "messaging": list(events)}]}


def body(data: dict[str, Any]) -> bytes:
    # Meta escapes non-ASCII as \uXXXX and signs those bytes.
    return json.dumps(data).encode()


def event(**fields: Any) -> dict[str, Any]:
    return {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": 1458692752478, **fields}


# messages: text with a quick reply (verbatim keys, reference §4.1)
TEXT = event(message={"mid": "mid.1457764197618:41d102a3e1ae206a38", "text": "hello, world!"})
QUICK_REPLY = event(message={"mid": "mid.1457764197618:quick", "text": "Red", "quick_reply": {"payload": "PICKED_RED"}})
# messages: attachment (reference §4.1)
IMAGE = event(
    message={
        "mid": "mid.1458696618141:b4ef9d19ec21086067",
        "attachments": [{"type": "image", "payload": {"url": "{media}/media/photo.jpg"}}],
    }
)
# messaging_postbacks (with the referral of an m.me link that opened the thread)
POSTBACK = event(
    postback={
        "mid": "m_postback-1",
        "title": "Ver precios",
        "payload": "PRICES",
        "referral": {"ref": "spring-sale", "source": "SHORTLINK", "type": "OPEN_THREAD"},
    }
)
# messaging_referrals
REFERRAL = event(referral={"ref": "ad-campaign-7", "source": "SHORTLINK", "type": "OPEN_THREAD"})
# message_reactions
REACTION = event(reaction={"reaction": "love", "emoji": "\u2764\ufe0f", "action": "react", "mid": "m_our-message"})


def echo(mid: str, text: str, metadata: str | None = None) -> dict[str, Any]:
    """message_echoes: the Page is the sender, the customer the recipient."""
    message: dict[str, Any] = {"is_echo": True, "app_id": 1517776481860111, "mid": mid, "text": text}
    if metadata is not None:
        message["metadata"] = metadata
    return {"sender": {"id": PAGE_ID}, "recipient": {"id": PSID}, "timestamp": 1457764197627, "message": message}


def delivery(*mids: str, watermark: int | None = None) -> dict[str, Any]:
    receipt: dict[str, Any] = {"mids": list(mids), "watermark": watermark or int(time.time() * 1000)}
    return {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "delivery": receipt}


def read(watermark: int | None = None) -> dict[str, Any]:
    return event(read={"watermark": watermark or int(time.time() * 1000) + 60_000})


def feed_comment(comment_id: str = "1067280970047460_555_777", created: int | None = None) -> dict[str, Any]:
    """A comment on one of the Page's posts (Page webhook `feed`, item `comment`, verb `add`)."""
    return {
        "object": "page",
        "entry": [
            {
                "id": PAGE_ID,
                "time": 1520544816,
                "changes": [
                    {
                        "field": "feed",
                        "value": {
                            "from": {"id": "4444444444", "name": "Marta Ruiz"},
                            "post": {"status_type": "added_photos", "is_published": True, "id": f"{PAGE_ID}_555"},
                            "message": "¿Tienen envíos a Guadalajara?",
                            "post_id": f"{PAGE_ID}_555",
                            "comment_id": comment_id,
                            "created_time": created or int(time.time()),
                            "item": "comment",
                            "parent_id": f"{PAGE_ID}_555",
                            "verb": "add",
                        },
                    }
                ],
            }
        ],
    }


# ----- Instagram ------------------------------------------------------------------------------


def ig_event(**fields: Any) -> dict[str, Any]:
    return {"sender": {"id": IGSID}, "recipient": {"id": IG_ID}, "timestamp": 1700000000000, **fields}


def ig_envelope(*events: dict[str, Any]) -> dict[str, Any]:
    return envelope(*events, page_id=IG_ID, obj="instagram")


IG_TEXT = ig_event(message={"mid": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx", "text": "hi"})
IG_IMAGE = ig_event(
    message={
        "mid": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjImage",
        "attachments": [{"type": "image", "payload": {"url": "{media}/media/photo.jpg"}}],
    }
)
IG_STORY_REPLY = ig_event(
    message={
        "mid": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjStoryReply",
        "text": "¡Qué bonito!",
        "reply_to": {"story": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1", "id": "1799"}},
    }
)
IG_STORY_MENTION = ig_event(
    message={
        "mid": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjMention",
        "attachments": [{"type": "story_mention", "payload": {"url": "{media}/media/story.jpg"}}],
    }
)
IG_UNSUPPORTED = ig_event(message={"mid": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjUnsupported", "is_unsupported": True})
IG_REACTION = ig_event(
    reaction={"mid": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjOurs", "action": "react", "reaction": "love", "emoji": "❤"}
)


def ig_seen(mid: str) -> dict[str, Any]:
    """messaging_seen: the customer saw our message `mid`."""
    return ig_event(read={"mid": mid})
