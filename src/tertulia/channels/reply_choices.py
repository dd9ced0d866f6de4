"""Reply choices (the API's `quick_reply`): one shape on every channel that has them, checked against
the channel's `ReplyChoices` before anything is written, then mapped by each adapter to its
provider's form (WhatsApp interactive buttons and lists, Messenger and Instagram quick replies,
Telegram's inline keyboard).

The shape: {"buttons": [{"id", "title"}]} or {"list": {"button", "sections": [{"title", "rows":
[{"id", "title", "description"}]}]}}, with an optional "header" and "footer" where the channel has
them. Older request fields map onto it: Messenger/Instagram's `quick_replies` ([{"title",
"payload"}]) become buttons whose id is the payload (or the title).
"""

from typing import Any

from tertulia.channels.protocol import ReplyChoices
from tertulia.kit.errors import ValidationFailed

FIELD = "message.quick_reply"


def from_suggested(quick_replies: list[dict[str, Any]]) -> dict[str, Any]:
    """Messenger/Instagram's older `quick_replies` list as reply buttons."""
    return {
        "buttons": [
            {"id": str(q.get("payload") or q.get("title") or ""), "title": str(q.get("title") or "")}
            for q in quick_replies
        ]
    }


def _length(value: str, in_bytes: bool) -> int:
    return len(value.encode()) if in_bytes else len(value)


def check(limits: ReplyChoices, quick_reply: dict[str, Any], text: str | None, has_files: bool) -> None:
    """Refuse (422 naming the field and the provider's rule) reply choices the provider would refuse.
    A list's rows are checked further by the adapter that has lists (WhatsApp)."""
    provider = limits.provider
    buttons, listed = quick_reply.get("buttons"), quick_reply.get("list")
    if listed and not limits.lists:
        raise ValidationFailed.field(
            f"{FIELD}.list", f"{provider} has no list messages: send up to {limits.max_buttons} reply buttons"
        )
    for part in ("header", "footer"):
        if quick_reply.get(part) and not limits.header_footer:
            raise ValidationFailed.field(f"{FIELD}.{part}", f"{provider} reply choices have no {part}")
    if bool(buttons) == bool(listed):
        raise ValidationFailed.field(FIELD, "give either `buttons` or a `list`")
    if not (text or "").strip() and not (has_files and limits.with_files):
        raise ValidationFailed.field("message.text", f"{provider} needs a text above the reply choices")
    if has_files and not limits.with_files:
        what = "reply buttons and lists" if limits.lists else "reply buttons"
        raise ValidationFailed.field("message.attachments", f"{provider} sends {what} without files")
    if limits.body_length is not None and buttons and len(text or "") > limits.body_length:
        raise ValidationFailed.field(
            "message.text", f"{provider} allows at most {limits.body_length} characters above reply buttons"
        )
    if not buttons:
        return
    field = f"{FIELD}.buttons"
    if not isinstance(buttons, list) or len(buttons) > limits.max_buttons:
        raise ValidationFailed.field(field, f"{provider} allows at most {limits.max_buttons} reply buttons")
    ids: set[str] = set()
    for index, button in enumerate(buttons):
        if not isinstance(button, dict):
            raise ValidationFailed.field(f"{field}[{index}]", "must have an id and a title")
        title = str(button.get("title") or "").strip()
        choice_id = str(button.get("id") or "").strip()
        if not title:
            raise ValidationFailed.field(f"{field}[{index}].title", "is required")
        if len(title) > limits.title_length:
            raise ValidationFailed.field(
                f"{field}[{index}].title", f"{provider} allows at most {limits.title_length} characters here"
            )
        if not choice_id:
            raise ValidationFailed.field(f"{field}[{index}].id", "is required")
        if _length(choice_id, limits.id_in_bytes) > limits.id_length:
            unit = "bytes" if limits.id_in_bytes else "characters"
            raise ValidationFailed.field(
                f"{field}[{index}].id", f"{provider} allows at most {limits.id_length} {unit} here"
            )
        if choice_id in ids:
            raise ValidationFailed.field(f"{field}[{index}].id", f"{provider} needs every choice's id to be different")
        ids.add(choice_id)


def buttons_of(quick_reply: Any) -> list[dict[str, str]]:
    """The reply buttons of a stored `quick_reply` payload, as (id, title) pairs of strings."""
    if not isinstance(quick_reply, dict) or not isinstance(quick_reply.get("buttons"), list):
        return []
    return [
        {"id": str(b.get("id") or ""), "title": str(b.get("title") or "")}
        for b in quick_reply["buttons"]
        if isinstance(b, dict)
    ]
