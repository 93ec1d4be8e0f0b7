"""Is an observed traffic split consistent with the expected proportions? (pure Python)

The test: for every category, an exact two-sided binomial test of its count against its
expected share; the p-values are combined with a Bonferroni correction over the categories
that can vary (0 < share < 1; with exactly two of them the two tests are one and the same).
By the union bound a correct configuration fails with probability below `alpha` (1e-6),
exactly, with no large-sample approximation. A category that should get no traffic fails
on its first request.

`required_samples` says how many requests make a wrong answer fail with probability at
least `power`, where "wrong" means some category's share is off by `min_detectable_diff`
or more (e.g. 0.1: a 70/30 split when 80/20 was asked for). `split_matches` refuses to
pass a sample smaller than that, so a check cannot pass a wrong answer by sending too few.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping

ALPHA = 1e-6
POWER = 0.999
MIN_DIFF = 0.1


def _log_pmf(k: int, n: int, p: float) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


def _sum_away(x: int, n: int, p: float, step: int) -> float:
    """Sum pmf(x), pmf(x+step), ... away from the mode (terms only shrink), to precision."""
    term, total, k = math.exp(_log_pmf(x, n, p)), 0.0, x
    odds = p / (1 - p)
    while 0 <= k <= n and term > 0:
        total += term
        if term < total * 1e-17:
            break
        term *= (n - k) / (k + 1) * odds if step > 0 else k / (n - k + 1) / odds
        k += step
    return min(total, 1.0)


def tail_ge(x: int, n: int, p: float) -> float:
    """P(X >= x) for X ~ Binomial(n, p)."""
    if x <= 0:
        return 1.0
    if x > n or p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    mode = math.floor((n + 1) * p)
    return _sum_away(x, n, p, +1) if x >= mode else max(0.0, 1.0 - _sum_away(x - 1, n, p, -1))


def tail_le(x: int, n: int, p: float) -> float:
    """P(X <= x) for X ~ Binomial(n, p)."""
    if x < 0:
        return 0.0
    if x >= n or p <= 0:
        return 1.0
    if p >= 1:
        return 0.0
    mode = math.floor((n + 1) * p)
    return _sum_away(x, n, p, -1) if x <= mode else max(0.0, 1.0 - _sum_away(x + 1, n, p, +1))


def binomial_p_value(x: int, n: int, p: float) -> float:
    """Two-sided exact binomial p-value (twice the smaller tail, at most 1)."""
    return min(1.0, 2.0 * min(tail_le(x, n, p), tail_ge(x, n, p)))


def normalise(expected: Mapping[str, float]) -> dict[str, float]:
    """Weights (e.g. VirtualService weights 80/20) to proportions that sum to 1."""
    if any(w < 0 for w in expected.values()):
        raise ValueError("expected proportions must not be negative")
    total = float(sum(expected.values()))
    if total <= 0:
        raise ValueError("expected proportions must not all be zero")
    return {k: w / total for k, w in expected.items()}


def _tests(shares: dict[str, float]) -> int:
    """How many independent-ish tests the Bonferroni correction divides alpha by."""
    free = sum(1 for p in shares.values() if 0 < p < 1)
    return 1 if free <= 2 else free


def _critical(n: int, p: float, level: float) -> tuple[int, int]:
    """(lo, hi): the test rejects when count <= lo or count >= hi (each tail below level/2)."""
    lo_a, lo_b = -1, n  # largest x with P(X <= x) < level/2 lies in [lo_a, lo_b)
    while lo_b - lo_a > 1:
        mid = (lo_a + lo_b) // 2
        lo_a, lo_b = (mid, lo_b) if tail_le(mid, n, p) < level / 2 else (lo_a, mid)
    hi_a, hi_b = 0, n + 1  # smallest x with P(X >= x) < level/2 lies in (hi_a, hi_b]
    while hi_b - hi_a > 1:
        mid = (hi_a + hi_b) // 2
        hi_a, hi_b = (hi_a, mid) if tail_ge(mid, n, p) < level / 2 else (mid, hi_b)
    return lo_a, hi_b


def power_at(n: int, p0: float, p1: float, level: float) -> float:
    """Probability that one category's test rejects when its true share is p1, not p0."""
    lo, hi = _critical(n, p0, level)
    return min(1.0, (tail_le(lo, n, p1) if lo >= 0 else 0.0) + tail_ge(hi, n, p1))


def _z(q: float) -> float:
    """Upper standard-normal quantile: P(Z > z) = q."""
    a, b = -10.0, 40.0
    for _ in range(200):
        mid = (a + b) / 2
        a, b = (mid, b) if 0.5 * math.erfc(mid / math.sqrt(2)) > q else (a, mid)
    return (a + b) / 2


def _samples_for(p0: float, p1: float, level: float, power: float) -> int:
    guess = ((_z(level / 2) * math.sqrt(p0 * (1 - p0)) + _z(1 - power) * math.sqrt(p1 * (1 - p1)))
             / abs(p1 - p0)) ** 2
    lo, hi = 0, max(1, math.ceil(guess))
    while power_at(hi, p0, p1, level) < power:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power_at(mid, p0, p1, level) >= power else (mid, hi)
    return hi


def required_samples(expected: Mapping[str, float], min_detectable_diff: float = MIN_DIFF,
                     alpha: float = ALPHA, power: float = POWER) -> int:
    """Requests needed so a split off by `min_detectable_diff` in any category fails with `power`."""
    if not 0 < min_detectable_diff < 1:
        raise ValueError("min_detectable_diff must be between 0 and 1")
    shares = tuple(sorted(normalise(expected).values()))
    return _required(shares, min_detectable_diff, alpha, power)


@functools.lru_cache(maxsize=256)
def _required(shares: tuple[float, ...], min_detectable_diff: float, alpha: float, power: float) -> int:
    level = alpha / _tests(dict(enumerate(shares)))
    need = 1
    for p0 in shares:
        for p1 in (p0 - min_detectable_diff, p0 + min_detectable_diff):
            if 0 <= p1 <= 1:
                need = max(need, _samples_for(p0, p1, level, power))
    return need


def split_matches(counts: Mapping[str, int], expected: Mapping[str, float], alpha: float = ALPHA,
                  min_detectable_diff: float | None = MIN_DIFF) -> tuple[bool, float, str]:
    """(ok, p_value, explanation): do `counts` fit the `expected` shares at level `alpha`?"""
    shares = normalise(expected)
    for name in counts:
        shares.setdefault(name, 0.0)
    n = sum(int(counts.get(k, 0)) for k in shares)
    if n <= 0:
        return False, 0.0, "no requests were counted"
    tests = _tests(shares)
    worst, worst_p = "", 1.0
    for name, p0 in shares.items():
        p = binomial_p_value(int(counts.get(name, 0)), n, p0)
        if p < worst_p:
            worst, worst_p = name, p
    p_value = min(1.0, worst_p * tests)
    table = ", ".join(f"{k}: {int(counts.get(k, 0))}/{n} = {_pct(counts.get(k, 0) / n)} (expected {_pct(p)})"
                      for k, p in shares.items())
    if p_value < alpha:
        got = int(counts.get(worst, 0)) / n
        return False, p_value, (f"{worst} got {_pct(got)} of {n} requests, expected {_pct(shares[worst])} "
                                f"(p = {p_value:.2g} < {alpha:g}); {table}")
    if min_detectable_diff is not None:
        need = required_samples(expected, min_detectable_diff, alpha)
        if n < need:
            return False, p_value, (f"only {n} requests; at least {need} are needed to tell a split that is "
                                    f"off by {100 * min_detectable_diff:g} points; {table}")
    return True, p_value, f"consistent with the expected split (p = {p_value:.2g}); {table}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"
