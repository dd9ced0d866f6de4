"""Branch conditions over the conversation a run is about and its assignee's activity status.

A branch's conditions are the segments' filter language, which is about contacts alone (a segment
has no conversation, and segments sit below the inbox). Like run variables (`language.VAR_PREFIX`),
these two workflow-only categories are checked here, against the workspace's channels, teams and
members, and then written as conditions on prefixed custom fields of the list kind, which the
segments' checker and evaluator already handle; the engine puts the run's conversation there.

    {"category": "conversation", "field": "status", "operator": "is", "value": "open"}
    {"category": "conversation", "field": "channel", "operator": "is_any_of", "value": [3, 4]}
    {"category": "conversation", "field": "assignee", "operator": "exists"}
    {"category": "conversation", "field": "opening_source", "operator": "is", "value": "broadcast_reply"}
    {"category": "assignee_status", "operator": "is", "value": "online"}

The conversation a run is about is the contact's open conversation (the one its steps act on),
else their latest one (a run started by "conversation closed" sees it closed). A run whose contact
has no conversation at all, or a conversation without an assignee, has no value there: "is"
matches nothing and "is not" / "is none of" everything, as for an empty contact field.

The opening source is who opened (or last reopened) the conversation, as stored on it
(`Conversation.opening_source`: the "conversation opened" trigger's sources); a conversation opened
before it was stored, whose opening the event log no longer had, has none.
"""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from tertulia.channels.models import Channel
from tertulia.contacts.models import FieldType
from tertulia.conversations.models import Conversation, ConversationStatus, OpeningSource
from tertulia.kit.text import fold
from tertulia.kit.types import is_id
from tertulia.segments.evaluator import ContactSnapshot
from tertulia.users.models import ActivityStatus, User

PREFIX = "wfconv__"
CONVERSATION = "conversation"
ASSIGNEE_STATUS = "assignee_status"
CATEGORIES = (CONVERSATION, ASSIGNEE_STATUS)
STATUSES = tuple(status.value for status in ConversationStatus)
ACTIVITY_STATUSES = tuple(status.value for status in ActivityStatus)
OPENING_SOURCES = tuple(source.value for source in OpeningSource)
MAX_VALUES = 100

CHOICE_OPS = ("is", "is_not", "is_any_of", "is_none_of")
# Operators by field ("assignee_status" is the category of its own, without a field).
OPERATORS: dict[str, tuple[str, ...]] = {
    "status": ("is", "is_not"),
    "channel": CHOICE_OPS,
    "channel_type": CHOICE_OPS,
    "team": (*CHOICE_OPS, "exists", "not_exists"),
    "assignee": (*CHOICE_OPS, "exists", "not_exists"),
    "opening_source": ("is", "is_not"),
    ASSIGNEE_STATUS: CHOICE_OPS,
}
FIELDS = tuple(name for name in OPERATORS if name != ASSIGNEE_STATUS)
# The fields whose values are ids of the workspace's rows.
ID_FIELDS = ("channel", "team", "assignee")


@dataclass(frozen=True)
class Known:
    """What the values may name: the workspace's channels (id -> type), teams and active members.
    None: not checked (a definition read back from storage was checked when it was saved)."""

    channel_types: Mapping[int, str] | None
    team_ids: frozenset[int] | None
    user_ids: frozenset[int] | None
    # Kinds of channel a condition may name even where the workspace has none yet.
    channel_kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConversationFacts:
    """What branch conditions see of the conversation a run is about."""

    status: str
    channel_id: int | None = None
    channel_type: str | None = None
    team_id: int | None = None
    assignee_id: int | None = None
    # The assignee's `users.activity_status` (online, away, busy, offline); None when unassigned.
    assignee_status: str | None = None
    # Who opened (or last reopened) it: OpeningSource's values; None when not recorded.
    opening_source: str | None = None

    def values(self) -> dict[str, str | None]:
        """By the field names of the conditions, as the text the list kind compares."""
        return {
            "status": self.status,
            "channel": _text(self.channel_id),
            "channel_type": self.channel_type,
            "team": _text(self.team_id),
            "assignee": _text(self.assignee_id),
            ASSIGNEE_STATUS: self.assignee_status,
            "opening_source": self.opening_source,
        }


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


def key(name: str) -> str:
    """The prefixed custom field key a field (or `assignee_status`) is evaluated as."""
    return f"{PREFIX}{name}"


FIELD_TYPES: dict[str, FieldType] = {key(name): FieldType.LIST for name in OPERATORS}


def _conditions(raw: Any) -> Iterator[tuple[int, int, Mapping[str, Any]]]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("groups"), list):
        return
    for g_index, group in enumerate(raw["groups"]):
        conditions = group.get("conditions") if isinstance(group, Mapping) else None
        for c_index, condition in enumerate(conditions if isinstance(conditions, list) else []):
            if isinstance(condition, Mapping) and condition.get("category") in CATEGORIES:
                yield g_index, c_index, condition


def uses(raw: Any) -> bool:
    """Whether a (raw) filter has a conversation or assignee status condition."""
    return next(_conditions(raw), None) is not None


def check(raw: Any, known: Known) -> dict[str, str]:
    """Errors of the filter's conversation and assignee status conditions, by path inside the
    filter (`groups[0].conditions[1].value`); the rest of the filter is the segments' checker's."""
    errors: dict[str, str] = {}
    for g_index, c_index, condition in _conditions(raw):
        path = f"groups[{g_index}].conditions[{c_index}]"
        for where, message in _check_one(condition, known).items():
            errors.setdefault(f"{path}.{where}", message)
    return errors


def _field_of(condition: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The condition's field name in OPERATORS, or None with the error at `field`."""
    field = condition.get("field")
    if condition.get("category") == ASSIGNEE_STATUS:
        if field is not None:
            return None, "an assignee_status condition has no field"
        return ASSIGNEE_STATUS, None
    if field not in FIELDS:
        return None, f"unknown conversation field {field!r}; use one of: {', '.join(FIELDS)}"
    return str(field), None


def _check_one(condition: Mapping[str, Any], known: Known) -> dict[str, str]:
    name, problem = _field_of(condition)
    if name is None:
        return {"field": problem or "unknown field"}
    operator, value = condition.get("operator"), condition.get("value")
    allowed = OPERATORS[name]
    if operator not in allowed:
        return {"operator": f"not valid here; use one of: {', '.join(allowed)}"}
    if operator in ("exists", "not_exists"):
        return {"value": f"{operator} takes no value"} if value is not None else {}
    if value is None:
        return {"value": "a value is required"}
    if operator in ("is", "is_not"):
        message = _check_value(name, value, known)
        return {"value": message} if message else {}
    if not isinstance(value, list) or not value:
        return {"value": "must be a non-empty list"}
    if len(value) > MAX_VALUES:
        return {"value": f"at most {MAX_VALUES} values"}
    for index, item in enumerate(value):
        message = _check_value(name, item, known)
        if message:
            return {f"value[{index}]": message}
    return {}


def _check_value(name: str, value: Any, known: Known) -> str | None:
    if name in ID_FIELDS and not is_id(value):
        return f"must be a {'user' if name == 'assignee' else name} id"
    if name == "status" and value not in STATUSES:
        return f"must be one of: {', '.join(STATUSES)}"
    if name == ASSIGNEE_STATUS and value not in ACTIVITY_STATUSES:
        return f"must be one of: {', '.join(ACTIVITY_STATUSES)}"
    if name == "opening_source" and value not in OPENING_SOURCES:
        return f"must be one of: {', '.join(OPENING_SOURCES)}"
    if name == "channel_type":
        kinds = sorted({*known.channel_kinds, *(known.channel_types or {}).values()})
        if not isinstance(value, str) or (known.channel_types is not None and value not in kinds):
            return f"must be a kind of channel: {', '.join(kinds)}"
    if name == "channel" and known.channel_types is not None and value not in known.channel_types:
        return f"no channel {value} in this workspace"
    if name == "team" and known.team_ids is not None and value not in known.team_ids:
        return f"no team {value} in this workspace"
    if name == "assignee" and known.user_ids is not None and value not in known.user_ids:
        return f"no member {value} in this workspace"
    return None


def rewritten(raw: Any) -> Any:
    """The filter with each (checked) conversation and assignee status condition written as one on
    its prefixed list field, so the segments' checker and evaluator handle it."""
    found = {(g, c): condition for g, c, condition in _conditions(raw)}
    if not found:
        return raw
    groups = []
    for g_index, group in enumerate(raw["groups"]):
        if not isinstance(group, Mapping) or not isinstance(group.get("conditions"), list):
            groups.append(group)
            continue
        conditions = []
        for c_index, condition in enumerate(group["conditions"]):
            original = found.get((g_index, c_index))
            if original is None:
                conditions.append(condition)
                continue
            name, _problem = _field_of(original)
            out: dict[str, Any] = {
                "category": "contact_field",
                "field": key(name or ""),
                "operator": original["operator"],
            }
            value = original.get("value")
            if isinstance(value, list):
                out["value"] = [str(item) for item in value]
            elif value is not None:
                out["value"] = str(value)
            conditions.append(out)
        groups.append({**group, "conditions": conditions})
    return {**raw, "groups": groups}


def with_facts(contact: ContactSnapshot, facts: ConversationFacts | None) -> ContactSnapshot:
    """The contact as a branch's filter sees it, with the conversation's facts in the prefixed fields."""
    custom = {k: v for k, v in contact.custom.items() if not k.startswith(PREFIX)}
    folded = {k: v for k, v in contact.custom_folded.items() if not k.startswith(PREFIX)}
    for name, value in (facts.values() if facts is not None else {}).items():
        if value is not None:
            custom[key(name)] = value
            folded[key(name)] = fold(value)
    return replace(contact, custom=custom, custom_folded=folded)


# ----- loading the facts ------------------------------------------------------------------------


def load(session: Session, contacts: Iterable[tuple[int, int]]) -> dict[int, ConversationFacts]:
    """The facts of the conversation each (contact id, workspace id) is about, by contact id, in one
    query: the open one, else the latest; with its channel's type and its assignee's status.
    Contacts without a conversation are missing."""
    pairs = sorted(set(contacts))
    if not pairs:
        return {}
    rank = (
        func.row_number()
        .over(
            partition_by=Conversation.contact_id,
            order_by=(case((Conversation.status == ConversationStatus.OPEN, 0), else_=1), Conversation.id.desc()),
        )
        .label("rank")
    )
    workspaces = sorted({workspace_id for _contact, workspace_id in pairs})
    ranked = (
        select(
            Conversation.contact_id,
            Conversation.status,
            Conversation.channel_id,
            Conversation.team_id,
            Conversation.assignee_id,
            Conversation.opening_source,
            rank,
        )
        .where(
            Conversation.contact_id.in_([contact_id for contact_id, _workspace in pairs]),
            Conversation.workspace_id.in_(workspaces),
        )
        .subquery()
    )
    query = (
        select(
            ranked.c.contact_id,
            ranked.c.status,
            ranked.c.channel_id,
            Channel.type,
            ranked.c.team_id,
            ranked.c.assignee_id,
            User.activity_status,
            ranked.c.opening_source,
        )
        .outerjoin(Channel, Channel.id == ranked.c.channel_id)
        .outerjoin(User, User.id == ranked.c.assignee_id)
        .where(ranked.c.rank == 1)
    )
    found: dict[int, ConversationFacts] = {}
    for contact_id, status, channel_id, channel_type, team_id, assignee_id, activity, source in session.execute(query):
        found[contact_id] = ConversationFacts(
            status=ConversationStatus(status).value,
            channel_id=channel_id,
            channel_type=channel_type,
            team_id=team_id,
            assignee_id=assignee_id,
            assignee_status=ActivityStatus(activity).value if assignee_id is not None and activity else None,
            opening_source=OpeningSource(source).value if source else None,
        )
    return found


class FactsCache:
    """The conversation facts of a batch's contacts, loaded for all of them in one query the first
    time a branch asks, and again for one contact after a run of theirs did something (an action
    may open, close or assign their conversation)."""

    def __init__(self, session: Session, contacts: Iterable[tuple[int, int]]) -> None:
        self.session = session
        self.contacts = set(contacts)
        self.loaded: dict[int, ConversationFacts | None] | None = None

    def get(self, contact_id: int, workspace_id: int) -> ConversationFacts | None:
        if self.loaded is None:
            self.contacts.add((contact_id, workspace_id))
            facts = load(self.session, self.contacts)
            self.loaded = {contact: facts.get(contact) for contact, _workspace in self.contacts}
        if contact_id not in self.loaded:
            self.loaded[contact_id] = load(self.session, [(contact_id, workspace_id)]).get(contact_id)
        return self.loaded[contact_id]

    def add(self, contacts: Iterable[tuple[int, int]]) -> None:
        """Contacts of runs claimed into the batch later: loaded when asked for (one query each)."""
        self.contacts.update(contacts)

    def forget(self, contact_id: int) -> None:
        if self.loaded is not None:
            self.loaded.pop(contact_id, None)
