"""All SQL for contacts, tags, custom fields, identities and activity. Every query is workspace-scoped."""

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, Select, and_, bindparam, delete, func, or_, select, text
from sqlalchemy.orm import Session

from tertulia.contacts.models import (
    Contact,
    ContactActivity,
    ContactIdentity,
    ContactTag,
    CustomField,
    MergeSuggestion,
    Tag,
)
from tertulia.kit.text import fold

# Built once, its ids bound per call: the inbound writer asks it for every batch of messages, and
# building a statement and its cache key cost about half as much again as running it.
_CONTACTS_BY_IDENTITIES = (
    select(ContactIdentity.external_id, Contact)
    .join(Contact, Contact.id == ContactIdentity.contact_id)
    .where(
        ContactIdentity.workspace_id == bindparam("workspace_id"),
        ContactIdentity.channel == bindparam("channel"),
        ContactIdentity.external_id.in_(bindparam("external_ids", expanding=True)),
        Contact.workspace_id == bindparam("workspace_id"),
    )
)


def contacts_by_identities(
    session: Session, identities: Iterable[tuple[int, str, str]]
) -> dict[tuple[int, str, str], Contact]:
    """The contacts behind (workspace id, channel type, external id) identities, in one query per
    workspace and channel type."""
    groups: dict[tuple[int, str], list[str]] = defaultdict(list)
    for workspace_id, channel, external_id in identities:
        groups[(workspace_id, channel)].append(external_id)
    found: dict[tuple[int, str, str], Contact] = {}
    for (workspace_id, channel), external_ids in groups.items():
        rows = session.execute(
            _CONTACTS_BY_IDENTITIES,
            {"workspace_id": workspace_id, "channel": channel, "external_ids": external_ids},
        )
        for external_id, contact in rows:
            found[(workspace_id, channel, external_id)] = contact
    return found


def contact_by_id(session: Session, workspace_id: int, contact_id: int) -> Contact | None:
    return session.scalar(select(Contact).where(Contact.workspace_id == workspace_id, Contact.id == contact_id))


def contact_by_email(session: Session, workspace_id: int, email: str) -> Contact | None:
    return session.scalar(select(Contact).where(Contact.workspace_id == workspace_id, Contact.email == email))


def contact_by_phone(session: Session, workspace_id: int, phone: str) -> Contact | None:
    return session.scalar(select(Contact).where(Contact.workspace_id == workspace_id, Contact.phone == phone))


def escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def email_prefix(prefix: str) -> ColumnElement[bool]:
    """Emails starting with `prefix`. SQLite's LIKE is case-insensitive and so cannot use the binary
    (workspace_id, email) index; a range can. The LIKE keeps the meaning exact."""
    return and_(
        Contact.email >= prefix,
        Contact.email < prefix + "\U0010ffff",
        Contact.email.like(escape_like(prefix) + "%", escape="\\"),
    )


def search_clause(query: str) -> ColumnElement[bool] | None:
    """Search by name, email or phone, each an index-friendly prefix match where it can be."""
    cleaned = query.strip()
    if not cleaned:
        return None
    if "@" in cleaned:
        return email_prefix(cleaned.lower())
    digits = re.sub(r"\D", "", cleaned)
    if digits and re.fullmatch(r"[\d\s()+\-.]+", cleaned):
        return Contact.phone.like("%" + digits + "%")
    words = [escape_like(fold(word)) for word in cleaned.split()]
    per_word = [
        or_(
            Contact.first_name_folded.like(word + "%", escape="\\"),
            Contact.last_name_folded.like(word + "%", escape="\\"),
            Contact.email.like(word + "%", escape="\\"),
        )
        for word in words
    ]
    return and_(*per_word)


# The contact lists (all contacts, a segment's members) show this many rows a page.
CONTACTS_PAGE_SIZE = 50
# Tag pickers suggest at most this many existing tags.
TAG_SUGGESTIONS = 200


def contacts_page_query(
    workspace_id: int,
    *,
    after_id: int | None,
    limit: int,
    search: str | None = None,
    unassigned: bool = False,
    extra: ColumnElement[bool] | None = None,
) -> Select[Contact]:
    """Newest first, keyset on id. Fetches limit+1 so the caller knows whether a next page exists."""
    query = select(Contact).where(Contact.workspace_id == workspace_id)
    if after_id is not None:
        query = query.where(Contact.id < after_id)
    if search:
        clause = search_clause(search)
        if clause is not None:
            query = query.where(clause)
    if unassigned:
        query = query.where(Contact.assignee_id.is_(None))
    if extra is not None:
        query = query.where(extra)
    return query.order_by(Contact.id.desc()).limit(limit + 1)


def tag_names_by_contact(session: Session, contact_ids: Sequence[int]) -> dict[int, list[str]]:
    if not contact_ids:
        return {}
    rows = session.execute(
        select(ContactTag.contact_id, Tag.name)
        .join(Tag, Tag.id == ContactTag.tag_id)
        .where(ContactTag.contact_id.in_(contact_ids))
    )
    result: dict[int, list[str]] = defaultdict(list)
    for contact_id, name in rows:
        result[contact_id].append(name)
    # Sorted here, not in SQL: collations differ between SQLite and PostgreSQL.
    return {contact_id: sorted(names, key=fold) for contact_id, names in result.items()}


def tags_by_keys(session: Session, workspace_id: int, keys: Iterable[str]) -> dict[str, Tag]:
    wanted = list(set(keys))
    if not wanted:
        return {}
    rows = session.scalars(select(Tag).where(Tag.workspace_id == workspace_id, Tag.name_key.in_(wanted)))
    return {tag.name_key: tag for tag in rows}


def list_tags(session: Session, workspace_id: int) -> list[Tag]:
    return list(session.scalars(select(Tag).where(Tag.workspace_id == workspace_id).order_by(Tag.name_key)))


def tag_suggestions(session: Session, workspace_id: int) -> list[str]:
    return [tag.name for tag in list_tags(session, workspace_id)[:TAG_SUGGESTIONS]]


def tags_with_usage(session: Session, workspace_id: int) -> list[tuple[Tag, int]]:
    """Every tag of the workspace with how many contacts carry it (one grouped query)."""
    usage = (
        select(ContactTag.tag_id, func.count().label("n"))
        .join(Tag, Tag.id == ContactTag.tag_id)
        .where(Tag.workspace_id == workspace_id)
        .group_by(ContactTag.tag_id)
        .subquery()
    )
    rows = session.execute(
        select(Tag, func.coalesce(usage.c.n, 0))
        .outerjoin(usage, usage.c.tag_id == Tag.id)
        .where(Tag.workspace_id == workspace_id)
        .order_by(Tag.name_key)
    )
    return [(tag, int(count)) for tag, count in rows]


def contact_tag_ids(session: Session, contact_id: int) -> set[int]:
    return set(session.scalars(select(ContactTag.tag_id).where(ContactTag.contact_id == contact_id)))


def remove_contact_tags(session: Session, contact_id: int, tag_ids: Iterable[int]) -> None:
    session.execute(delete(ContactTag).where(ContactTag.contact_id == contact_id, ContactTag.tag_id.in_(list(tag_ids))))


def custom_fields(session: Session, workspace_id: int) -> list[CustomField]:
    return list(
        session.scalars(
            select(CustomField)
            .where(CustomField.workspace_id == workspace_id)
            .order_by(CustomField.position, CustomField.id)
        )
    )


def custom_field_by_key(session: Session, workspace_id: int, key: str) -> CustomField | None:
    return session.scalar(select(CustomField).where(CustomField.workspace_id == workspace_id, CustomField.key == key))


def remove_custom_key(session: Session, workspace_id: int, key: str) -> None:
    """Drop one key from every contact's custom values, set-based."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "UPDATE contacts SET custom = custom - :key, custom_folded = custom_folded - :key "
                "WHERE workspace_id = :ws AND custom ? :key"
            ),
            {"key": key, "ws": workspace_id},
        )
    else:
        session.execute(
            text(
                "UPDATE contacts SET custom = json_remove(custom, :path), "
                "custom_folded = json_remove(custom_folded, :path) "
                "WHERE workspace_id = :ws AND json_type(custom, :path) IS NOT NULL"
            ),
            {"path": f'$."{key}"', "ws": workspace_id},
        )


def identities(session: Session, contact_id: int) -> list[ContactIdentity]:
    return list(
        session.scalars(
            select(ContactIdentity).where(ContactIdentity.contact_id == contact_id).order_by(ContactIdentity.id)
        )
    )


def activity_page(session: Session, contact_id: int, *, before_id: int | None, limit: int) -> list[ContactActivity]:
    query = select(ContactActivity).where(ContactActivity.contact_id == contact_id)
    if before_id is not None:
        query = query.where(ContactActivity.id < before_id)
    return list(session.scalars(query.order_by(ContactActivity.id.desc()).limit(limit + 1)))


def count_contacts(session: Session, workspace_id: int) -> int:
    return int(
        session.scalar(select(func.count()).select_from(Contact).where(Contact.workspace_id == workspace_id)) or 0
    )


def contacts_by_full_name(
    session: Session, workspace_id: int, first_folded: str, last_folded: str, limit: int
) -> list[Contact]:
    """Contacts whose folded first and last names are exactly these, oldest first (indexed on the
    first name)."""
    return list(
        session.scalars(
            select(Contact)
            .where(
                Contact.workspace_id == workspace_id,
                Contact.first_name_folded == first_folded,
                Contact.last_name_folded == last_folded,
            )
            .order_by(Contact.id)
            .limit(limit)
        )
    )


def has_identity_on(session: Session, workspace_id: int, contact_id: int, channel: str) -> bool:
    found = session.scalar(
        select(ContactIdentity.id)
        .where(
            ContactIdentity.workspace_id == workspace_id,
            ContactIdentity.contact_id == contact_id,
            ContactIdentity.channel == channel,
        )
        .limit(1)
    )
    return found is not None


def merge_suggestion_for_pair(session: Session, workspace_id: int, low_id: int, high_id: int) -> MergeSuggestion | None:
    return session.scalar(
        select(MergeSuggestion).where(
            MergeSuggestion.workspace_id == workspace_id,
            MergeSuggestion.contact_id == low_id,
            MergeSuggestion.other_contact_id == high_id,
        )
    )


def merge_suggestions_of(
    session: Session, workspace_id: int, contact_id: int, status: str | None = None
) -> list[MergeSuggestion]:
    """The suggestions a contact is part of, on either side, oldest first."""
    query = select(MergeSuggestion).where(
        MergeSuggestion.workspace_id == workspace_id,
        or_(MergeSuggestion.contact_id == contact_id, MergeSuggestion.other_contact_id == contact_id),
    )
    if status is not None:
        query = query.where(MergeSuggestion.status == status)
    return list(session.scalars(query.order_by(MergeSuggestion.id)))


def move_merge_suggestions(session: Session, workspace_id: int, survivor_id: int, merged_id: int) -> None:
    """A merge: the pair's own suggestion goes, the merged contact's suggestions with third contacts
    become the survivor's (unless the survivor already has one with that contact)."""
    for row in merge_suggestions_of(session, workspace_id, merged_id):
        third = row.other_contact_id if row.contact_id == merged_id else row.contact_id
        if third == survivor_id:
            session.delete(row)
            continue
        low, high = sorted((survivor_id, third))
        if merge_suggestion_for_pair(session, workspace_id, low, high) is not None:
            session.delete(row)
            continue
        row.contact_id, row.other_contact_id = low, high
    session.flush()
