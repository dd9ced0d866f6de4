"""Which contact is this sender? The one answer for every channel.

A sender is known by its identity on a channel type (`ContactIdentity`: workspace, channel type,
external id). A sender seen for the first time becomes a new contact, built through the same
validation as the API and the CSV import (`clean_contact_values`/`apply_cleaned`), with one
difference: a field that fails validation is dropped instead of refusing the contact, because a
customer's message must never be lost over a malformed display name.

An email or phone given on a channel is not proof of owning it: it never attaches the sender to an
existing contact (that would show them someone else's history); it is kept on the new contact only
when no contact has it yet.

A sender may carry aliases: other ids the same person has on the channel type (WhatsApp's
business-scoped user id beside the phone number; a customer with a username may come with the BSUID
alone). The sender is the contact any of its ids already belongs to, and the ids not yet known are
added to that contact, so a later message carrying both links them. When the ids belong to two
different contacts, the primary id wins and nothing is linked (joining two people is a merge, a
person's decision).

Per-channel identity rules (email addresses, Telegram ids, Messenger's page-scoped ids) belong
here, keyed by channel type.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tertulia.contacts import repository as repo
from tertulia.contacts.models import Contact, ContactIdentity
from tertulia.contacts.service import FieldContext, apply_cleaned, clean_contact_values, record
from tertulia.kit.db import race_guard
from tertulia.kit.errors import ValidationFailed
from tertulia.users.permissions import Actor


@dataclass(frozen=True)
class Sender:
    """Who sent a message, as the channel describes them. Only `external_id` is required."""

    external_id: str
    display_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    aliases: tuple[str, ...] = ()
    avatar_url: str | None = None

    @property
    def external_ids(self) -> tuple[str, ...]:
        return (self.external_id, *(alias for alias in self.aliases if alias != self.external_id))


DISPLAY_NAME_LENGTH = 200  # ContactIdentity.display_name: a longer one is cut, not refused


def contact_id_for(session: Session, workspace_id: int, channel_type: str, external_id: str) -> int | None:
    """The contact behind an identity, without loading it."""
    found: int | None = session.scalar(
        select(ContactIdentity.contact_id).where(
            ContactIdentity.workspace_id == workspace_id,
            ContactIdentity.channel == channel_type,
            ContactIdentity.external_id == external_id,
        )
    )
    return found


def resolve_sender(session: Session, workspace_id: int, channel_type: str, sender: Sender) -> Contact:
    return resolve_senders(session, [(workspace_id, channel_type, sender)])[0]


def resolve_senders(session: Session, senders: Sequence[tuple[int, str, Sender]]) -> list[Contact]:
    """The contact behind each sender, in order. Known senders cost one query per workspace and
    channel type whatever their number; each new sender is created (a few statements each)."""
    known = repo.contacts_by_identities(
        session,
        {
            (workspace_id, channel_type, external_id)
            for workspace_id, channel_type, sender in senders
            for external_id in sender.external_ids
        },
    )
    contexts: dict[int, FieldContext] = {}
    found: list[Contact] = []
    for workspace_id, channel_type, sender in senders:
        keys = [(workspace_id, channel_type, external_id) for external_id in sender.external_ids]
        contact = next((known[key] for key in keys if key in known), None)
        if contact is None:
            if workspace_id not in contexts:
                contexts[workspace_id] = FieldContext.load(session, workspace_id)
            contact = _create(session, contexts[workspace_id], channel_type, sender)
            known[keys[0]] = contact
        for key in keys:
            if key not in known:
                _link(session, contact, channel_type, key[2], sender)
                known[key] = contact
        found.append(contact)
    return found


def _link(session: Session, contact: Contact, channel_type: str, external_id: str, sender: Sender) -> None:
    """Adds another id of the sender to their contact (unless another contact got it meanwhile)."""
    try:
        with race_guard(session):
            session.add(
                ContactIdentity(
                    workspace_id=contact.workspace_id,
                    contact_id=contact.id,
                    channel=channel_type,
                    external_id=external_id,
                    display_name=(sender.display_name or None) and sender.display_name[:DISPLAY_NAME_LENGTH],
                )
            )
    except IntegrityError:
        return


def _values(sender: Sender) -> dict[str, Any]:
    display = " ".join((sender.display_name or "").split())
    first = sender.first_name or (display.split(" ", 1)[0] if display else None)
    last = sender.last_name or (display.split(" ", 1)[1] if " " in display else None)
    given = {
        "first_name": first,
        "last_name": last,
        "email": sender.email,
        "phone": sender.phone,
        "avatar_url": sender.avatar_url,
    }
    return {name: value for name, value in given.items() if value}


def _clean_leniently(session: Session, ctx: FieldContext, sender: Sender) -> Contact:
    """A new contact from the sender's details: invalid fields dropped, an email or phone another
    contact already has left out."""
    values = _values(sender)
    try:
        cleaned = clean_contact_values(values, ctx)
    except ValidationFailed as exc:
        bad = set(exc.details or {})
        cleaned = clean_contact_values({k: v for k, v in values.items() if k not in bad}, ctx)
    workspace_id = ctx.workspace.id
    for column, finder in (("email", repo.contact_by_email), ("phone", repo.contact_by_phone)):
        value = cleaned.columns.get(column)
        if value is not None and finder(session, workspace_id, value) is not None:
            cleaned.columns.pop(column)
            if column == "phone":
                cleaned.columns.pop("phone_raw", None)
    contact = Contact(workspace_id=workspace_id, custom={})
    apply_cleaned(contact, cleaned)
    return contact


def _create(session: Session, ctx: FieldContext, channel_type: str, sender: Sender) -> Contact:
    workspace_id = ctx.workspace.id
    contact = _clean_leniently(session, ctx, sender)
    try:
        with race_guard(session):
            session.add(contact)
            session.flush()
            session.add(
                ContactIdentity(
                    workspace_id=workspace_id,
                    contact_id=contact.id,
                    channel=channel_type,
                    external_id=sender.external_id,
                    display_name=(sender.display_name or None) and sender.display_name[:DISPLAY_NAME_LENGTH],
                )
            )
    except IntegrityError:
        # The same person's first two messages arrived at once and the other one created them.
        winner_id = contact_id_for(session, workspace_id, channel_type, sender.external_id)
        existing = repo.contact_by_id(session, workspace_id, winner_id) if winner_id is not None else None
        if existing is None:
            raise
        return existing
    record(session, Actor.system(workspace_id, "channel"), contact.id, "created", "channel", None, channel_type)
    return contact
