"""The filter panel of the web app: the form a person edits, and its translation to and from the
filter language.

The panel is plain form fields (`g0.c1.op`, ...), re-rendered by the server whenever a picker changes,
so the Category and Operator pickers only ever offer what fits the field's type, and every rule lives
here rather than in browser code. Values are passed to the filter checker as typed (a number that is
not a number stays text) so that its 422 names the exact condition.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tertulia.segments.language import (
    MESSAGE_OPS,
    NO_VALUE_OPS,
    OPERATORS_BY_KIND,
    SEGMENT_OPS,
    STANDARD_FIELDS,
    TAG_OPS,
    UNITS,
)

AGO_OPS = ("less_than_ago", "more_than_ago")
MAX_PANEL_GROUPS = 20
MAX_PANEL_CONDITIONS = 50


@dataclass(frozen=True)
class FieldChoice:
    """A contact field the Category picker offers."""

    name: str
    label: str
    kind: str
    options: tuple[str, ...] = ()


@dataclass
class RawCondition:
    """One condition as the form holds it."""

    category: str = "field:first_name"  # "field:<name>", "tag", "last_incoming_message", ...
    # A new condition starts valid ("has a value"), so the count does not flash an error.
    operator: str = "exists"
    value: str = ""
    value2: str = ""
    values: list[str] = field(default_factory=list)
    amount: str = ""
    unit: str = "days"


@dataclass
class RawGroup:
    match: str = "all"
    conditions: list[RawCondition] = field(default_factory=list)


@dataclass
class RawFilter:
    match: str = "all"
    groups: list[RawGroup] = field(default_factory=list)

    @property
    def condition_count(self) -> int:
        return sum(len(g.conditions) for g in self.groups)


@dataclass(frozen=True)
class ChoiceCategory:
    """A category a caller adds to the Category picker, whose values are picked from a list (a
    workflow branch's conditions on the run's conversation): the filter JSON's `category` and
    `field`, its label, operators (with labels of their own where the usual ones read badly) and
    the values offered as (value, label)."""

    category: str
    field_name: str | None
    label: str
    operators: tuple[str, ...]
    choices: tuple[tuple[str, str], ...]
    operator_labels: Mapping[str, str] = field(default_factory=dict)
    # The values are ids, written as integers in the filter JSON.
    ids: bool = False


@dataclass
class Catalogue:
    """What the pickers may offer in this workspace."""

    fields: dict[str, FieldChoice]
    tags: list[str]
    segments: list[tuple[int, str]]
    people: dict[int, str]
    # A workflow's run variables by name ("text" or "number"), offered as `var:<name>` categories
    # and written as the workflows' `variable` conditions; segments have none.
    variables: dict[str, str] = field(default_factory=dict)
    # Categories of a workflow's branch by panel key (`conversation:status`), under their own
    # heading (`choice_group`); segments have none.
    choices: dict[str, ChoiceCategory] = field(default_factory=dict)
    choice_group: str = ""


def choice_key(category: str, field_name: str | None) -> str:
    """The panel's key of a ChoiceCategory: `conversation:status`, or `assignee_status`."""
    return f"{category}:{field_name}" if field_name else category


def kind_of(category: str, catalogue: Catalogue) -> str:
    if category in catalogue.choices:
        return "choice"
    if category.startswith("field:"):
        choice = catalogue.fields.get(category[6:])
        return choice.kind if choice else "text"
    if category.startswith("var:"):
        return "number" if catalogue.variables.get(category[4:]) == "number" else "text"
    return category  # "tag", "segment", "last_incoming_message", "last_outgoing_message"


def operators_for(category: str, catalogue: Catalogue) -> tuple[str, ...]:
    kind = kind_of(category, catalogue)
    if kind == "choice":
        return catalogue.choices[category].operators
    if kind == "tag":
        return TAG_OPS
    if kind == "segment":
        return SEGMENT_OPS
    if kind in ("last_incoming_message", "last_outgoing_message"):
        return MESSAGE_OPS
    return OPERATORS_BY_KIND.get(kind, OPERATORS_BY_KIND["text"])


def widget(category: str, operator: str, catalogue: Catalogue) -> str:
    """Which value input a condition shows."""
    if operator in NO_VALUE_OPS:
        return "none"
    kind = kind_of(category, catalogue)
    if operator in AGO_OPS:
        return "ago"
    if kind == "choice":
        return "choice" if operator in ("is", "is_not") else "choices"
    if kind == "tag":
        return "tags"
    if kind == "segment":
        return "segment"
    if kind == "assignee":
        return "assignee"
    if kind == "number":
        return "number_pair" if operator == "between" else "number"
    if kind in ("date", "datetime"):
        return "date_pair" if operator == "between" else "date"
    if kind == "list":
        return "option" if operator in ("is", "is_not") else "options"
    if kind == "code":
        return "text" if operator in ("is", "is_not") else "codes"
    return "text"


# ----- form -> raw ----------------------------------------------------------------------------

_ACTION = re.compile(r"^(add_condition|remove_group):(\d+)$|^remove:(\d+):(\d+)$|^add_group$")


def from_form(form: Mapping[str, Any], catalogue: Catalogue) -> RawFilter:
    """The panel's state from its submitted fields; unknown pickers fall back to the first choice."""

    def text(name: str) -> str:
        value = form.get(name, "")
        return value if isinstance(value, str) else ""

    def many(name: str) -> list[str]:
        getter = getattr(form, "getlist", None)
        items = getter(name) if getter else form.get(name, [])
        return [v for v in (items if isinstance(items, list) else [items]) if isinstance(v, str) and v]

    raw = RawFilter(match="any" if text("match") == "any" else "all")
    for g in range(MAX_PANEL_GROUPS):
        if f"g{g}.match" not in form:
            break
        group = RawGroup(match="any" if text(f"g{g}.match") == "any" else "all")
        for c in range(MAX_PANEL_CONDITIONS):
            prefix = f"g{g}.c{c}."
            if prefix + "cat" not in form:
                break
            condition = RawCondition(
                category=text(prefix + "cat"),
                operator=text(prefix + "op"),
                value=text(prefix + "value"),
                value2=text(prefix + "value2"),
                values=many(prefix + "values"),
                amount=text(prefix + "amount"),
                unit=text(prefix + "unit") or "days",
            )
            group.conditions.append(normalise(condition, catalogue))
        raw.groups.append(group)
    return raw


def normalise(condition: RawCondition, catalogue: Catalogue) -> RawCondition:
    valid = (
        {f"field:{name}" for name in catalogue.fields}
        | {
            "tag",
            "last_incoming_message",
            "last_outgoing_message",
            "segment",
        }
        | {f"var:{name}" for name in catalogue.variables}
        | set(catalogue.choices)
    )
    if condition.category not in valid:
        condition.category = "field:first_name"
    allowed = operators_for(condition.category, catalogue)
    if condition.operator not in allowed:
        condition.operator = allowed[0]
    if condition.unit not in UNITS:
        condition.unit = "days"
    return condition


def apply_action(raw: RawFilter, action: str, catalogue: Catalogue) -> RawFilter:
    """Add or remove a group or condition, as the panel's buttons ask."""
    match = _ACTION.match(action or "")
    if not match:
        return raw
    if action == "add_group":
        if len(raw.groups) < MAX_PANEL_GROUPS:
            raw.groups.append(RawGroup(conditions=[normalise(RawCondition(), catalogue)]))
    elif match.group(1) == "add_condition":
        index = int(match.group(2))
        if index < len(raw.groups) and len(raw.groups[index].conditions) < MAX_PANEL_CONDITIONS:
            raw.groups[index].conditions.append(normalise(RawCondition(), catalogue))
    elif match.group(1) == "remove_group":
        index = int(match.group(2))
        if index < len(raw.groups):
            del raw.groups[index]
    else:
        g, c = int(match.group(3)), int(match.group(4))
        if g < len(raw.groups) and c < len(raw.groups[g].conditions):
            del raw.groups[g].conditions[c]
            if not raw.groups[g].conditions:
                del raw.groups[g]
    return raw


# ----- raw -> filter JSON ---------------------------------------------------------------------


def _number(text: str) -> Any:
    cleaned = text.strip().replace(",", ".") if text.count(",") == 1 and "." not in text else text.strip()
    if not cleaned:
        return None
    try:
        number = float(cleaned)
    except ValueError:
        return text  # the checker says "must be a number" beside this condition
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _int_or_text(text: str) -> Any:
    stripped = text.strip()
    if not stripped:
        return None
    # isascii: str.isdigit() alone accepts "²", which int() refuses.
    return int(stripped) if stripped.isascii() and stripped.isdigit() else stripped


def condition_value(condition: RawCondition, catalogue: Catalogue) -> Any:
    kind = widget(condition.category, condition.operator, catalogue)
    value: Any
    match kind:
        case "none":
            value = None
        case "text" | "option" | "date":
            value = condition.value.strip() or None
        case "codes":
            value = [part.strip() for part in condition.value.split(",") if part.strip()] or None
        case "options" | "tags":
            value = list(condition.values) or None
        case "number":
            value = _number(condition.value)
        case "number_pair":
            value = [_number(condition.value), _number(condition.value2)]
            value = None if value == [None, None] else value
        case "date_pair":
            first, second = condition.value.strip(), condition.value2.strip()
            value = [first, second] if first or second else None
        case "ago":
            value = {"amount": _int_or_text(condition.amount), "unit": condition.unit}
            if value["amount"] is None:
                value = None
        case "assignee":
            value = "me" if condition.value == "me" else _int_or_text(condition.value)
        case "segment":
            value = _int_or_text(condition.value)
        case "choice" | "choices":
            ids = catalogue.choices[condition.category].ids
            picked = [condition.value] if kind == "choice" else condition.values
            items = [_int_or_text(item) if ids else item for item in picked if item.strip()]
            value = (items[0] if kind == "choice" else items) if items else None
        case _:
            value = condition.value or None
    return value


def to_filter(raw: RawFilter, catalogue: Catalogue) -> dict[str, Any]:
    groups = []
    for group in raw.groups:
        conditions = []
        for condition in group.conditions:
            out: dict[str, Any] = {"operator": condition.operator}
            if condition.category.startswith("field:"):
                out["category"] = "contact_field"
                out["field"] = condition.category[6:]
            elif condition.category.startswith("var:"):
                out["category"] = "variable"
                out["field"] = condition.category[4:]
            elif condition.category in catalogue.choices:
                choice = catalogue.choices[condition.category]
                out["category"] = choice.category
                if choice.field_name is not None:
                    out["field"] = choice.field_name
            else:
                out["category"] = condition.category
            value = condition_value(condition, catalogue)
            if value is not None:
                out["value"] = value
            conditions.append(out)
        groups.append({"match": group.match, "conditions": conditions})
    return {"match": raw.match, "groups": groups}


# ----- filter JSON -> raw ---------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def from_filter(stored: Mapping[str, Any] | None, catalogue: Catalogue) -> RawFilter:
    """A saved segment's filter as the panel shows it."""
    stored = stored or {}
    raw = RawFilter(match="any" if stored.get("match") == "any" else "all")
    groups = stored.get("groups")
    for group in groups if isinstance(groups, list) else []:
        if not isinstance(group, Mapping):
            continue
        raw_group = RawGroup(match="any" if group.get("match") == "any" else "all")
        conditions = group.get("conditions")
        for item in conditions if isinstance(conditions, list) else []:
            if not isinstance(item, Mapping):
                continue
            category = str(item.get("category", ""))
            if category == "contact_field":
                category = f"field:{item.get('field', '')}"
            elif category == "variable":
                category = f"var:{item.get('field', '')}"
            elif choice_key(category, _text(item.get("field")) or None) in catalogue.choices:
                category = choice_key(category, _text(item.get("field")) or None)
            condition = RawCondition(category=category, operator=str(item.get("operator", "")))
            value = item.get("value")
            if isinstance(value, Mapping):
                condition.amount = _text(value.get("amount"))
                condition.unit = str(value.get("unit", "days"))
            elif isinstance(value, list):
                kind = widget(category, condition.operator, catalogue)
                if kind in ("number_pair", "date_pair"):
                    condition.value = _text(value[0] if value else "")
                    condition.value2 = _text(value[1] if len(value) > 1 else "")
                elif kind == "codes":
                    condition.value = ", ".join(str(v) for v in value)
                else:
                    condition.values = [str(v) for v in value]
            else:
                condition.value = _text(value)
            # A condition on a field that no longer exists is kept visible, not silently dropped.
            if category.startswith("field:") and category[6:] not in catalogue.fields:
                catalogue.fields[category[6:]] = FieldChoice(category[6:], category[6:], "text")
            if category.startswith("var:") and category[4:] not in catalogue.variables:
                catalogue.variables[category[4:]] = "text"
            raw_group.conditions.append(normalise(condition, catalogue))
        if raw_group.conditions:
            raw.groups.append(raw_group)
    return raw


# ----- error paths ----------------------------------------------------------------------------

# A checker's path (`groups[1].conditions[0].value`), or the panel's own field name (`g1.c0.value`).
_CONDITION_PATH = re.compile(r"groups\[(\d+)\]\.conditions\[(\d+)\]|^g(\d+)\.c(\d+)\.")
_GROUP_PATH = re.compile(r"groups\[(\d+)\]|^g(\d+)\.")


def error_slots(details: Mapping[str, Any]) -> dict[str, str]:
    """Checker errors by where the panel shows them: `g1-c0` beside a condition, `g1` under a
    group, `filter` at the top."""
    slots: dict[str, str] = {}
    for path, message in details.items():
        if not isinstance(message, str):
            continue
        condition = _CONDITION_PATH.search(path)
        group = _GROUP_PATH.search(path)
        if condition:
            group_index, condition_index = [part for part in condition.groups() if part is not None]
            slot = f"g{group_index}-c{condition_index}"
        elif group:
            slot = f"g{next(part for part in group.groups() if part is not None)}"
        else:
            slot = "name" if path == "name" else "filter"
        slots.setdefault(slot, message)
    return slots


STANDARD_KINDS = {name: ref.kind for name, ref in STANDARD_FIELDS.items()}
