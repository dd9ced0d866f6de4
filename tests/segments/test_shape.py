"""The shape the compiler works from: ANDs and ORs flattened, one value list per field under each,
and the measure of value lists that can still meet in one index scan."""

from typing import Any

import pytest

from tertulia.kit.errors import ValidationFailed
from tertulia.segments.language import MAX_LIST_COMBINATIONS, CheckContext, check_filter
from tertulia.segments.shape import Constant, Junction, Leaf, Member, Negation, list_combinations, shape


def _country(*codes: str, operator: str = "is_any_of") -> dict[str, Any]:
    value: Any = codes[0] if operator == "is" else list(codes)
    return {"category": "contact_field", "field": "country", "operator": operator, "value": value}


def _named(text: str) -> dict[str, Any]:
    return {"category": "contact_field", "field": "first_name", "operator": "contains", "value": text}


def _check(raw: dict[str, Any], segments: dict[int, dict[str, Any]] | None = None) -> Any:
    return check_filter(raw, CheckContext(custom_fields={}, load_segment=(segments or {}).get))


def _group(match: str, *conditions: dict[str, Any]) -> dict[str, Any]:
    return {"match": match, "conditions": list(conditions)}


def test_lists_on_one_field_anded_become_their_intersection() -> None:
    tree = shape(_check({"groups": [_group("all", _country("MX", "ES", "US"), _country("ES", "MX", "AR"))]}))
    assert isinstance(tree, Member)
    assert tree.values == ("MX", "ES")


def test_anded_groups_are_flattened_before_merging() -> None:
    # 400 ANDed lists of 10 values each were 10^400 index scans on PostgreSQL; now one list.
    groups = [_group("all", *[_country("MX", f"A{i}", f"B{i}") for i in range(n, n + 20)]) for n in range(0, 400, 20)]
    tree = shape(_check({"match": "all", "groups": groups}))
    assert isinstance(tree, Member)
    assert tree.values == ("MX",)


def test_disjoint_anded_lists_match_no_one() -> None:
    tree = shape(_check({"groups": [_group("all", _country("MX"), _country("ES"), _named("ana"))]}))
    assert tree == Constant(False)


def test_lists_on_one_field_ored_become_their_union_and_is_counts_as_a_list() -> None:
    raw = {"groups": [_group("any", _country("MX", operator="is"), _named("ana"), _country("ES", "MX"))]}
    tree = shape(_check(raw))
    assert isinstance(tree, Junction)
    assert tree.join == "or"
    assert [type(child) for child in tree.children] == [Member, Leaf]
    first = tree.children[0]
    assert isinstance(first, Member)
    assert first.values == ("MX", "ES")


def test_a_segment_used_is_flattened_into_its_place_and_not_in_negates_it() -> None:
    segments = {7: {"groups": [_group("all", _country("MX", "ES"))]}}
    used = shape(_check({"groups": [_group("all", _country("ES", "US"), _segment("in", 7))]}, segments))
    assert isinstance(used, Member)
    assert used.values == ("ES",)
    excluded = shape(_check({"groups": [_group("all", _segment("not_in", 7))]}, segments))
    assert isinstance(excluded, Negation)
    assert isinstance(excluded.child, Member)


def _segment(operator: str, segment_id: int) -> dict[str, Any]:
    return {"category": "segment", "operator": operator, "value": segment_id}


def test_list_combinations_follow_one_branch_of_each_or() -> None:
    inner = {"groups": [_group("all", _country(*[f"B{i}" for i in range(300)]), _named("x"))]}
    other = {"groups": [_group("all", _country(*[f"C{i}" for i in range(200)]), _named("y"))]}
    raw = {
        "groups": [
            _group("all", _country(*[f"A{i}" for i in range(100)])),
            _group("any", _segment("in", 1), _segment("in", 2), _named("z")),
        ]
    }
    checked = _check(raw, {1: inner, 2: other})
    assert list_combinations(shape(checked)) == 100 * 300


def test_a_filter_whose_lists_multiply_past_the_limit_is_refused() -> None:
    inner = {"groups": [_group("all", _country(*[f"B{i}" for i in range(500)]), _named("x"))]}
    raw = {"groups": [_group("all", _country(*[f"A{i}" for i in range(500)])), _group("any", _segment("in", 1))]}
    # The segment's group is an AND with its own condition: it stays a branch below the top AND
    # only when there is something beside it in the OR.
    raw["groups"][1]["conditions"].append(_named("z"))
    with pytest.raises(ValidationFailed) as refused:
        _check(raw, {1: inner})
    assert refused.value.details == {
        "filter": (
            "value lists on one field that apply together (an all group inside an any group, or the segments it"
            f" uses) multiply to more than {MAX_LIST_COMBINATIONS} combinations; join them into one list"
        )
    }
