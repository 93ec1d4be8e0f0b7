"""The traffic-split test: exact tails, false-positive and false-negative rates by simulation."""

import math
import random
from collections import Counter

import pytest

from meshlab.checks.stats import (binomial_p_value, normalise, required_samples, split_matches, tail_ge,
                                  tail_le)


def _pmf(k, n, p):
    return math.comb(n, k) * p ** k * (1 - p) ** (n - k)


@pytest.mark.parametrize("n", [0, 1, 7, 40])
@pytest.mark.parametrize("p", [0.0, 0.05, 0.5, 0.8, 1.0])
def test_tails_match_brute_force(n, p):
    for x in range(-1, n + 2):
        assert tail_ge(x, n, p) == pytest.approx(sum(_pmf(k, n, p) for k in range(max(x, 0), n + 1)), abs=1e-12)
        assert tail_le(x, n, p) == pytest.approx(sum(_pmf(k, n, p) for k in range(0, min(x, n) + 1)), abs=1e-12)


def test_far_tail_keeps_relative_precision():
    exact = sum(_pmf(k, 200, 0.2) for k in range(120, 201))
    assert tail_ge(120, 200, 0.2) == pytest.approx(exact, rel=1e-9)
    assert binomial_p_value(40, 200, 0.2) == 1.0


def test_normalise_weights_and_rejects_bad_input():
    assert normalise({"v1": 80, "v2": 20}) == {"v1": 0.8, "v2": 0.2}
    with pytest.raises(ValueError):
        normalise({"v1": -1, "v2": 2})
    with pytest.raises(ValueError):
        normalise({"v1": 0})


def test_required_samples_grows_as_the_difference_shrinks():
    coarse, fine = required_samples({"v1": 80, "v2": 20}, 0.1), required_samples({"v1": 80, "v2": 20}, 0.05)
    assert 500 < coarse < 3000
    assert fine > 3 * coarse
    assert required_samples({"a": 1, "b": 1, "c": 1}, 0.1) > required_samples({"a": 1, "b": 2}, 0.2)
    with pytest.raises(ValueError):
        required_samples({"a": 1, "b": 1}, 0)


def _draws(rng, shares, n, runs):
    names = list(shares)
    cum, total = [], 0.0
    for name in names:
        total += shares[name]
        cum.append(total)
    for _ in range(runs):
        yield Counter(rng.choices(names, cum_weights=cum, k=n))


@pytest.mark.parametrize("expected", [{"v1": 80, "v2": 20}, {"v1": 1, "v2": 1, "v3": 1}, {"v1": 0.5, "v2": 0.3, "v3": 0.2}])
def test_correct_splits_pass(expected):
    rng = random.Random(1)
    shares = normalise(expected)
    n = required_samples(expected)
    failures = [c for c in _draws(rng, shares, n, 400) if not split_matches(c, expected)[0]]
    assert failures == []


def test_false_positive_rate_is_at_most_alpha():
    rng = random.Random(2)
    expected = {"v1": 0.7, "v2": 0.2, "v3": 0.1}
    rejected = sum(not split_matches(c, expected, alpha=0.01, min_detectable_diff=None)[0]
                   for c in _draws(rng, expected, 300, 3000))
    assert rejected / 3000 <= 0.01 + 0.006  # the test is valid (conservative) at any alpha


@pytest.mark.parametrize("expected, wrong", [
    ({"v1": 80, "v2": 20}, {"v1": 0.7, "v2": 0.3}),
    ({"v1": 1, "v2": 1, "v3": 1}, {"v1": 0.4333, "v2": 0.2833, "v3": 0.2834}),
    ({"v1": 90, "v2": 10}, {"v1": 1.0, "v2": 0.0}),
])
def test_wrong_splits_fail(expected, wrong):
    rng = random.Random(3)
    n = required_samples(expected)
    passed = sum(split_matches(c, expected)[0] for c in _draws(rng, wrong, n, 400))
    assert passed <= 2  # power 0.999: expect 0.4 of 400


def test_traffic_to_an_unexpected_category_fails_at_once():
    ok, p, why = split_matches({"v1": 1500, "v2": 400, "v3": 1}, {"v1": 80, "v2": 20})
    assert not ok and p == 0.0 and "v3" in why


def test_too_few_requests_never_pass():
    ok, p, why = split_matches({"v1": 80, "v2": 20}, {"v1": 80, "v2": 20})
    assert not ok and p == 1.0
    assert f"at least {required_samples({'v1': 80, 'v2': 20})}" in why
    assert split_matches({"v1": 80, "v2": 20}, {"v1": 80, "v2": 20}, min_detectable_diff=None)[0]


def test_explanations_name_the_categories():
    ok, _, why = split_matches({"v1": 950, "v2": 250}, {"v1": 80, "v2": 20})
    assert ok and "consistent" in why and "v2: 250/1200" in why
    ok, _, why = split_matches({"v1": 800, "v2": 400}, {"v1": 80, "v2": 20})
    assert not ok and "expected 80.0%" in why
    assert split_matches({}, {"v1": 1}) == (False, 0.0, "no requests were counted")
