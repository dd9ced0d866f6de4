"""The filter language over one contact in memory: "does this contact match?" without a query.

Workflows ask it when a contact changes; "which segments is this contact in" asks it for every
saved segment after loading the contact once. It must agree with the SQL compiler on every input;
tests/segments/test_agreement.py checks that with generated contacts and filters on both databases.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tertulia.contacts.models import Contact
from tertulia.segments.language import CheckedFilter, CheckedGroup, Condition, FieldRef
from tertulia.segments.timing import EvalContext, date_range


@dataclass(frozen=True)
class ContactSnapshot:
    """What filters can see of a contact, as stored (names already folded, custom values typed)."""

    id: int
    workspace_id: int
    created_at: datetime
    updated_at: datetime
    first_name_folded: str | None = None
    last_name_folded: str | None = None
    email: str | None = None
    phone: str | None = None
    language: str | None = None
    country: str | None = None
    assignee_id: int | None = None
    last_incoming_at: datetime | None = None
    last_outgoing_at: datetime | None = None
    blocked: bool = False
    custom: Mapping[str, Any] = field(default_factory=dict)
    custom_folded: Mapping[str, Any] = field(default_factory=dict)
    tag_keys: frozenset[str] = frozenset()

    @classmethod
    def of(cls, contact: Contact, tag_keys: Iterable[str]) -> "ContactSnapshot":
        """`tag_keys` are the contact's tags' `name_key`s (folded names)."""
        return cls(
            id=contact.id,
            workspace_id=contact.workspace_id,
            created_at=contact.created_at,
            updated_at=contact.updated_at,
            first_name_folded=contact.first_name_folded,
            last_name_folded=contact.last_name_folded,
            email=contact.email,
            phone=contact.phone,
            language=contact.language,
            country=contact.country,
            assignee_id=contact.assignee_id,
            last_incoming_at=contact.last_incoming_at,
            last_outgoing_at=contact.last_outgoing_at,
            blocked=bool(contact.blocked),
            custom=dict(contact.custom or {}),
            custom_folded=dict(contact.custom_folded or {}),
            tag_keys=frozenset(tag_keys),
        )


def matches(checked: CheckedFilter, contact: ContactSnapshot, ctx: EvalContext) -> bool:
    """True when the contact is in the filter's set. Like the SQL, a contact of another workspace never is."""
    if contact.workspace_id != ctx.workspace_id:
        return False
    return Evaluator(ctx, contact).body(checked)


class Evaluator:
    def __init__(self, ctx: EvalContext, contact: ContactSnapshot) -> None:
        self.ctx = ctx
        self.contact = contact

    def body(self, checked: CheckedFilter) -> bool:
        if not checked.groups:
            return True
        results = (self.group(group) for group in checked.groups)
        return all(results) if checked.match == "all" else any(results)

    def group(self, group: CheckedGroup) -> bool:
        results = (self.condition(condition) for condition in group.conditions)
        return all(results) if group.match == "all" else any(results)

    def condition(self, condition: Condition) -> bool:
        if condition.category in ("tag", "segment"):
            name = f"{condition.category}_{condition.operator}"
        else:
            assert condition.field is not None
            name = f"{condition.field.kind}_{condition.operator}"
        method: Callable[[Condition], bool] | None = getattr(self, name, None)
        if method is None:
            raise ValueError(f"no evaluation for {condition.category} {name}")
        return method(condition)

    def value(self, ref: FieldRef | None) -> Any:
        assert ref is not None
        contact = self.contact
        if ref.source == "column":
            value = getattr(contact, ref.name)
            if ref.kind == "checkbox":
                return True if value else None  # as the SQL sees a boolean column
            return value
        if ref.kind in ("text", "list"):
            return contact.custom_folded.get(ref.name)
        raw = contact.custom.get(ref.name)
        if raw is None:
            return None
        if ref.kind == "number":
            return float(raw)
        if ref.kind == "checkbox":
            return raw is True
        return raw

    def _has(self, c: Condition, test: Callable[[Any], bool]) -> bool:
        value = self.value(c.field)
        return value is not None and test(value)

    def _lacks_or(self, c: Condition, test: Callable[[Any], bool]) -> bool:
        value = self.value(c.field)
        return value is None or test(value)

    def _exists(self, c: Condition) -> bool:
        return self.value(c.field) is not None

    def _not_exists(self, c: Condition) -> bool:
        return self.value(c.field) is None

    # text
    def text_is(self, c: Condition) -> bool:
        return self._has(c, lambda v: v == c.value)

    def text_is_not(self, c: Condition) -> bool:
        return self._lacks_or(c, lambda v: v != c.value)

    def text_contains(self, c: Condition) -> bool:
        return self._has(c, lambda v: c.value in v)

    def text_not_contains(self, c: Condition) -> bool:
        return self._lacks_or(c, lambda v: c.value not in v)

    def text_starts_with(self, c: Condition) -> bool:
        return self._has(c, lambda v: v.startswith(c.value))

    def text_ends_with(self, c: Condition) -> bool:
        return self._has(c, lambda v: v.endswith(c.value))

    text_exists = _exists
    text_not_exists = _not_exists

    # list and code
    def list_is(self, c: Condition) -> bool:
        return self._has(c, lambda v: v == c.value[0])

    def list_is_not(self, c: Condition) -> bool:
        return self._lacks_or(c, lambda v: v != c.value[0])

    def list_is_any_of(self, c: Condition) -> bool:
        return self._has(c, lambda v: v in c.value)

    def list_is_none_of(self, c: Condition) -> bool:
        return self._lacks_or(c, lambda v: v not in c.value)

    list_exists = _exists
    list_not_exists = _not_exists
    code_is = list_is
    code_is_not = list_is_not
    code_is_any_of = list_is_any_of
    code_is_none_of = list_is_none_of
    code_exists = _exists
    code_not_exists = _not_exists

    # number
    def number_eq(self, c: Condition) -> bool:
        return self._has(c, lambda v: v == c.value)

    def number_neq(self, c: Condition) -> bool:
        return self._lacks_or(c, lambda v: v != c.value)

    def number_gt(self, c: Condition) -> bool:
        return self._has(c, lambda v: v > c.value)

    def number_gte(self, c: Condition) -> bool:
        return self._has(c, lambda v: v >= c.value)

    def number_lt(self, c: Condition) -> bool:
        return self._has(c, lambda v: v < c.value)

    def number_lte(self, c: Condition) -> bool:
        return self._has(c, lambda v: v <= c.value)

    def number_between(self, c: Condition) -> bool:
        low, high = c.value
        return self._has(c, lambda v: low <= v <= high)

    number_exists = _exists
    number_not_exists = _not_exists

    # checkbox: value() gives True only for a ticked box, None when unset
    def checkbox_is_true(self, c: Condition) -> bool:
        return self.value(c.field) is True

    def checkbox_is_false(self, c: Condition) -> bool:
        return self.value(c.field) is not True

    # date and datetime
    def _in_range(self, c: Condition) -> bool:
        bounds = date_range(c, self.ctx)

        def test(v: Any) -> bool:
            if bounds.low is not None and not (v >= bounds.low if bounds.low_inclusive else v > bounds.low):
                return False
            return bounds.high is None or (v <= bounds.high if bounds.high_inclusive else v < bounds.high)

        return self._has(c, test)

    date_before = date_after = date_on = date_between = _in_range
    date_less_than_ago = date_more_than_ago = _in_range
    date_exists = _exists
    date_not_exists = _not_exists
    datetime_before = datetime_after = datetime_on = datetime_between = _in_range
    datetime_less_than_ago = datetime_more_than_ago = _in_range
    datetime_exists = _exists
    datetime_not_exists = _not_exists

    # assignee
    def _user_id(self, c: Condition) -> int | None:
        return self.ctx.me_user_id if c.value == "me" else int(c.value)

    def assignee_is(self, c: Condition) -> bool:
        user_id = self._user_id(c)
        return user_id is not None and self.contact.assignee_id == user_id

    def assignee_is_not(self, c: Condition) -> bool:
        user_id = self._user_id(c)
        return user_id is None or self.contact.assignee_id != user_id

    assignee_exists = _exists
    assignee_not_exists = _not_exists

    # tags
    def tag_has_any_of(self, c: Condition) -> bool:
        return any(key in self.contact.tag_keys for key in c.value)

    def tag_has_all_of(self, c: Condition) -> bool:
        return all(key in self.contact.tag_keys for key in c.value)

    def tag_has_none_of(self, c: Condition) -> bool:
        return not any(key in self.contact.tag_keys for key in c.value)

    def tag_exists(self, c: Condition) -> bool:
        return bool(self.contact.tag_keys)

    def tag_not_exists(self, c: Condition) -> bool:
        return not self.contact.tag_keys

    # segments
    def segment_in(self, c: Condition) -> bool:
        return self.body(c.value)

    def segment_not_in(self, c: Condition) -> bool:
        return not self.body(c.value)
