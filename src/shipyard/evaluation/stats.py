"""The statistics evaluation reports: means with bootstrap confidence intervals,
percentiles, and paired comparisons of two runs on the same items (a paired bootstrap
of the mean difference, and an exact two-sided sign test over wins and losses).

Resampling is seeded, so the same scores always give the same interval. numpy is
imported on first use, not when the server starts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

RESAMPLES = 2000
SEED = 20261202


@dataclass(frozen=True, slots=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int


def mean_ci(values: Sequence[float], *, level: float = 0.95) -> Interval | None:
    """The mean and its percentile-bootstrap interval; None without values."""
    if not values:
        return None
    import numpy as np

    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) == 1:
        return Interval(mean, mean, mean, 1)
    rng = np.random.default_rng(SEED)
    means = _resampled_means(data, rng)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(mean, float(low), float(high), len(data))


def _resampled_means(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import numpy as np

    n = len(data)
    out = np.empty(RESAMPLES)
    step = max(1, 4_000_000 // n)  # resamples per block: bounded memory on large runs
    for start in range(0, RESAMPLES, step):
        k = min(step, RESAMPLES - start)
        idx = rng.integers(0, n, size=(k, n))
        out[start : start + k] = data[idx].mean(axis=1)
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


@dataclass(frozen=True, slots=True)
class Paired:
    """B against A on the items both scored: `diff` is mean(B - A) (its bootstrap
    interval `low`..`high`), wins/losses/ties from B's side (by the scorer's direction),
    `p_sign` the exact sign test's two-sided p-value, `p_bootstrap` the share of
    resampled mean differences on the other side of zero (two-sided)."""

    n: int
    diff: float
    low: float
    high: float
    wins: int
    losses: int
    ties: int
    p_sign: float
    p_bootstrap: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.n > 1 and self.p_bootstrap < alpha and not (self.low <= 0 <= self.high)


def paired(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool = True) -> Paired:
    if len(a) != len(b):
        raise ValueError("paired values must be as many on both sides")
    n = len(a)
    if n == 0:
        return Paired(0, 0.0, 0.0, 0.0, 0, 0, 0, 1.0, 1.0)
    import numpy as np

    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    sign = 1.0 if higher_is_better else -1.0
    wins = int((sign * d > 1e-12).sum())
    losses = int((sign * d < -1e-12).sum())
    ties = n - wins - losses
    diff = float(d.mean())
    if n == 1 or not d.any():
        return Paired(n, diff, diff, diff, wins, losses, ties, sign_test(wins, losses), 1.0)
    means = _resampled_means(d, np.random.default_rng(SEED))
    low, high = np.percentile(means, [2.5, 97.5])
    share = float(min((means <= 0).mean(), (means >= 0).mean()))
    return Paired(
        n, diff, float(low), float(high), wins, losses, ties, sign_test(wins, losses),
        min(1.0, 2 * share),
    )  # fmt: skip


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial sign test (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail: float = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def unpaired(a: Sequence[float], b: Sequence[float], *, level: float = 0.95) -> Interval | None:
    """The difference of means `mean(b) - mean(a)` of two independent samples (two arms
    of a canary, say) and its percentile-bootstrap interval (each arm resampled on its
    own); None when either side has no values."""
    if not a or not b:
        return None
    import numpy as np

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(y.mean() - x.mean())
    rng = np.random.default_rng(SEED)
    spread = _resampled_means(y, rng) - _resampled_means(x, rng)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(spread, [tail, 100 - tail])
    return Interval(diff, float(low), float(high), len(x) + len(y))
