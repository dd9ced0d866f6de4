"""Durations as fixed histograms, so medians and percentiles can be added up across rollup rows.

Every duration (seconds) falls into one bucket of EDGES; a rollup row per bucket keeps the exact
count and sum, so counts and averages are exact and a percentile is known to lie within its bucket.
The edges are whole seconds: every second up to 16 s, then each edge the previous one times 2^(1/8)
rounded down, up to a year, plus the response table's edges (30 s, 2, 5, 10, 30 min, 1 h) so that
table is exact. Consecutive edges differ by at most max(1 s, 9.1 % of the lower one)
(`tests/reports/test_histogram.py` checks it), which bounds the error of an estimated percentile:
the estimate and the true value lie in the same bucket.

The edges are part of the stored data: changing them needs the rollups rebuilt.
"""

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

RESPONSE_TABLE_EDGES: tuple[int, ...] = (30, 120, 300, 600, 1800, 3600)
_YEAR = 366 * 24 * 3600


def _edges() -> tuple[int, ...]:
    edges = set(range(0, 17))
    step = 2 ** (1 / 8)
    value = 16
    while value < _YEAR:
        value = math.floor(value * step)
        edges.add(value)
    edges.update(RESPONSE_TABLE_EDGES)
    return tuple(sorted(edges))


# Bucket i holds EDGES[i] <= seconds < EDGES[i + 1]; the last one everything from EDGES[-1] up.
EDGES: tuple[int, ...] = _edges()


def bucket_of(seconds: float) -> int:
    return max(0, bisect.bisect_right(EDGES, max(0.0, seconds)) - 1)


def bounds(bucket: int) -> tuple[float, float]:
    low = float(EDGES[bucket])
    high = float(EDGES[bucket + 1]) if bucket + 1 < len(EDGES) else math.inf
    return low, high


@dataclass(frozen=True)
class Stats:
    count: int
    average: float | None
    median: float | None
    p90: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"count": self.count, "average": self.average, "median": self.median, "p90": self.p90}


def percentile(buckets: Mapping[int, tuple[int, float]], fraction: float) -> float | None:
    """The nearest-rank percentile (the smallest value with at least `fraction` of the values at or
    below it), estimated from {bucket: (count, sum)}: the rank's bucket, interpolated linearly by
    the rank's place in it. The open last bucket answers its mean."""
    n = sum(count for count, _ in buckets.values())
    if n == 0:
        return None
    rank = max(1, math.ceil(fraction * n))
    seen = 0
    for bucket in sorted(buckets):
        count, total = buckets[bucket]
        if count == 0:
            continue
        if seen + count >= rank:
            low, high = bounds(bucket)
            if math.isinf(high):
                return total / count
            if count == 1:
                return total  # a bucket's only value is its sum
            return low + (high - low) * (rank - seen - 0.5) / count
        seen += count
    return None  # unreachable: rank <= n


def stats(buckets: Mapping[int, tuple[int, float]]) -> Stats:
    count = sum(c for c, _ in buckets.values())
    total = sum(t for _, t in buckets.values())
    return Stats(
        count=count,
        average=total / count if count else None,
        median=percentile(buckets, 0.5),
        p90=percentile(buckets, 0.9),
    )


def add(into: dict[int, tuple[int, float]], bucket: int, count: int, total: float) -> None:
    have = into.get(bucket, (0, 0.0))
    into[bucket] = (have[0] + count, have[1] + total)


def from_values(values: Iterable[float]) -> dict[int, tuple[int, float]]:
    buckets: dict[int, tuple[int, float]] = {}
    for value in values:
        add(buckets, bucket_of(value), 1, value)
    return buckets


def response_table(buckets: Mapping[int, tuple[int, float]]) -> list[int]:
    """Counts for < 30 s, 30 s-2 min, 2-5 min, 5-10 min, 10-30 min, 30 min-1 h, > 1 h (exact: each
    limit is an edge)."""
    counts = [0] * (len(RESPONSE_TABLE_EDGES) + 1)
    for bucket, (count, _) in buckets.items():
        low = EDGES[bucket]
        counts[bisect.bisect_right(RESPONSE_TABLE_EDGES, low)] += count
    return counts
