"""Percentiles from the fixed histogram against exact nearest-rank percentiles of the same values,
and the error bound docs/reports.md promises."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tertulia.reports import histogram

durations = st.lists(
    st.one_of(st.floats(min_value=0, max_value=120), st.floats(min_value=0, max_value=40 * 24 * 3600)),
    min_size=1,
    max_size=300,
)


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def allowed_error(value: float) -> float:
    return max(1.0, 0.091 * value)


def test_consecutive_edges_are_within_one_second_or_nine_point_one_percent() -> None:
    for low, high in zip(histogram.EDGES, histogram.EDGES[1:], strict=False):
        assert high - low <= max(1, 0.091 * low), (low, high)
    assert set(histogram.RESPONSE_TABLE_EDGES) <= set(histogram.EDGES)


@settings(max_examples=200, deadline=None)
@given(durations, st.sampled_from([0.5, 0.9, 0.99]))
def test_an_estimated_percentile_is_within_the_bound(values: list[float], fraction: float) -> None:
    estimate = histogram.percentile(histogram.from_values(values), fraction)
    exact = nearest_rank(values, fraction)
    assert estimate is not None
    assert abs(estimate - exact) <= allowed_error(exact) + 1e-6, (estimate, exact)


@settings(max_examples=100, deadline=None)
@given(durations, durations)
def test_merging_rollup_rows_is_the_same_as_one_histogram_of_all_values(a: list[float], b: list[float]) -> None:
    merged: dict[int, tuple[int, float]] = {}
    for part in (histogram.from_values(a), histogram.from_values(b)):
        for bucket, (count, total) in part.items():
            histogram.add(merged, bucket, count, total)
    whole = histogram.stats(histogram.from_values(a + b))
    parts = histogram.stats(merged)
    assert parts.count == whole.count == len(a) + len(b)
    assert parts.median == whole.median
    assert parts.p90 == whole.p90
    assert parts.average is not None
    assert whole.average is not None
    assert math.isclose(parts.average, sum(a + b) / len(a + b), rel_tol=1e-9, abs_tol=1e-6)


@given(st.lists(st.floats(min_value=0, max_value=10 * 3600), max_size=200))
def test_the_response_table_is_exact(values: list[float]) -> None:
    limits = histogram.RESPONSE_TABLE_EDGES
    expected = [0] * (len(limits) + 1)
    for value in values:
        expected[sum(1 for limit in limits if value >= limit)] += 1
    assert histogram.response_table(histogram.from_values(values)) == expected


def test_no_values_no_statistics() -> None:
    assert histogram.stats({}).as_dict() == {"count": 0, "average": None, "median": None, "p90": None}
