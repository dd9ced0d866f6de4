"""Merge suggestions: two contacts that may be one person, for a person to accept or dismiss.

A suggestion is recorded when a new channel identity could not be linked to an existing contact with
certainty (contacts/identities.py): the phone or email it shares is one the channel does not vouch
for, several contacts match, the matching contact already has another identity on that channel type,
or only the full name matches. It is shown on both contacts. Accepting merges them through
`do_merge_contacts` (the older contact survives, keeping its values and taking the ones it lacks);
dismissing keeps the row, so the same pair is never suggested again.
"""

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tertulia.contacts import repository as repo
from tertulia.contacts.models import Contact, MergeSuggestion
from tertulia.contacts.service import do_merge_contacts
from tertulia.events import service as event_log
from tertulia.events.types import EventType
from tertulia.kit.clock import utcnow
from tertulia.kit.db import race_guard
from tertulia.kit.errors import Conflict, NotFound
from tertulia.users.permissions import Actor, Permission

OPEN = "open"
DISMISSED = "dismissed"
REASONS = ("phone", "email", "name")


@dataclass(frozen=True)
class SuggestionView:
    """A suggestion as one of its two contacts sees it: the other contact beside it."""

    suggestion: MergeSuggestion
    other: Contact


def do_suggest(session: Session, workspace_id: int, one_id: int, other_id: int, reason: str) -> MergeSuggestion | None:
    """Record that two contacts may be one person; None when the pair was already suggested (open,
    or dismissed: then it stays dismissed)."""
    if reason not in REASONS:
        raise ValueError(f"unknown merge suggestion reason {reason!r}")
    low, high = sorted((one_id, other_id))
    if low == high or repo.merge_suggestion_for_pair(session, workspace_id, low, high) is not None:
        return None
    row = MergeSuggestion(workspace_id=workspace_id, contact_id=low, other_contact_id=high, reason=reason, status=OPEN)
    try:
        with race_guard(session):
            session.add(row)
    except IntegrityError:
        return None  # the same pair suggested by a concurrent transaction
    payload = {"suggestion_id": row.id, "contact_id": low, "other_contact_id": high, "reason": reason}
    event = event_log.Event(EventType.CONTACT_MERGE_SUGGESTED, workspace_id, payload, contact_id=low, actor="channel")
    event_log.emit(session, event)
    return row


def open_suggestions(session: Session, actor: Actor, contact: Contact) -> list[SuggestionView]:
    actor.require(Permission.VIEW_CONTACTS)
    views: list[SuggestionView] = []
    for row in repo.merge_suggestions_of(session, actor.workspace_id, contact.id, OPEN):
        other_id = row.other_contact_id if row.contact_id == contact.id else row.contact_id
        other = repo.contact_by_id(session, actor.workspace_id, other_id)
        if other is not None:
            views.append(SuggestionView(row, other))
    return views


def access_suggestion(session: Session, actor: Actor, contact: Contact, suggestion_id: int) -> MergeSuggestion:
    """One of the contact's suggestions, open or dismissed; another contact's or workspace's is not found."""
    actor.require(Permission.MERGE_CONTACTS)
    row = session.get(MergeSuggestion, suggestion_id)
    if (
        row is None
        or row.workspace_id != actor.workspace_id
        or contact.id not in (row.contact_id, row.other_contact_id)
    ):
        raise NotFound(f"Contact id:{contact.id} has no merge suggestion {suggestion_id}.")
    return row


def _check_open(row: MergeSuggestion) -> None:
    if row.status != OPEN:
        raise Conflict(
            f"Merge suggestion {row.id} was dismissed.",
            code="merge_suggestion_dismissed",
            details={"suggestion_id": "was dismissed"},
        )


def do_accept(session: Session, actor: Actor, row: MergeSuggestion) -> Contact:
    """Merge the pair; the older contact survives. The suggestion goes with the merged contact."""
    actor.require(Permission.MERGE_CONTACTS)
    _check_open(row)
    survivor = repo.contact_by_id(session, actor.workspace_id, row.contact_id)
    merged = repo.contact_by_id(session, actor.workspace_id, row.other_contact_id)
    if survivor is None or merged is None:
        raise NotFound(f"No merge suggestion {row.id}.")
    session.delete(row)
    session.flush()
    return do_merge_contacts(session, actor, survivor, merged)


def do_dismiss(session: Session, actor: Actor, row: MergeSuggestion) -> MergeSuggestion:
    """Not the same person: hidden from both contacts and never suggested again for this pair."""
    actor.require(Permission.MERGE_CONTACTS)
    _check_open(row)
    row.status = DISMISSED
    row.decided_at = utcnow()
    row.decided_by_user_id = actor.user_id
    session.flush()
    return row
