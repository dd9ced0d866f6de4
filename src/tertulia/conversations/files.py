"""Uploaded files: the rules for accepting one, storing its bytes, and the workspace's library.

A file uploaded with a conversation belongs to that conversation (only people who may see it may
download it); one uploaded without is in the workspace library, which everyone who can view
contacts may list and download. The bytes go to kit.storage before the row is written; a caller
that rolls back after storing calls discard() so no orphan bytes remain.
"""

from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.conversations.models import Message, Snippet, StoredFile
from tertulia.kit import storage
from tertulia.kit import text as kit_text
from tertulia.kit.db import on_commit
from tertulia.kit.errors import Conflict, PermissionDenied, ValidationFailed
from tertulia.kit.settings import get_settings
from tertulia.users.models import User
from tertulia.users.permissions import Actor, Permission

ALLOWED_TYPES = ("image/", "audio/", "video/", "application/pdf", "text/plain", "text/csv")


def max_bytes() -> int:
    return get_settings().upload_max_bytes


def clean_name(name: str | None) -> str:
    """A stored file's name: no path separators, and no invisible or bidi characters (which could make
    `photo\u202egnp.exe` display as `photo...exe.png`; see kit.text.tidy_name)."""
    visible = kit_text.tidy_name(name or "")
    return visible.replace("/", "_").replace("\\", "_")[:255] or "file"


def check_upload(actor: Actor, content_type: str | None, data: bytes) -> str:
    """The normalised content type; `data` may be one byte longer than the limit (read that far)."""
    actor.require(Permission.VIEW_CONTACTS)
    kind = (content_type or "application/octet-stream").lower()
    if not kind.startswith(ALLOWED_TYPES):
        raise ValidationFailed.field("file", f"files of type {kind} are not accepted")
    limit = max_bytes()
    if len(data) > limit:
        raise ValidationFailed.field("file", f"must be at most {limit // (1024 * 1024)} MB")
    if not data:
        raise ValidationFailed.field("file", "is empty")
    return kind


def received_file_problem(content_type: str, size: int) -> str | None:
    """Why a file a customer sent through a provider is not kept (the message is, with the file
    marked unavailable); None when it is kept. The same rules as uploads."""
    if not content_type.lower().startswith(ALLOWED_TYPES):
        return f"files of type {content_type} are not accepted"
    if size > max_bytes():
        return f"larger than {max_bytes() // (1024 * 1024)} MB"
    if size == 0:
        return "empty"
    return None


def do_store_file(
    session: Session,
    actor: Actor,
    *,
    name: str | None,
    content_type: str | None,
    data: bytes,
    conversation_id: int | None = None,
) -> StoredFile:
    """Check, store the bytes, add the row. The caller has checked access to `conversation_id`."""
    kind = check_upload(actor, content_type, data)
    key = storage.new_key(actor.workspace_id)
    storage.get_storage().put(key, data)
    stored = StoredFile(
        workspace_id=actor.workspace_id,
        storage_key=key,
        name=clean_name(name),
        size=len(data),
        content_type=kind,
        uploaded_by_id=actor.user_id,
        conversation_id=conversation_id,
    )
    session.add(stored)
    session.flush()
    return stored


def in_use(session: Session, stored: StoredFile) -> bool:
    """Sent in a message, or attached to a snippet."""
    if session.scalar(select(Snippet.id).where(Snippet.file_id == stored.id).limit(1)) is not None:
        return True
    if stored.conversation_id is None:
        return False
    attachments = session.scalars(select(Message.attachments).where(Message.conversation_id == stored.conversation_id))
    return any(a.get("file_id") == stored.id for batch in attachments for a in (batch or []))


def _delete_bytes(key: str) -> None:
    storage.get_storage().delete(key)


def do_delete_file(session: Session, actor: Actor, stored: StoredFile) -> None:
    """Remove an upload nobody uses yet (an attachment taken off the composer before sending, a
    library file): whoever uploaded it, or a manager. A file already sent or in a snippet stays:
    the history must keep what the customer received."""
    if stored.uploaded_by_id != actor.user_id and not actor.can(Permission.MANAGE_WORKSPACE):
        raise PermissionDenied("Only whoever uploaded this file, or a manager, may delete it.")
    if in_use(session, stored):
        raise Conflict("This file has been sent or is in a snippet; it is kept.", code="file_in_use")
    key = stored.storage_key
    session.delete(stored)
    session.flush()
    on_commit(session, partial(_delete_bytes, key))


# An upload made for a conversation but never sent (the tab closed with it in the composer) is
# removed once it is a day old. Each hourly sweep looks only at files one to two days old, so its
# work stays bounded however many files were ever sent.
UNSENT_AFTER = timedelta(days=1)
SWEEP_WINDOW = timedelta(days=1)


def do_sweep_unsent_uploads(session: Session, now: datetime) -> int:
    """Delete conversation uploads from the window that no message or snippet uses; how many."""
    candidates = session.scalars(
        select(StoredFile).where(
            StoredFile.conversation_id.is_not(None),
            StoredFile.created_at < now - UNSENT_AFTER,
            StoredFile.created_at >= now - UNSENT_AFTER - SWEEP_WINDOW,
        )
    ).all()
    removed = 0
    for stored in candidates:
        if not in_use(session, stored):
            key = stored.storage_key
            session.delete(stored)
            on_commit(session, partial(_delete_bytes, key))
            removed += 1
    session.flush()
    return removed


def discard(stored: StoredFile) -> None:
    """Remove the bytes of a file whose row is being rolled back."""
    storage.get_storage().delete(stored.storage_key)


def library_page(session: Session, workspace_id: int, *, before_id: int | None, limit: int) -> list[StoredFile]:
    """Library files (not sent in a conversation), newest first; one more than `limit` if more exist."""
    query = select(StoredFile).where(StoredFile.workspace_id == workspace_id, StoredFile.conversation_id.is_(None))
    if before_id is not None:
        query = query.where(StoredFile.id < before_id)
    return list(session.scalars(query.order_by(StoredFile.id.desc()).limit(limit + 1)))


def uploader_names(session: Session, files: list[StoredFile]) -> dict[int, str]:
    ids = {f.uploaded_by_id for f in files if f.uploaded_by_id is not None}
    if not ids:
        return {}
    return {u.id: u.full_name for u in session.scalars(select(User).where(User.id.in_(ids)))}
