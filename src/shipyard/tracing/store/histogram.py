"""The latency histogram of the roll-ups: fixed log-scale buckets, so that minutes merge
by adding counts and p50/p90/p99 still come out after the raw spans are deleted.

Bucket 0 holds [0, 0.1 ms); bucket i >= 1 holds [0.1 * G**(i-1), 0.1 * G**i) ms with
G = 2**(1/4); the last bucket (about 55 minutes and up) is open. A percentile is the
geometric middle of its bucket: within G**0.5 (about 9 %) of the true value. A histogram
is kept sparse, as [[bucket, count], ...]."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

GROWTH = 2**0.25
FLOOR_MS = 0.1
SIZE = 102
_LOG_GROWTH = math.log(GROWTH)

# upper bounds in milliseconds, bucket by bucket (the last is +inf): for Prometheus
UPPER_MS: tuple[float, ...] = tuple(FLOOR_MS * GROWTH**i for i in range(SIZE - 1)) + (math.inf,)

Counts = dict[int, int]


def bucket(ms: float) -> int:
    if not ms >= FLOOR_MS:  # also NaN
        return 0
    if ms == math.inf:
        return SIZE - 1
    return min(SIZE - 1, int(math.log(ms / FLOOR_MS) / _LOG_GROWTH) + 1)


def middle(index: int) -> float:
    """The value a bucket stands for (milliseconds)."""
    if index <= 0:
        return FLOOR_MS / 2
    exponent = SIZE - 2 if index >= SIZE - 1 else index - 0.5
    return float(FLOOR_MS * GROWTH**exponent)


def add(counts: Counts, ms: float) -> None:
    index = bucket(ms)
    counts[index] = counts.get(index, 0) + 1


def merge(into: Counts, pairs: Iterable[Sequence[int]]) -> None:
    """Add [bucket, count] pairs (as `encode` wrote them, or `dict.items()`)."""
    get = into.get
    for index, count in pairs:  # ints: orjson reads them as ints
        into[index] = get(index, 0) + count


def encode(counts: Counts) -> list[list[int]]:
    return [[index, counts[index]] for index in sorted(counts)]


def percentile(counts: Counts, q: float) -> float | None:
    """The nearest-rank q-quantile (0 < q <= 1); None for an empty histogram."""
    total = sum(counts.values())
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return middle(index)
    return middle(max(counts))  # not reached


def percentiles(counts: Counts, qs: Sequence[float]) -> list[float | None]:
    """Several nearest-rank quantiles (ascending qs) in one pass."""
    total = sum(counts.values())
    if not total:
        return [None] * len(qs)
    ranks = [max(1, math.ceil(q * total)) for q in qs]
    found: list[float | None] = []
    want, seen = ranks[0], 0
    for index in sorted(counts):
        seen += counts[index]
        while seen >= want:
            found.append(_MIDDLES[min(max(index, 0), SIZE - 1)])
            if len(found) == len(ranks):
                return found
            want = ranks[len(found)]
    return found  # not reached: the last rank is at most the total


_MIDDLES = tuple(middle(i) for i in range(SIZE))
