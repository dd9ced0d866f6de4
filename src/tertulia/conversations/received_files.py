"""Files customers send through a provider (a Telegram photo, a WhatsApp voice note), kept as our files.

An adapter's parsed message refers to such a file with an attachment `{"provider_file": {...}}`. The
callback task fetches it (`fetch`) before its write transaction, so a download never holds the
database's write lock, and puts the bytes in storage; in the transaction `attach` writes the `files`
rows and gives the message ordinary attachments (`file_id`, name, size, content type), and `settle`
ties each file to the conversation the message landed in, which is what lets only the people who
may see that conversation download it. A file that cannot be had (too large, a type we do not keep,
gone from the provider) leaves the message with an attachment marked `unavailable` and the reason:
the message is never dropped over its file.
"""

from dataclasses import replace
from functools import partial
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage, MediaSource, PermanentError, TransientError
from tertulia.channels.registry import get_adapter
from tertulia.conversations.files import clean_name, received_file_problem
from tertulia.conversations.inbound import Received
from tertulia.conversations.models import StoredFile
from tertulia.kit import storage
from tertulia.kit.db import on_commit

log = structlog.get_logger()


class FetchLater(Exception):
    """A file could not be fetched now and trying again may help: the callback waits for its next try."""


def _unavailable(reference: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "name": clean_name(reference.get("name")),
        "size": reference.get("size"),
        "content_type": reference.get("content_type"),
        "unavailable": reason,
    }


def needs_fetching(message: InboundMessage) -> bool:
    return any("provider_file" in a for a in message.attachments)


def fetch(channel: Channel, message: InboundMessage, *, last_try: bool) -> InboundMessage:
    """`message` with each provider file fetched into storage (`{"storage_key", ...}`) or marked
    unavailable. Raises FetchLater on a transient failure unless this is the last try."""
    if not needs_fetching(message):
        return message
    adapter = get_adapter(channel.type)
    attachments: list[dict[str, Any]] = []
    for attachment in message.attachments:
        reference = attachment.get("provider_file")
        if not isinstance(reference, dict):
            attachments.append(attachment)
            continue
        if not isinstance(adapter, MediaSource):
            attachments.append(_unavailable(reference, f"{channel.type} files cannot be fetched"))
            continue
        try:
            fetched = adapter.fetch_media(channel, reference)
        except TransientError as exc:
            if not last_try:
                raise FetchLater(exc.reason) from exc
            attachments.append(_unavailable(reference, exc.reason))
            continue
        except PermanentError as exc:
            attachments.append(_unavailable(reference, exc.reason))
            continue
        problem = received_file_problem(fetched.content_type, len(fetched.data))
        if problem is not None:
            attachments.append(_unavailable({**reference, "size": len(fetched.data)}, problem))
            continue
        key = storage.new_key(channel.workspace_id)
        storage.get_storage().put(key, fetched.data)
        attachments.append(
            {
                "storage_key": key,
                "name": clean_name(fetched.name),
                "size": len(fetched.data),
                "content_type": fetched.content_type,
            }
        )
    return replace(message, attachments=attachments)


def stored_keys(message: InboundMessage) -> list[str]:
    return [str(a["storage_key"]) for a in message.attachments if a.get("storage_key")]


def discard(message: InboundMessage) -> None:
    """Remove the bytes fetched for a message that will not be written."""
    for key in stored_keys(message):
        storage.get_storage().delete(key)


def attach(session: Session, channel: Channel, message: InboundMessage) -> InboundMessage:
    """`message` with its fetched files written as `files` rows (not yet in a conversation)."""
    if not stored_keys(message):
        return message
    attachments: list[dict[str, Any]] = []
    for attachment in message.attachments:
        if not attachment.get("storage_key"):
            attachments.append(attachment)
            continue
        stored = StoredFile(
            workspace_id=channel.workspace_id,
            storage_key=attachment["storage_key"],
            name=attachment["name"],
            size=attachment["size"],
            content_type=attachment["content_type"],
            uploaded_by_id=None,
            conversation_id=None,
        )
        session.add(stored)
        session.flush()
        attachments.append(
            {"file_id": stored.id, "name": stored.name, "size": stored.size, "content_type": stored.content_type}
        )
    return replace(message, attachments=attachments)


def settle(session: Session, written: list[tuple[InboundMessage, Received]]) -> None:
    """The files of each written message belong to its conversation; a duplicate's copies go, and so
    do a blocked contact's (nothing of its messages is kept)."""
    for inbound, received in written:
        ids = [a["file_id"] for a in inbound.attachments if a.get("file_id")]
        if not ids:
            continue
        for stored in session.scalars(select(StoredFile).where(StoredFile.id.in_(ids))):
            if received.duplicate or received.conversation is None:
                session.delete(stored)
                on_commit(session, partial(storage.get_storage().delete, stored.storage_key))
            else:
                stored.conversation_id = received.conversation.id
    session.flush()
