"""The JSON a webhook carries. Every body has the same envelope:

    {"id": "evt_123", "type": "contact.updated", "created_at": "2026-11-26T16:30:00.123456+00:00",
     "workspace_id": 7, "data": {...}}

`id` is also the `webhook-id` header (the same on every retry: receivers dedupe on it). `data` holds
the objects in the API's shapes: `contact` as `GET /api/v1/contacts/{id}` answers it (read when the
delivery is written, so close to the event's time; None when the contact no longer exists),
`message` and `conversation` as the inbox's API does (the snapshot the event recorded), plus the
event's own facts (`changes`, `tag`, `previous_assignee_id`, ...). A channel's events carry no
contact: `channel` (its id, type, name, whether it is connected and its health, as
`GET /api/v1/channels/{id}` shows them, read when the delivery is written) and the error with whose
fault it was. docs/webhooks.md shows each.
"""

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tertulia.channels.models import Channel
from tertulia.channels.schemas import channel_summary
from tertulia.contacts import repository as contacts_repo
from tertulia.contacts.models import Contact
from tertulia.contacts.service import contact_out
from tertulia.conversations.models import Message
from tertulia.conversations.schemas import message_dict
from tertulia.events.models import EventRecord
from tertulia.webhooks.catalogue import TEST_EVENT


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def envelope(message_id: str, event_type: str, created_at: datetime, workspace_id: int, data: Any) -> str:
    return dumps(
        {
            "id": message_id,
            "type": event_type,
            "created_at": created_at.isoformat(),
            "workspace_id": workspace_id,
            "data": data,
        }
    )


def message_id(event_id: int, event_type: str, primary: bool) -> str:
    """`evt_<event id>`; a second webhook event made from the same log event gets a suffix."""
    return f"evt_{event_id}" if primary else f"evt_{event_id}_{event_type.rsplit('.', 1)[-1]}"


def contact_json(session: Session, workspace_id: int, contact_id: int | None) -> dict[str, Any] | None:
    if contact_id is None:
        return None
    contact = session.get(Contact, contact_id)
    if contact is None or contact.workspace_id != workspace_id:
        return None
    tags = contacts_repo.tag_names_by_contact(session, [contact_id]).get(contact_id, [])
    return contact_out(contact, tags).model_dump(mode="json")


def channel_json(session: Session, workspace_id: int, payload: dict[str, Any]) -> dict[str, Any]:
    """The channel as the API shows it now; the event's own facts when it no longer exists."""
    channel = session.get(Channel, payload.get("channel_id"))
    if channel is None or channel.workspace_id != workspace_id:
        return {
            "id": payload.get("channel_id"),
            "type": payload.get("channel_type"),
            "name": payload.get("name"),
            "active": False,
            "health": None,
        }
    return channel_summary(channel)


def event_data(session: Session, event: EventRecord, event_type: str) -> dict[str, Any]:
    payload = dict(event.payload)
    if event_type in ("channel.errored", "channel.recovered"):
        # About a channel, not a contact (events.types.ChannelHealthChanged).
        return {
            "channel": channel_json(session, event.workspace_id, payload),
            "error": payload.get("error"),
            "fault": payload.get("fault"),
            "code": payload.get("code"),
        }
    data: dict[str, Any] = {"contact": contact_json(session, event.workspace_id, event.contact_id)}
    if event_type == "contact.updated":
        data["changes"] = payload.get("changes", [])
    elif event_type == "contact.assignee_changed":
        changes: list[dict[str, Any]] = payload.get("changes", [])
        change: dict[str, Any] = next((c for c in changes if c.get("field") == "assignee_id"), {})
        data["previous_assignee_id"] = change.get("old")
        data["assignee_id"] = change.get("new")
    elif event_type in ("contact.tag_added", "contact.tag_removed"):
        data["tag"] = payload.get("tag")
    elif event_type == "contact.merged":
        data["merged_contact_id"] = payload.get("merged_contact_id")
        data["merged_name"] = payload.get("merged_name")
    elif event_type == "contact.created":
        data["source"] = payload.get("source")
    elif event_type == "contact.deleted":
        data["contact"] = payload.get("contact")  # as it was: the row is gone
    elif event_type in ("message.received", "message.sent"):
        data["message"] = payload.get("message")
    elif event_type == "comment.added":
        data["comment"] = payload.get("message")
    elif event_type == "message.status_changed":
        message = session.get(Message, payload.get("message_id"))
        data["message"] = message_dict(message) if message is not None else None
        data["status"] = payload.get("status")
        data["reason"] = payload.get("reason")
    elif event_type == "workflow.run_failed":
        data["run"] = payload  # the workflow, run, step and error (events.types.WorkflowRunFailed)
    elif event_type.startswith("broadcast."):
        # The broadcast and its counts when it happened (events.types.BroadcastChanged).
        data["broadcast"] = payload
    elif event_type.startswith("conversation."):
        data["conversation"] = payload.get("conversation")
        data["event"] = event.type  # conversation.reopened arrives as conversation.opened; unassigned as assigned
        for key in ("previous_assignee_id", "previous_team_id"):
            if key in payload:
                data[key] = payload[key]
    return data


def test_body(message: str, workspace_id: int, now: datetime) -> str:
    return envelope(message, TEST_EVENT, now, workspace_id, {"test": True, "message": "A test event from Tertulia."})
