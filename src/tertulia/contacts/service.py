"""Contacts: the rules. Validate and check permissions first (check_*), then change data (do_*).

A service never commits; the request, task or command that called it owns the transaction.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from tertulia.contacts import repository as repo
from tertulia.contacts.fields import (
    KEY_PATTERN,
    RESERVED_KEYS,
    clean_code,
    clean_custom_value,
    clean_email,
    clean_name,
    clean_phone,
    clean_url,
)
from tertulia.contacts.hooks import merge_hooks
from tertulia.contacts.models import (
    Contact,
    ContactActivity,
    ContactIdentity,
    ContactTag,
    CustomField,
    FieldType,
    Tag,
)
from tertulia.contacts.schemas import ContactOut
from tertulia.events import service as event_log
from tertulia.events.types import EventType
from tertulia.kit import realtime
from tertulia.kit.clock import utcnow
from tertulia.kit.db import on_commit
from tertulia.kit.errors import Conflict, NotFound, ValidationFailed, found
from tertulia.kit.text import fold, fold_or_none, name_key, tidy_name
from tertulia.kit.types import MAX_ID, is_id, is_id_text
from tertulia.users.permissions import Actor, Permission, access_in_workspace
from tertulia.users.service import check_member_user
from tertulia.workspaces.models import Workspace
from tertulia.workspaces.service import get_workspace

IDENTIFIER_KINDS = ("id", "email", "phone")
MAX_TAG_LENGTH = 100
MAX_CUSTOM_FIELDS = 200
# A list field's options: each is checked and stored with the field, and offered in every form.
MAX_OPTIONS = 1000
MAX_OPTION_LENGTH = 200


# ----- identifiers and access ---------------------------------------------------------------


def parse_identifier(identifier: str) -> tuple[str, str]:
    kind, sep, value = identifier.partition(":")
    if not sep or kind not in IDENTIFIER_KINDS or not value.strip():
        raise ValidationFailed.field("identifier", "must be id:<number>, email:<address> or phone:<+E.164 number>")
    if kind == "id" and not is_id_text(value):
        raise ValidationFailed.field("identifier", f"id: must be followed by a number from 1 to {MAX_ID}")
    return kind, value.strip()


def find_contact(session: Session, workspace: Workspace, identifier: str) -> Contact | None:
    kind, value = parse_identifier(identifier)
    if kind == "id":
        return repo.contact_by_id(session, workspace.id, int(value))
    if kind == "email":
        email = clean_email(value, "identifier")
        return repo.contact_by_email(session, workspace.id, email) if email else None
    phone = clean_phone(value, workspace.default_country, "identifier")
    return repo.contact_by_phone(session, workspace.id, phone.e164) if phone else None


def access_contact(
    session: Session, actor: Actor, identifier: str, permission: Permission = Permission.VIEW_CONTACTS
) -> Contact:
    """The one permission-checked fetch. Another workspace's contact is simply not found."""
    actor.require(permission)
    return found(
        find_contact(session, get_workspace(session, actor.workspace_id), identifier), f"No contact {identifier}."
    )


# ----- validation ---------------------------------------------------------------------------


@dataclass
class FieldContext:
    """What validating a contact needs to know about its workspace; built once per request or import."""

    workspace: Workspace
    definitions: dict[str, CustomField]
    check_assignee: Callable[[int], None]

    @classmethod
    def load(cls, session: Session, workspace_id: int) -> "FieldContext":
        workspace = get_workspace(session, workspace_id)
        definitions = {d.key: d for d in repo.custom_fields(session, workspace_id)}

        def check_assignee(user_id: int) -> None:
            check_member_user(session, workspace_id, user_id, "assignee_id")

        return cls(workspace=workspace, definitions=definitions, check_assignee=check_assignee)


@dataclass
class CleanedContact:
    columns: dict[str, Any] = field(default_factory=dict)  # Contact attribute -> value
    custom: dict[str, Any] = field(default_factory=dict)  # custom key -> value, None clears


def clean_contact_values(values: Mapping[str, Any], ctx: FieldContext) -> CleanedContact:
    """Validate every given field; report all bad fields at once (import rows list each reason)."""
    cleaned = CleanedContact()
    errors: dict[str, str] = {}

    def attempt(action: Callable[[], None]) -> None:
        try:
            action()
        except ValidationFailed as exc:
            errors.update(exc.details or {"request": exc.message})

    for name in ("first_name", "last_name"):
        if name in values:

            def set_name(name: str = name) -> None:
                value = clean_name(values[name], name)
                cleaned.columns[name] = value
                cleaned.columns[f"{name}_folded"] = fold_or_none(value)

            attempt(set_name)
    if "email" in values:
        attempt(lambda: cleaned.columns.__setitem__("email", clean_email(values["email"])))
    if "phone" in values:

        def set_phone() -> None:
            phone = clean_phone(values["phone"], ctx.workspace.default_country)
            cleaned.columns["phone"] = phone.e164 if phone else None
            cleaned.columns["phone_raw"] = phone.raw if phone else None

        attempt(set_phone)
    for code in ("language", "country"):
        if code in values:
            attempt(lambda code=code: cleaned.columns.__setitem__(code, clean_code(values[code], code)))  # type: ignore[misc]
    if "avatar_url" in values:
        attempt(lambda: cleaned.columns.__setitem__("avatar_url", clean_url(values["avatar_url"], "avatar_url")))
    if "assignee_id" in values:

        def set_assignee() -> None:
            assignee = values["assignee_id"]
            if assignee is not None:
                if not is_id(assignee):
                    raise ValidationFailed.field("assignee_id", "must be a user id")
                ctx.check_assignee(assignee)
            cleaned.columns["assignee_id"] = assignee

        attempt(set_assignee)
    custom = values.get("custom_fields") or {}
    if not isinstance(custom, Mapping):
        errors["custom_fields"] = "must be an object of field key to value"
        custom = {}
    for key, value in custom.items():
        definition = ctx.definitions.get(key)
        if definition is None:
            errors[f"custom_fields.{key}"] = "no such custom field"
            continue
        attempt(
            lambda d=definition, v=value: cleaned.custom.__setitem__(  # type: ignore[misc]
                d.key, clean_custom_value(d, v, ctx.workspace.default_country)
            )
        )
    if errors:
        message = "; ".join(f"{path}: {reason}" for path, reason in errors.items())
        raise ValidationFailed(message, details=errors)
    return cleaned


def check_unique(session: Session, workspace_id: int, cleaned: CleanedContact, contact_id: int | None) -> None:
    for column, finder in (("email", repo.contact_by_email), ("phone", repo.contact_by_phone)):
        value = cleaned.columns.get(column)
        if value is None:
            continue
        other = finder(session, workspace_id, value)
        if other is not None and other.id != contact_id:
            raise Conflict(
                f"Another contact (id:{other.id}) already has this {column}.",
                code=f"duplicate_{column}",
                details={column: f"already used by contact id:{other.id}", "contact_id": other.id},
            )


# ----- writing ------------------------------------------------------------------------------

Change = tuple[str, Any, Any]  # (field, old, new)
_SHADOW_COLUMNS = ("first_name_folded", "last_name_folded", "phone_raw")


def apply_cleaned(contact: Contact, cleaned: CleanedContact) -> list[Change]:
    changes: list[Change] = []
    for column, value in cleaned.columns.items():
        old = getattr(contact, column)
        if old != value:
            setattr(contact, column, value)
            if column not in _SHADOW_COLUMNS:
                changes.append((column, old, value))
    if cleaned.custom:
        custom = dict(contact.custom or {})
        for key, value in cleaned.custom.items():
            old = custom.get(key)
            if old == value:
                continue
            if value is None:
                custom.pop(key, None)
            else:
                custom[key] = value
            changes.append((f"custom_fields.{key}", old, value))
        contact.custom = custom
        contact.custom_folded = folded_custom(custom)
    return changes


def folded_custom(custom: Mapping[str, Any]) -> dict[str, str]:
    """`Contact.custom_folded`: fold() of every text value, for case/accent-insensitive segment filters.
    Whatever writes `Contact.custom` must write this beside it."""
    return {key: fold(value) for key, value in custom.items() if isinstance(value, str)}


def activity_row(
    actor: Actor, contact_id: int, action: str, field: str | None = None, old: Any = None, new: Any = None
) -> dict[str, Any]:
    return {
        "workspace_id": actor.workspace_id,
        "contact_id": contact_id,
        "actor_user_id": actor.user_id,
        "actor_kind": actor.kind,
        "action": action,
        "field": field,
        "old_value": old,
        "new_value": new,
        "created_at": utcnow(),
    }


def record(
    session: Session,
    actor: Actor,
    contact_id: int,
    action: str,
    field: str | None = None,
    old: Any = None,
    new: Any = None,
) -> None:
    session.add(ContactActivity(**activity_row(actor, contact_id, action, field, old, new)))
    _emit_recorded(session, actor, contact_id, action, field, old, new)


def record_changes(session: Session, actor: Actor, contact_id: int, changes: Sequence[Change]) -> None:
    for name, old, new in changes:
        record(session, actor, contact_id, "updated", name, old, new)
    if changes:
        payload = {"contact_id": contact_id, "changes": [{"field": n, "old": o, "new": v} for n, o, v in changes]}
        _emit(session, actor, EventType.CONTACT_UPDATED, contact_id, payload)


def _emit_recorded(
    session: Session, actor: Actor, contact_id: int, action: str, field: str | None, old: Any, new: Any
) -> None:
    """The event-log twin of an activity row (updates are one event per change set: record_changes)."""
    if action == "created":
        source = f"{field}:{new}" if field is not None else None
        _emit(session, actor, EventType.CONTACT_CREATED, contact_id, {"contact_id": contact_id, "source": source})
    elif action == "tag_added":
        _emit(session, actor, EventType.CONTACT_TAGGED, contact_id, {"contact_id": contact_id, "tag": new})
    elif action == "tag_removed":
        _emit(session, actor, EventType.CONTACT_UNTAGGED, contact_id, {"contact_id": contact_id, "tag": old})
    elif action == "identity_linked":
        _emit(session, actor, EventType.CONTACT_IDENTITY_LINKED, contact_id, {"contact_id": contact_id, **new})
    elif action == "merged":
        payload = {"contact_id": contact_id, "merged_contact_id": old["id"], "merged_name": old["name"]}
        _emit(session, actor, EventType.CONTACT_MERGED, contact_id, payload)


def _emit(session: Session, actor: Actor, kind: EventType, contact_id: int, payload: dict[str, Any]) -> None:
    label = event_log.actor_label(actor.kind, actor.user_id, actor.token_id)
    event = event_log.Event(kind, actor.workspace_id, payload, contact_id=contact_id, actor=label)
    event_log.emit(session, event)


def do_create_contact(session: Session, actor: Actor, values: Mapping[str, Any]) -> Contact:
    actor.require(Permission.EDIT_CONTACTS)
    ctx = FieldContext.load(session, actor.workspace_id)
    cleaned = clean_contact_values(values, ctx)
    identifying = ("first_name", "last_name", "email", "phone")
    if not any(cleaned.columns.get(name) for name in identifying):
        raise ValidationFailed(
            "A contact needs at least a name, an email or a phone.",
            details={"first_name": "a name, email or phone is required"},
        )
    tag_names = check_tag_names(values.get("tags") or [])
    check_unique(session, actor.workspace_id, cleaned, None)
    contact = Contact(workspace_id=actor.workspace_id, custom={})
    apply_cleaned(contact, cleaned)
    session.add(contact)
    session.flush()
    record(session, actor, contact.id, "created")
    if tag_names:
        do_add_tags(session, actor, contact, tag_names)
    return contact


def do_update_contact(session: Session, actor: Actor, contact: Contact, values: Mapping[str, Any]) -> list[Change]:
    actor.require(Permission.EDIT_CONTACTS)
    if "tags" in values and values["tags"] is not None:
        raise ValidationFailed.field("tags", "use the tags endpoints to change tags")
    ctx = FieldContext.load(session, actor.workspace_id)
    cleaned = clean_contact_values(values, ctx)
    check_unique(session, actor.workspace_id, cleaned, contact.id)
    changes = apply_cleaned(contact, cleaned)
    if changes:
        contact.updated_at = utcnow()
        record_changes(session, actor, contact.id, changes)
        session.flush()
    return changes


# ----- blocking ------------------------------------------------------------------------------

# After commit: the contact's open web-chat sockets close at once (conversations/ingress/widget.py).
VISITOR_ENDED = "visitor.ended"


def do_block_contact(session: Session, actor: Actor, contact: Contact) -> bool:
    """Block: the contact's messages stop reaching the inbox (each is counted on the contact and
    recorded as message.blocked instead) and its web-chat visitors' tokens stop working. False when
    it was blocked already."""
    actor.require(Permission.EDIT_CONTACTS)
    if contact.blocked:
        return False
    contact.blocked = True
    contact.blocked_at = contact.updated_at = utcnow()
    record_changes(session, actor, contact.id, [("blocked", False, True)])
    _end_visitor_sessions(session, contact)
    return True


def do_unblock_contact(session: Session, actor: Actor, contact: Contact) -> bool:
    """Unblock: new messages reach the inbox again (the ones refused meanwhile are not brought back).
    Its web-chat visitors start new sessions. False when it was not blocked."""
    actor.require(Permission.EDIT_CONTACTS)
    if not contact.blocked:
        return False
    contact.blocked = False
    contact.blocked_at = None
    contact.updated_at = utcnow()
    record_changes(session, actor, contact.id, [("blocked", True, False)])
    session.flush()
    return True


def do_end_visitor_sessions(session: Session, actor: Actor, contact: Contact) -> int:
    """End the contact's web-chat sessions without blocking it: every token its visitors hold stops
    working and their open chat windows close; a visitor who comes back starts as a new visitor.
    Returns how many web-chat identities were affected."""
    actor.require(Permission.EDIT_CONTACTS)
    ended = _end_visitor_sessions(session, contact)
    if ended:
        record(session, actor, contact.id, "sessions_ended", "identities", None, ended)
    return ended


def _end_visitor_sessions(session: Session, contact: Contact) -> int:
    result = session.execute(
        update(ContactIdentity)
        .where(ContactIdentity.contact_id == contact.id, ContactIdentity.channel == "webchat")
        .values(token_generation=ContactIdentity.token_generation + 1)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    event = {
        "type": VISITOR_ENDED,
        "workspace_id": contact.workspace_id,
        "contact_id": contact.id,
        "topics": [f"contact:{contact.id}"],
    }
    on_commit(session, lambda: realtime.publish(event))
    return int(getattr(result, "rowcount", 0) or 0)


def do_record_blocked_message(
    session: Session, contact: Contact, channel_id: int, provider_message_id: str | None, message_type: str
) -> None:
    """What remains of a blocked contact's message: a count and time on the contact and one
    message.blocked event (no text, no files)."""
    # An increment in SQL: two batches may refuse the same contact's messages at once.
    session.execute(
        update(Contact)
        .where(Contact.id == contact.id)
        .values(blocked_messages=Contact.blocked_messages + 1, last_blocked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.expire(contact, ["blocked_messages", "last_blocked_at"])
    payload = {
        "contact_id": contact.id,
        "channel_id": channel_id,
        "provider_message_id": provider_message_id,
        "type": message_type,
    }
    _emit(session, Actor.system(contact.workspace_id, "channel"), EventType.MESSAGE_BLOCKED, contact.id, payload)


def do_delete_contact(session: Session, actor: Actor, contact: Contact) -> None:
    """The event carries the contact as it was: nothing can be read of it once it is gone."""
    actor.require(Permission.DELETE_CONTACTS)
    snapshot = contacts_out(session, [contact])[0].model_dump(mode="json")
    _emit(session, actor, EventType.CONTACT_DELETED, contact.id, {"contact_id": contact.id, "contact": snapshot})
    session.delete(contact)
    session.flush()


# ----- tags ---------------------------------------------------------------------------------


def check_tag_names(names: Sequence[Any], field: str = "tags") -> list[str]:
    if not isinstance(names, list | tuple):
        raise ValidationFailed.field(field, "must be a list of tag names")
    cleaned: dict[str, str] = {}
    for index, name in enumerate(names):
        text = tidy_name(name) if isinstance(name, str) else ""
        if not text:
            raise ValidationFailed.field(f"{field}[{index}]", "must be a non-empty tag name")
        if len(text) > MAX_TAG_LENGTH:
            raise ValidationFailed.field(f"{field}[{index}]", f"must be at most {MAX_TAG_LENGTH} characters")
        cleaned.setdefault(name_key(text), text)
    return list(cleaned.values())


@dataclass
class TagCache:
    """Tags and contacts' tag sets read once for many tag changes in one transaction (a batch of
    workflow runs), so that a change costs no query and its rows are written with the others.

    Only sound while every change to these contacts' tags in the transaction goes through it, and
    while nothing it saw is rolled back: a caller that rolls back a savepoint holding any change
    made through it must stop using it. `contact_ids`: the contacts whose tag sets are read
    together, the first time any of them is needed."""

    contact_ids: Sequence[int]
    tags: dict[tuple[int, str], Tag] = field(default_factory=dict)
    present: dict[int, set[int]] | None = None

    def tags_for(self, session: Session, workspace_id: int, keys: Sequence[str]) -> dict[str, Tag]:
        """The existing tags among these name keys, in their order (one query for keys not seen yet;
        a key found missing is asked again, since another transaction may have created it)."""
        missing = [key for key in keys if (workspace_id, key) not in self.tags]
        if missing:
            for key, tag in repo.tags_by_keys(session, workspace_id, missing).items():
                self.tags[(workspace_id, key)] = tag
        return {key: self.tags[(workspace_id, key)] for key in keys if (workspace_id, key) in self.tags}

    def present_of(self, session: Session, contact_id: int) -> set[int]:
        if self.present is None:
            wanted = sorted({*self.contact_ids, contact_id})
            self.present = {contact: set() for contact in wanted}
            rows = session.execute(
                select(ContactTag.contact_id, ContactTag.tag_id).where(ContactTag.contact_id.in_(wanted))
            )
            for contact, tag_id in rows:
                self.present[contact].add(tag_id)
        if contact_id not in self.present:
            self.present[contact_id] = repo.contact_tag_ids(session, contact_id)
        return self.present[contact_id]


def ensure_tags(session: Session, workspace_id: int, names: Sequence[str], cache: TagCache | None = None) -> list[Tag]:
    """The catalogue entries for these names, created on first use."""
    if cache is None:
        by_key = repo.tags_by_keys(session, workspace_id, (name_key(n) for n in names))
    else:
        by_key = cache.tags_for(session, workspace_id, [name_key(n) for n in names])
    result: list[Tag] = []
    created = False
    for name in names:
        key = name_key(name)
        tag = by_key.get(key)
        if tag is None:
            tag = Tag(workspace_id=workspace_id, name=name, name_key=key)
            session.add(tag)
            by_key[key] = tag
            created = True
            if cache is not None:
                cache.tags[(workspace_id, key)] = tag
        result.append(tag)
    if created or cache is None:
        session.flush()  # the new tags' ids
    return result


def do_add_tags(
    session: Session, actor: Actor, contact: Contact, names: Sequence[Any], *, cache: TagCache | None = None
) -> list[str]:
    """Tag the contact. With a `cache`, nothing is read that the cache holds and the new rows are
    left for the caller's next flush (one INSERT for a batch's rows)."""
    actor.require(Permission.EDIT_CONTACTS)
    tags = ensure_tags(session, actor.workspace_id, check_tag_names(names), cache)
    present = repo.contact_tag_ids(session, contact.id) if cache is None else cache.present_of(session, contact.id)
    added = [tag for tag in tags if tag.id not in present]
    for tag in added:
        session.add(ContactTag(contact_id=contact.id, tag_id=tag.id))
        record(session, actor, contact.id, "tag_added", "tags", None, tag.name)
    if added:
        contact.updated_at = utcnow()
    if cache is None:
        session.flush()
    else:
        present.update(tag.id for tag in added)
    return [tag.name for tag in added]


def do_remove_tags(
    session: Session, actor: Actor, contact: Contact, names: Sequence[Any], *, cache: TagCache | None = None
) -> list[str]:
    """Untag the contact; `cache` as for `do_add_tags` (the DELETE itself is not deferred)."""
    actor.require(Permission.EDIT_CONTACTS)
    keys = [name_key(n) for n in check_tag_names(names)]
    if cache is None:
        wanted = repo.tags_by_keys(session, actor.workspace_id, keys)
        present = repo.contact_tag_ids(session, contact.id)
    else:
        wanted = cache.tags_for(session, actor.workspace_id, keys)
        present = cache.present_of(session, contact.id)
    # In the order asked for (the query's row order is the database's).
    removed = [wanted[key] for key in dict.fromkeys(keys) if key in wanted and wanted[key].id in present]
    if removed:
        repo.remove_contact_tags(session, contact.id, [tag.id for tag in removed])
        for tag in removed:
            record(session, actor, contact.id, "tag_removed", "tags", tag.name, None)
        contact.updated_at = utcnow()
    if cache is None:
        session.flush()
    else:
        present.difference_update(tag.id for tag in removed)
    return [tag.name for tag in removed]


def access_tag(session: Session, actor: Actor, tag_id: int, permission: Permission = Permission.MANAGE_TAGS) -> Tag:
    return access_in_workspace(session, actor, Tag, tag_id, permission=permission, not_found=f"No tag {tag_id}.")


def _check_tag_name(session: Session, workspace_id: int, name: Any, tag_id: int | None) -> str:
    """A tag's new name, cleaned; no other tag of the workspace may have it (case and accents aside)."""
    text = tidy_name(name) if isinstance(name, str) else ""
    if not text:
        raise ValidationFailed.field("name", "must be a non-empty tag name")
    if len(text) > MAX_TAG_LENGTH:
        raise ValidationFailed.field("name", f"must be at most {MAX_TAG_LENGTH} characters")
    key = name_key(text)
    other = repo.tags_by_keys(session, workspace_id, [key]).get(key)
    if other is not None and other.id != tag_id:
        raise Conflict(
            f"A tag named {other.name!r} already exists.", code="duplicate_tag", details={"name": "already exists"}
        )
    return text


def do_create_tag(session: Session, actor: Actor, name: str) -> Tag:
    """A tag in the catalogue before any contact has it (tagging a contact creates one as well)."""
    actor.require(Permission.MANAGE_TAGS)
    text = _check_tag_name(session, actor.workspace_id, name, None)
    tag = Tag(workspace_id=actor.workspace_id, name=text, name_key=name_key(text))
    session.add(tag)
    session.flush()
    return tag


def do_rename_tag(session: Session, actor: Actor, tag: Tag, name: str) -> Tag:
    """Saved segment filters name tags by text, so a filter on the old name stops matching."""
    actor.require(Permission.MANAGE_TAGS)
    text = _check_tag_name(session, actor.workspace_id, name, tag.id)
    key = name_key(text)
    tag.name = text
    tag.name_key = key
    session.flush()
    return tag


def do_delete_tag(session: Session, actor: Actor, tag: Tag) -> None:
    """Removes the tag from every contact, then from the catalogue."""
    actor.require(Permission.MANAGE_TAGS)
    session.execute(delete(ContactTag).where(ContactTag.tag_id == tag.id))
    session.delete(tag)
    session.flush()


# ----- custom fields ------------------------------------------------------------------------


def check_options(field_type: FieldType, options: list[str] | None) -> list[str] | None:
    if field_type != FieldType.LIST:
        if options:
            raise ValidationFailed.field("options", "only list fields have options")
        return None
    if options and len(options) > MAX_OPTIONS:
        raise ValidationFailed.field("options", f"a list field has at most {MAX_OPTIONS} options")
    cleaned: list[str] = []
    seen: set[str] = set()
    for index, option in enumerate(options or []):
        text = tidy_name(option)
        if not text:
            raise ValidationFailed.field(f"options[{index}]", "must not be empty")
        if len(text) > MAX_OPTION_LENGTH:
            raise ValidationFailed.field(f"options[{index}]", f"must be at most {MAX_OPTION_LENGTH} characters")
        key = text.casefold()
        if key in seen:
            raise ValidationFailed.field(f"options[{index}]", f"duplicate option {text!r}")
        seen.add(key)
        cleaned.append(text)
    if not cleaned:
        raise ValidationFailed.field("options", "a list field needs at least one option")
    return cleaned


def check_label(label: str) -> str:
    text = tidy_name(label)
    if not text:
        raise ValidationFailed.field("label", "is required")
    if len(text) > 120:
        raise ValidationFailed.field("label", "must be at most 120 characters")
    return text


def do_create_custom_field(
    session: Session, actor: Actor, key: str, label: str, field_type: FieldType, options: list[str] | None = None
) -> CustomField:
    actor.require(Permission.MANAGE_CUSTOM_FIELDS)
    if not KEY_PATTERN.match(key):
        raise ValidationFailed.field(
            "key", "must start with a letter and use only lowercase letters, digits and _ (max 64)"
        )
    if key in RESERVED_KEYS:
        raise ValidationFailed.field("key", f"{key!r} is a standard field name")
    existing = repo.custom_fields(session, actor.workspace_id)
    if any(d.key == key for d in existing):
        raise Conflict(f"A custom field with key {key!r} already exists.", details={"key": "already exists"})
    if len(existing) >= MAX_CUSTOM_FIELDS:
        raise ValidationFailed.field("key", f"a workspace has at most {MAX_CUSTOM_FIELDS} custom fields")
    definition = CustomField(
        workspace_id=actor.workspace_id,
        key=key,
        label=check_label(label),
        type=field_type,
        options=check_options(field_type, options),
        position=max((d.position for d in existing), default=-1) + 1,
    )
    session.add(definition)
    session.flush()
    return definition


def access_custom_field(session: Session, actor: Actor, key: str) -> CustomField:
    actor.require(Permission.VIEW_CONTACTS)
    return found(repo.custom_field_by_key(session, actor.workspace_id, key), f"No custom field {key!r}.")


def do_update_custom_field(
    session: Session,
    actor: Actor,
    definition: CustomField,
    *,
    label: str | None = None,
    options: list[str] | None = None,
    position: int | None = None,
) -> CustomField:
    actor.require(Permission.MANAGE_CUSTOM_FIELDS)
    if label is not None:
        definition.label = check_label(label)
    if options is not None:
        # Removing an option does not rewrite stored values; filters on the old option keep working.
        definition.options = check_options(definition.type, options)
    if position is not None:
        definition.position = position
    session.flush()
    return definition


def do_delete_custom_field(session: Session, actor: Actor, definition: CustomField) -> None:
    actor.require(Permission.MANAGE_CUSTOM_FIELDS)
    repo.remove_custom_key(session, actor.workspace_id, definition.key)
    session.delete(definition)
    session.flush()


# ----- merge and split ----------------------------------------------------------------------

MERGEABLE_COLUMNS = ("first_name", "last_name", "email", "phone", "language", "country", "avatar_url", "assignee_id")
_COMPANION = {"first_name": "first_name_folded", "last_name": "last_name_folded", "phone": "phone_raw"}


def do_merge_contacts(
    session: Session, actor: Actor, survivor: Contact, other: Contact, take_from_other: Sequence[str] = ()
) -> Contact:
    """Fold `other` into `survivor`: the survivor keeps its values, except the fields listed in
    `take_from_other` and fields the survivor has empty. Tags, identities and history move over;
    `other` is deleted. The merge is logged on the survivor."""
    actor.require(Permission.MERGE_CONTACTS)
    if survivor.id == other.id:
        raise ValidationFailed.field("other", "cannot merge a contact with itself")
    picks = set(take_from_other)
    known = set(MERGEABLE_COLUMNS) | set((survivor.custom or {}).keys()) | set((other.custom or {}).keys())
    unknown = picks - known
    if unknown:
        raise ValidationFailed.field("take_from_other", f"unknown fields: {', '.join(sorted(unknown))}")
    changes: list[Change] = []
    moved_unique: dict[str, Any] = {}
    for column in MERGEABLE_COLUMNS:
        mine, theirs = getattr(survivor, column), getattr(other, column)
        if theirs is not None and (column in picks or mine is None) and mine != theirs:
            if column in ("email", "phone"):
                moved_unique[column] = theirs
            changes.append((column, mine, theirs))
    # Free unique values on the merged contact before the survivor takes them.
    if moved_unique:
        for column in moved_unique:
            setattr(other, column, None)
        session.flush()
    for column, _old, new in changes:
        setattr(survivor, column, new)
        companion = _COMPANION.get(column)
        if companion:
            source_value = getattr(other, companion) if column != "phone" else (other.phone_raw or new)
            setattr(survivor, companion, source_value if column == "phone" else fold_or_none(new))
    custom = dict(survivor.custom or {})
    for key, theirs in (other.custom or {}).items():
        mine = custom.get(key)
        if (key in picks or mine is None) and mine != theirs:
            changes.append((f"custom_fields.{key}", mine, theirs))
            custom[key] = theirs
    survivor.custom = custom
    survivor.custom_folded = folded_custom(custom)
    for timestamp in ("last_incoming_at", "last_outgoing_at"):
        values = [v for v in (getattr(survivor, timestamp), getattr(other, timestamp)) if v is not None]
        setattr(survivor, timestamp, max(values) if values else None)
    survivor_tags = repo.contact_tag_ids(session, survivor.id)
    for tag_id in repo.contact_tag_ids(session, other.id) - survivor_tags:
        session.add(ContactTag(contact_id=survivor.id, tag_id=tag_id))
    session.execute(
        update(ContactIdentity).where(ContactIdentity.contact_id == other.id).values(contact_id=survivor.id)
    )
    session.execute(
        update(ContactActivity).where(ContactActivity.contact_id == other.id).values(contact_id=survivor.id)
    )
    repo.move_merge_suggestions(session, actor.workspace_id, survivor.id, other.id)
    for hook in merge_hooks():
        hook(session, survivor.id, other.id)
    record_changes(session, actor, survivor.id, changes)
    record(session, actor, survivor.id, "merged", None, {"id": other.id, "name": other.full_name}, None)
    survivor.updated_at = utcnow()
    session.flush()
    session.delete(other)
    session.flush()
    return survivor


def do_split_identity(session: Session, actor: Actor, contact: Contact, identity_id: int) -> Contact:
    """Move one channel identity out into a new contact of its own."""
    actor.require(Permission.MERGE_CONTACTS)
    identity = session.scalar(
        select(ContactIdentity).where(
            ContactIdentity.id == identity_id,
            ContactIdentity.contact_id == contact.id,
            ContactIdentity.workspace_id == actor.workspace_id,
        )
    )
    if identity is None:
        raise NotFound(f"Contact id:{contact.id} has no identity {identity_id}.")
    name = identity.display_name or f"{identity.channel} {identity.external_id}"
    first, _, last = name.partition(" ")
    new_contact = Contact(
        workspace_id=actor.workspace_id,
        first_name=first or None,
        last_name=last or None,
        first_name_folded=fold_or_none(first or None),
        last_name_folded=fold_or_none(last or None),
        custom={},
    )
    session.add(new_contact)
    session.flush()
    identity.contact_id = new_contact.id
    record(session, actor, new_contact.id, "created")
    record(session, actor, new_contact.id, "split", None, {"id": contact.id}, {"identity": identity.id})
    record(
        session,
        actor,
        contact.id,
        "split",
        "identities",
        {"identity": identity.id, "channel": identity.channel},
        {"id": new_contact.id},
    )
    session.flush()
    return new_contact


# ----- reading ------------------------------------------------------------------------------


def contact_out(contact: Contact, tags: list[str]) -> ContactOut:
    return ContactOut(
        id=contact.id,
        first_name=contact.first_name,
        last_name=contact.last_name,
        email=contact.email,
        phone=contact.phone,
        phone_raw=contact.phone_raw,
        language=contact.language,
        country=contact.country,
        avatar_url=contact.avatar_url,
        assignee_id=contact.assignee_id,
        created_at=contact.created_at,
        updated_at=contact.updated_at,
        last_incoming_at=contact.last_incoming_at,
        last_outgoing_at=contact.last_outgoing_at,
        custom_fields=dict(contact.custom or {}),
        tags=tags,
        blocked=contact.blocked,
        blocked_at=contact.blocked_at,
        blocked_messages=contact.blocked_messages,
        last_blocked_at=contact.last_blocked_at,
    )


def contacts_out(session: Session, contacts: Sequence[Contact]) -> list[ContactOut]:
    tags = repo.tag_names_by_contact(session, [c.id for c in contacts])
    return [contact_out(c, tags.get(c.id, [])) for c in contacts]
