"""A checked filter as the boolean tree the compiler turns into SQL: nested ANDs and ORs flattened,
and at most one list of values per field under each AND and each OR.

Why: PostgreSQL before version 17 scans a btree index once for every combination of the value lists
ANDed on one indexed column (`country = ANY(...) AND country = ANY(...) ...`). A filter of 400
`country is_any_of` conditions of 10 values, all ANDed, is 10^400 combinations: the planner's cost
estimate overflowed to NaN, it picked that index scan, and the executor iterated the combinations
without ever checking for interrupts, so `statement_timeout` and `pg_terminate_backend` were ignored
and the backend held up every `DROP DATABASE` of the server until it was killed.

Lists on one field ANDed are their intersection and ORed their union (`is` is a list of one value),
and every condition is two-valued, so merging them here is exact: the in-memory evaluator, which
walks the checked filter as written, must select the same contacts. What merging cannot remove is
a list that meets another list on the same field through an OR or a nested segment
(`country in A and (country in B or ...)`): PostgreSQL may still put both in one index scan, so
`list_combinations` measures the worst product of such lists, and the checker refuses a filter over
`MAX_LIST_COMBINATIONS` (language.py).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # language.py checks filters with this module, so it is only named here
    from tertulia.segments.language import CheckedFilter, Condition, FieldRef

Join = Literal["and", "or"]


@dataclass(frozen=True)
class Leaf:
    """A condition compiled on its own."""

    condition: "Condition"


@dataclass(frozen=True)
class Member:
    """The field has a value and it is one of `values` (`is`, `is_any_of` on list and code fields)."""

    field: "FieldRef"
    values: tuple[str, ...]


@dataclass(frozen=True)
class Junction:
    join: Join
    children: tuple["Node", ...]


@dataclass(frozen=True)
class Negation:
    child: "Node"


@dataclass(frozen=True)
class Constant:
    value: bool


Node = Leaf | Member | Junction | Negation | Constant

MEMBER_OPERATORS = ("is", "is_any_of")


def shape(checked: "CheckedFilter") -> Node:
    """The filter as a flattened tree with one value list per field under each junction."""
    groups = [_junction(group.match, [_condition(c) for c in group.conditions]) for group in checked.groups]
    return _junction(checked.match, groups)


def _condition(condition: "Condition") -> Node:
    if condition.category == "segment":
        nested = shape(condition.value)
        return nested if condition.operator == "in" else _negate(nested)
    field = condition.field
    if field is not None and field.kind in ("list", "code") and condition.operator in MEMBER_OPERATORS:
        return Member(field, tuple(dict.fromkeys(condition.value)))
    return Leaf(condition)


def _negate(node: Node) -> Node:
    if isinstance(node, Negation):
        return node.child
    if isinstance(node, Constant):
        return Constant(not node.value)
    return Negation(node)


def _junction(match: str, children: Iterable[Node]) -> Node:
    join: Join = "and" if match == "all" else "or"
    deciding = join == "or"  # the constant that decides the whole junction: false for AND, true for OR
    flat: list[Node] = []
    for child in children:
        if isinstance(child, Constant):
            if child.value == deciding:
                return child
            continue  # the neutral constant
        if isinstance(child, Junction) and child.join == join:
            flat.extend(child.children)  # already shaped: no constants, no same-join junctions inside
        else:
            flat.append(child)
    merged = _merge_lists(join, flat)
    if merged is None:
        return Constant(deciding)
    if not merged:
        return Constant(not deciding)
    if len(merged) == 1:
        return merged[0]
    return Junction(join, tuple(merged))


def _merge_lists(join: Join, children: Sequence[Node]) -> list[Node] | None:
    """One list per field, where that field's first list was; None when an AND's lists on one field
    share no value (the AND is false)."""
    values: dict[FieldRef, tuple[str, ...]] = {}
    for child in children:
        if isinstance(child, Member):
            known = values.get(child.field)
            if known is None:
                values[child.field] = child.values
            elif join == "and":
                kept = set(child.values)
                values[child.field] = tuple(value for value in known if value in kept)
            else:
                values[child.field] = tuple(dict.fromkeys((*known, *child.values)))
    if any(not kept for kept in values.values()):
        return None
    merged: list[Node] = []
    for child in children:
        if not isinstance(child, Member):
            merged.append(child)
        elif child.field in values:
            merged.append(Member(child.field, values.pop(child.field)))
    return merged


def list_combinations(node: Node) -> int:
    """The largest product of the lengths of value lists on one field that can meet in one index
    scan: lists ANDed together, through any depth of ORs and nested segments. (A negation is
    counted as if it were not there: PostgreSQL can turn a double negation back into a list.)"""
    return max(_worst_products(node).values(), default=0)


def _worst_products(node: Node) -> dict["FieldRef", int]:
    if isinstance(node, Member):
        return {node.field: len(node.values)}
    if isinstance(node, Negation):
        return _worst_products(node.child)
    if not isinstance(node, Junction):
        return {}
    worst: dict[FieldRef, int] = {}
    if node.join == "or":
        for child in node.children:
            for field, product in _worst_products(child).items():
                worst[field] = max(worst.get(field, 0), product)
        return worst
    # AND: the lists of its own conditions all meet, with those along one branch of one OR below.
    branch: dict[FieldRef, int] = {}
    for child in node.children:
        products = _worst_products(child)
        if isinstance(child, Junction):
            for field, product in products.items():
                branch[field] = max(branch.get(field, 0), product)
        else:
            for field, product in products.items():
                worst[field] = worst.get(field, 1) * product
    for field, product in branch.items():
        worst[field] = worst.get(field, 1) * product
    return worst


def tag_subqueries(node: Node) -> int:
    """How many tag conditions of the tree read contact_tags in a subquery."""
    if isinstance(node, Leaf):
        return int(node.condition.category == "tag" and node.condition.operator.startswith("has_"))
    if isinstance(node, Negation):
        return tag_subqueries(node.child)
    if isinstance(node, Junction):
        return sum(tag_subqueries(child) for child in node.children)
    return 0
