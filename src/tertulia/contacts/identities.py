"""Which contact is this sender? The one answer for every channel.

A sender is known by its identity on a channel type (`ContactIdentity`: workspace, channel type,
external id). A sender seen for the first time becomes a new contact, built through the same
validation as the API and the CSV import (`clean_contact_values`/`apply_cleaned`), with one
difference: a field that fails validation is dropped instead of refusing the contact, because a
customer's message must never be lost over a malformed display name.

A new sender's phone or email joins them to an existing contact only when the channel vouches for
it (`VOUCHED`: WhatsApp's sender is the number's verified account, an SMS comes from its number)
and the match is unambiguous: exactly one contact has it, no other detail the sender gives points
elsewhere or disagrees with that contact (a different phone or email), and that contact has no other
identity on the same channel type. Anything less (several matches, a phone or email the channel
does not vouch for, such as one a web-chat visitor typed, or only the same full name) creates the
new contact and records a merge suggestion between the two (contacts/merge_suggestions.py), for a
person to accept or dismiss: showing someone else's history to a stranger is worse than one
contact too many. An email or phone another contact has is never copied onto the new contact.

A sender may carry aliases: other ids the same person has on the channel type (WhatsApp's
business-scoped user id beside the phone number; a customer with a username may come with the BSUID
alone). The sender is the contact any of its ids already belongs to, and the ids not yet known are
added to that contact, so a later message carrying both links them. When the ids belong to two
different contacts, the primary id wins and nothing is linked (joining two people is a merge, a
person's decision).

Per-channel identity rules (email addresses, Telegram ids, Messenger's page-scoped ids) belong
here, keyed by channel type.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tertulia.contacts import repository as repo
from tertulia.contacts.fields import clean_email, clean_phone
from tertulia.contacts.merge_suggestions import do_suggest
from tertulia.contacts.models import Contact, ContactIdentity
from tertulia.contacts.service import (
    Change,
    FieldContext,
    apply_cleaned,
    clean_contact_values,
    record,
    record_changes,
)
from tertulia.kit.db import race_guard
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.text import fold_or_none
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


Valid = TypeVar("Valid")

DISPLAY_NAME_LENGTH = 200  # ContactIdentity.display_name: a longer one is cut, not refused

# Which of a sender's details each channel type vouches for: the channel itself proves the sender
# owns them, so a new identity with one of them may join the contact that has it. An email channel
# belongs here only for senders whose domain authentication passed.
VOUCHED: dict[str, frozenset[str]] = {
    "whatsapp": frozenset({"phone"}),
    "sms": frozenset({"phone"}),
    "twilio": frozenset({"phone"}),
    "vonage": frozenset({"phone"}),
    "bird": frozenset({"phone"}),
    "email": frozenset({"email"}),
}
# A full name shared by more contacts than this is too common to suggest anyone.
MAX_NAME_MATCHES = 3


@dataclass(frozen=True)
class Placement:
    """Where a new sender goes: `link` is the existing contact it joins (matched on `matched_on`);
    otherwise a new contact, suggested for merging with each of `suggest` (contact, reason)."""

    link: Contact | None = None
    matched_on: str | None = None
    suggest: tuple[tuple[Contact, str], ...] = ()


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


@dataclass(frozen=True)
class IdentityState:
    contact_id: int
    token_generation: int  # tokens issued under an older generation are revoked
    blocked: bool


def identity_state(session: Session, workspace_id: int, channel_type: str, external_id: str) -> IdentityState | None:
    """The contact behind an identity, whether it is blocked, and the identity's token generation:
    one indexed lookup (the identities' unique key, then the contact by id)."""
    row = session.execute(
        select(ContactIdentity.contact_id, ContactIdentity.token_generation, Contact.blocked)
        .join(Contact, Contact.id == ContactIdentity.contact_id)
        .where(
            ContactIdentity.workspace_id == workspace_id,
            ContactIdentity.channel == channel_type,
            ContactIdentity.external_id == external_id,
        )
    ).first()
    return None if row is None else IdentityState(row[0], row[1], row[2])


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
            contact = _place_new(session, contexts[workspace_id], channel_type, sender)
            known[keys[0]] = contact
        for key in keys:
            if key not in known:
                _link(session, contact, channel_type, key[2], sender)
                known[key] = contact
        found.append(contact)
    return found


def _link(session: Session, contact: Contact, channel_type: str, external_id: str, sender: Sender) -> bool:
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
        return False
    return True


def _valid_or_none(clean: Callable[[], Valid | None]) -> Valid | None:
    """A detail as the API would store it, or None when it is not valid (a lookup key, not an error)."""
    try:
        return clean()
    except ValidationFailed:
        return None


def placement(session: Session, ctx: FieldContext, channel_type: str, sender: Sender) -> Placement:
    """Decide where a sender none of whose ids is known goes (see the module docstring). Reads only."""
    workspace_id = ctx.workspace.id
    phone = _valid_or_none(lambda: clean_phone(sender.phone, ctx.workspace.default_country))
    email = _valid_or_none(lambda: clean_email(sender.email))
    given = {"phone": phone.e164 if phone else None, "email": email}
    matches: dict[str, Contact] = {}
    if given["phone"] is not None:
        found = repo.contact_by_phone(session, workspace_id, given["phone"])
        if found is not None:
            matches["phone"] = found
    if given["email"] is not None:
        found = repo.contact_by_email(session, workspace_id, given["email"])
        if found is not None:
            matches["email"] = found
    vouched = VOUCHED.get(channel_type, frozenset())
    strong = {field: contact for field, contact in matches.items() if field in vouched}
    candidates = {contact.id for contact in matches.values()}
    if strong and len(candidates) == 1:
        field, contact = sorted(strong.items())[0]
        disagrees = any(
            value is not None and getattr(contact, name) not in (None, value) for name, value in given.items()
        )
        if not disagrees and not repo.has_identity_on(session, workspace_id, contact.id, channel_type):
            return Placement(link=contact, matched_on=field)
    suggest: dict[int, tuple[Contact, str]] = {}
    for field in ("phone", "email"):
        if field in matches:
            suggest.setdefault(matches[field].id, (matches[field], field))
    values = _values(sender)
    first, last = fold_or_none(values.get("first_name")), fold_or_none(values.get("last_name"))
    if first and last:
        named = repo.contacts_by_full_name(session, workspace_id, first, last, MAX_NAME_MATCHES + 1)
        if len(named) <= MAX_NAME_MATCHES:
            for contact in named:
                suggest.setdefault(contact.id, (contact, "name"))
    return Placement(suggest=tuple(suggest.values()))


def _place_new(session: Session, ctx: FieldContext, channel_type: str, sender: Sender) -> Contact:
    """The contact of a sender none of whose ids is known: an existing one it is linked to, or a new
    one with merge suggestions."""
    place = placement(session, ctx, channel_type, sender)
    if place.link is not None:
        contact = place.link
        if _link(session, contact, channel_type, sender.external_id, sender):
            detail = {"channel": channel_type, "external_id": sender.external_id, "matched_on": place.matched_on}
            actor = Actor.system(contact.workspace_id, "channel")
            record(session, actor, contact.id, "identity_linked", "identities", None, detail)
            record_changes(session, actor, contact.id, _fill_empty_name(ctx, contact, sender))
            return contact
        # The same person's first two messages arrived at once and the other one placed them.
        winner_id = contact_id_for(session, contact.workspace_id, channel_type, sender.external_id)
        winner = repo.contact_by_id(session, contact.workspace_id, winner_id) if winner_id is not None else None
        if winner is None:
            raise RuntimeError("an identity that lost a race vanished")
        return winner
    contact = _create(session, ctx, channel_type, sender)
    for other, reason in place.suggest:
        do_suggest(session, contact.workspace_id, other.id, contact.id, reason)
    return contact


def _fill_empty_name(ctx: FieldContext, contact: Contact, sender: Sender) -> list[Change]:
    """A contact linked without any name takes the sender's profile name; a name someone gave the
    contact is never replaced by what a channel says."""
    if contact.first_name or contact.last_name:
        return []
    names = {k: v for k, v in _values(sender).items() if k in ("first_name", "last_name")}
    try:
        cleaned = clean_contact_values(names, ctx)
    except ValidationFailed as exc:
        bad = set(exc.details or {})
        cleaned = clean_contact_values({k: v for k, v in names.items() if k not in bad}, ctx)
    return apply_cleaned(contact, cleaned)


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
