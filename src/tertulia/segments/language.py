"""The filter language: its JSON shape, its validation, and the checked tree the compiler and the
evaluator both walk.

A filter arrives as JSON (API, UI, workflows). `check_filter` turns it into a `CheckedFilter` whose
every condition names a known field with a known type, an operator valid for that type and a value
already normalised (folded text, parsed dates, tag keys). Anything it does not recognise is a
`ValidationFailed` naming the exact place (`groups[1].conditions[0].value`): an unknown field or
operator must never compile to a wider result than asked for.
"""

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from tertulia.contacts.fields import KIND_BY_TYPE, Kind
from tertulia.contacts.fields import STANDARD_FIELDS as CONTACT_FIELDS
from tertulia.contacts.models import FieldType
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.text import fold, name_key, tidy_name
from tertulia.kit.types import is_id
from tertulia.segments.shape import list_combinations, shape

MAX_GROUPS = 20
MAX_CONDITIONS = 50
MAX_VALUES = 500
MAX_SEGMENT_DEPTH = 5
# The whole filter with the segments it uses inlined, as compiled into one SQL statement: limits
# SQLite and PostgreSQL both accept (PostgreSQL takes at most 65,535 bound values per statement).
MAX_TOTAL_CONDITIONS = 1000
MAX_TOTAL_VALUES = 10_000
# Value lists on one field that PostgreSQL may put in one index scan cost one scan per combination of
# their values, and that loop does not check for cancellation: see shape.py.
MAX_LIST_COMBINATIONS = 100_000
UNITS = ("minutes", "hours", "days", "weeks", "months")
# About a century per unit, so every bound stays a representable date.
MAX_AMOUNT = {"minutes": 52_000_000, "hours": 876_000, "days": 36_500, "weeks": 5_200, "months": 1_200}
MIN_YEAR, MAX_YEAR = 1900, 9998
CUSTOM_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


# ----- the JSON shape -------------------------------------------------------------------------


class ConditionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str
    field: str | None = None
    operator: str
    value: Any = None


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: Literal["all", "any"] = "all"
    conditions: list[ConditionIn] = Field(default_factory=list)


class FilterIn(BaseModel):
    """The public filter JSON. `{}` (no groups) matches every contact of the workspace."""

    model_config = ConfigDict(extra="forbid")

    match: Literal["all", "any"] = "all"
    groups: list[GroupIn] = Field(default_factory=list)


# ----- the checked tree -----------------------------------------------------------------------

Source = Literal["column", "custom"]


@dataclass(frozen=True)
class FieldRef:
    source: Source  # "column": a Contact column; "custom": a key of Contact.custom
    name: str  # column name or custom key
    kind: Kind


@dataclass(frozen=True)
class Ago:
    amount: int
    unit: str


@dataclass(frozen=True)
class Condition:
    """One checked condition. `value` is normalised for its operator:

    text: folded str; list/code: tuple of str; number: float or (low, high); date ops: `date` or
    (date, date); ago: `Ago`; tag: tuple of tag keys; assignee: int or "me"; segment: CheckedFilter.
    """

    category: str
    operator: str
    field: FieldRef | None = None
    value: Any = None


@dataclass(frozen=True)
class CheckedGroup:
    match: str
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class CheckedFilter:
    match: str
    groups: tuple[CheckedGroup, ...]


# ----- operators per kind ---------------------------------------------------------------------

TEXT_OPS = ("is", "is_not", "contains", "not_contains", "starts_with", "ends_with", "exists", "not_exists")
NUMBER_OPS = ("eq", "neq", "gt", "gte", "lt", "lte", "between", "exists", "not_exists")
LIST_OPS = ("is", "is_not", "is_any_of", "is_none_of", "exists", "not_exists")
CHECKBOX_OPS = ("is_true", "is_false")
DATE_OPS = ("before", "after", "on", "between", "less_than_ago", "more_than_ago", "exists", "not_exists")
ASSIGNEE_OPS = ("is", "is_not", "exists", "not_exists")
TAG_OPS = ("has_any_of", "has_all_of", "has_none_of", "exists", "not_exists")
MESSAGE_OPS = ("less_than_ago", "more_than_ago", "exists", "not_exists")
SEGMENT_OPS = ("in", "not_in")

OPERATORS_BY_KIND: dict[str, tuple[str, ...]] = {
    "text": TEXT_OPS,
    "number": NUMBER_OPS,
    "list": LIST_OPS,
    "code": LIST_OPS,
    "checkbox": CHECKBOX_OPS,
    "date": DATE_OPS,
    "datetime": DATE_OPS,
    "assignee": ASSIGNEE_OPS,
}
NO_VALUE_OPS = frozenset({"exists", "not_exists", "is_true", "is_false"})

# The standard fields by their names in the filter language (contacts/fields.py says which).
STANDARD_FIELDS: dict[str, FieldRef] = {
    field.filter.name: FieldRef("column", field.filter.column, field.filter.kind)
    for field in CONTACT_FIELDS
    if field.filter is not None
}
MESSAGE_CATEGORIES = {
    "last_incoming_message": FieldRef("column", "last_incoming_at", "datetime"),
    "last_outgoing_message": FieldRef("column", "last_outgoing_at", "datetime"),
}
CATEGORIES = ("contact_field", "tag", *MESSAGE_CATEGORIES, "segment")
# Categories a workflow's branch conditions add (workflows/language.py, conversation_conditions.py)
# over a run's variables, its conversation and its assignee: a segment, like a trigger's conditions,
# is about contacts alone, so it refuses them by name rather than as unknown.
WORKFLOW_ONLY_CATEGORIES = ("variable", "conversation", "assignee_status")


def custom_field_ref(key: str, field_type: FieldType) -> FieldRef:
    if not CUSTOM_KEY.match(key):
        raise ValueError(f"not a custom field key: {key!r}")
    return FieldRef("custom", key, KIND_BY_TYPE[field_type])


# ----- validation -----------------------------------------------------------------------------

# Loads another saved segment's raw filter by id (None when there is no such segment in the workspace).
SegmentLoader = Callable[[int], Mapping[str, Any] | None]


@dataclass
class CheckContext:
    """What checking a filter needs from the workspace: its custom field types and its saved segments."""

    custom_fields: Mapping[str, FieldType]
    load_segment: SegmentLoader
    # The segment being saved (its own id may not appear inside it).
    self_segment_id: int | None = None


def _path_of(loc: tuple[int | str, ...], prefix: str) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "filter"


def parse_filter(raw: Any, prefix: str = "") -> FilterIn:
    """The JSON shape only; a 422 names the first bad place."""
    if raw is None:
        return FilterIn()
    if not isinstance(raw, Mapping):
        raise ValidationFailed.field(prefix or "filter", "must be an object with match and groups")
    try:
        return FilterIn.model_validate(raw)
    except PydanticValidationError as exc:
        details: dict[str, str] = {}
        for error in exc.errors():
            details.setdefault(_path_of(tuple(error["loc"]), prefix), error["msg"])
        message = "; ".join(f"{path}: {reason}" for path, reason in details.items())
        raise ValidationFailed(message, details=details) from exc


def parse_filter_param(text: str) -> Any:
    """A filter given as a URL query parameter (JSON text)."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValidationFailed.field("filter", "must be a JSON filter object") from exc


def check_filter(raw: Any, ctx: CheckContext, prefix: str = "") -> CheckedFilter:
    """Validate a filter against the workspace and return the checked tree."""
    checked = _Checker(ctx).filter(raw, prefix, ())
    _check_size(checked, prefix or "filter")
    if list_combinations(shape(checked)) > MAX_LIST_COMBINATIONS:
        raise ValidationFailed.field(
            prefix or "filter",
            f"value lists on one field that apply together (an all group inside an any group, or the segments it"
            f" uses) multiply to more than {MAX_LIST_COMBINATIONS} combinations; join them into one list",
        )
    return checked


def _check_size(checked: CheckedFilter, path: str) -> None:
    """The compiled statement's size: every condition, those of nested segments each time they are
    used, and every value. Stops counting at the first limit passed, so a deep nesting of large
    segments costs no more than the limits themselves."""
    conditions = values = 0
    pending = [checked]
    while pending:
        for group in pending.pop().groups:
            for condition in group.conditions:
                conditions += 1
                if condition.category == "segment":
                    pending.append(condition.value)
                else:
                    values += _value_count(condition.value)
                if conditions > MAX_TOTAL_CONDITIONS:
                    raise ValidationFailed.field(
                        path,
                        f"at most {MAX_TOTAL_CONDITIONS} conditions in all, counting those of the segments it uses",
                    )
                if values > MAX_TOTAL_VALUES:
                    raise ValidationFailed.field(
                        path, f"at most {MAX_TOTAL_VALUES} values in all, counting those of the segments it uses"
                    )


def _value_count(value: Any) -> int:
    if value is None:
        return 0
    return len(value) if isinstance(value, tuple) else 1


class _Checker:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.resolved: dict[int, CheckedFilter] = {}

    def filter(self, raw: Any, prefix: str, stack: tuple[int, ...]) -> CheckedFilter:
        parsed = parse_filter(raw, prefix)
        sep = "." if prefix else ""
        if len(parsed.groups) > MAX_GROUPS:
            raise ValidationFailed.field(f"{prefix}{sep}groups", f"at most {MAX_GROUPS} groups")
        groups: list[CheckedGroup] = []
        for g_index, group in enumerate(parsed.groups):
            g_path = f"{prefix}{sep}groups[{g_index}]"
            if not group.conditions:
                raise ValidationFailed.field(f"{g_path}.conditions", "a group needs at least one condition")
            if len(group.conditions) > MAX_CONDITIONS:
                raise ValidationFailed.field(f"{g_path}.conditions", f"at most {MAX_CONDITIONS} conditions")
            conditions = tuple(
                self.condition(condition, f"{g_path}.conditions[{c_index}]", stack)
                for c_index, condition in enumerate(group.conditions)
            )
            groups.append(CheckedGroup(match=group.match, conditions=conditions))
        return CheckedFilter(match=parsed.match, groups=tuple(groups))

    def condition(self, raw: ConditionIn, path: str, stack: tuple[int, ...]) -> Condition:
        category, operator = raw.category, raw.operator
        if category in WORKFLOW_ONLY_CATEGORIES:
            raise ValidationFailed.field(
                f"{path}.category",
                f"{category} conditions exist only in a workflow's branch step: a segment or a trigger's"
                " conditions are about the contact alone, without a run or a conversation",
            )
        if category not in CATEGORIES:
            raise ValidationFailed.field(f"{path}.category", f"unknown category; use one of: {', '.join(CATEGORIES)}")
        if category != "contact_field" and raw.field is not None:
            raise ValidationFailed.field(f"{path}.field", f"a {category} condition has no field")
        if category == "contact_field":
            ref = self.field(raw.field, f"{path}.field")
            allowed = OPERATORS_BY_KIND[ref.kind]
        elif category == "tag":
            ref, allowed = None, TAG_OPS
        elif category == "segment":
            ref, allowed = None, SEGMENT_OPS
        else:
            ref, allowed = MESSAGE_CATEGORIES[category], MESSAGE_OPS
        if operator not in allowed:
            raise ValidationFailed.field(f"{path}.operator", f"not valid here; use one of: {', '.join(allowed)}")
        v_path = f"{path}.value"
        if operator in NO_VALUE_OPS:
            if raw.value is not None:
                raise ValidationFailed.field(v_path, f"{operator} takes no value")
            return Condition(category, operator, ref, None)
        if raw.value is None:
            raise ValidationFailed.field(v_path, "a value is required")
        if category == "tag":
            return Condition(category, operator, None, _tag_keys(raw.value, v_path))
        if category == "segment":
            return Condition(category, operator, None, self.segment(raw.value, v_path, stack))
        assert ref is not None
        return Condition(category, operator, ref, _value(ref.kind, ref.name, operator, raw.value, v_path))

    def field(self, name: str | None, path: str) -> FieldRef:
        if not name:
            raise ValidationFailed.field(path, "a contact_field condition needs a field")
        standard = STANDARD_FIELDS.get(name)
        if standard is not None:
            return standard
        field_type = self.ctx.custom_fields.get(name)
        if field_type is None or not CUSTOM_KEY.match(name):
            raise ValidationFailed.field(path, f"unknown field {name!r}")
        return custom_field_ref(name, field_type)

    def segment(self, value: Any, path: str, stack: tuple[int, ...]) -> CheckedFilter:
        if not is_id(value):
            raise ValidationFailed.field(path, "must be a segment id")
        if value == self.ctx.self_segment_id or value in stack:
            raise ValidationFailed.field(path, f"segment {value} refers back to itself (a cycle)")
        if len(stack) >= MAX_SEGMENT_DEPTH:
            raise ValidationFailed.field(path, f"segments may nest at most {MAX_SEGMENT_DEPTH} deep")
        cached = self.resolved.get(value)
        if cached is not None:
            return cached
        raw = self.ctx.load_segment(value)
        if raw is None:
            raise ValidationFailed.field(path, f"no segment {value}")
        try:
            checked = self.filter(raw, "", (*stack, value))
        except ValidationFailed as exc:
            # The inner segment no longer validates (a custom field was deleted, or a cycle).
            raise ValidationFailed.field(path, f"segment {value} cannot be used: {exc.message}") from exc
        self.resolved[value] = checked
        return checked


def _tag_keys(value: Any, path: str) -> tuple[str, ...]:
    names = _string_list(value, path)
    return tuple(dict.fromkeys(name_key(tidy_name(name)) for name in names))


def _string_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValidationFailed.field(path, "must be a non-empty list of strings")
    if len(value) > MAX_VALUES:
        raise ValidationFailed.field(path, f"at most {MAX_VALUES} values")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ValidationFailed.field(f"{path}[{index}]", "must be a non-empty string")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed.field(path, "must be a non-empty string")
    if len(value) > 2000:
        raise ValidationFailed.field(path, "must be at most 2000 characters")
    return value


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationFailed.field(path, "must be a number")
    try:
        number = float(value)
    except OverflowError as exc:  # an integer beyond a float's range
        raise ValidationFailed.field(path, "must be a finite number") from exc
    if not math.isfinite(number):
        raise ValidationFailed.field(path, "must be a finite number")
    return number


def _date(value: Any, path: str) -> date:
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            parsed = date.fromisoformat(value.strip())
        except ValueError:
            pass
        else:
            if MIN_YEAR <= parsed.year <= MAX_YEAR:
                return parsed
            raise ValidationFailed.field(path, f"must be a date between the years {MIN_YEAR} and {MAX_YEAR}")
    raise ValidationFailed.field(path, "must be a date (YYYY-MM-DD)")


def _ago(value: Any, path: str) -> Ago:
    if not isinstance(value, Mapping) or set(value) != {"amount", "unit"}:
        raise ValidationFailed.field(path, 'must be {"amount": N, "unit": "minutes|hours|days|weeks|months"}')
    amount, unit = value["amount"], value["unit"]
    if unit not in UNITS:
        raise ValidationFailed.field(f"{path}.unit", f"must be one of: {', '.join(UNITS)}")
    limit = MAX_AMOUNT[unit]
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= limit:
        raise ValidationFailed.field(f"{path}.amount", f"must be a whole number from 0 to {limit}")
    return Ago(amount, unit)


def _pair(value: Any, path: str) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValidationFailed.field(path, "must be a list [low, high]")
    return value[0], value[1]


def _code(name: str, value: str) -> str:
    text = value.strip()
    return text.upper() if name == "country" else text.lower()


def _value(kind: str, name: str, operator: str, value: Any, path: str) -> Any:
    if kind == "text":
        return fold(_string(value, path))
    if kind in ("list", "code"):
        if operator in ("is", "is_not"):
            text = _string(value, path)
            return (_code(name, text) if kind == "code" else fold(text),)
        items = _string_list(value, path)
        return tuple(_code(name, item) if kind == "code" else fold(item) for item in items)
    if kind == "number":
        if operator == "between":
            low, high = _pair(value, path)
            return (_number(low, f"{path}[0]"), _number(high, f"{path}[1]"))
        return _number(value, path)
    if kind in ("date", "datetime"):
        if operator in ("less_than_ago", "more_than_ago"):
            return _ago(value, path)
        if operator == "between":
            low, high = _pair(value, path)
            first, last = _date(low, f"{path}[0]"), _date(high, f"{path}[1]")
            if first > last:
                raise ValidationFailed.field(path, "the first date must not be after the second")
            return (first, last)
        return _date(value, path)
    if kind == "assignee":
        if value == "me":
            return "me"
        if not is_id(value):
            raise ValidationFailed.field(path, 'must be a user id or "me"')
        return value
    raise AssertionError(f"unhandled kind {kind}")


def referenced_segment_ids(raw: Any) -> set[int]:
    """Ids of the segments a raw (already valid) filter refers to directly."""
    ids: set[int] = set()
    if not isinstance(raw, Mapping):
        return ids
    for group in raw.get("groups") or []:
        for condition in group.get("conditions") or []:
            value = condition.get("value")
            if condition.get("category") == "segment" and isinstance(value, int) and not isinstance(value, bool):
                ids.add(value)
    return ids


def depends_on_viewer(checked: CheckedFilter) -> bool:
    """True when the filter says `assignee is/is_not "me"`, so its result differs per user."""
    for group in checked.groups:
        for condition in group.conditions:
            if condition.category == "segment" and depends_on_viewer(condition.value):
                return True
            if condition.field is not None and condition.field.kind == "assignee" and condition.value == "me":
                return True
    return False
