"""The uplift statistics: Wilson and Newcombe intervals at their known values and with their
promised coverage, Welch's interval against scipy's own, and the verdict's words."""

from __future__ import annotations

import random

import pytest
from scipy import stats

from engine.uplift import mean_difference, share_difference, verdict, wilson


def test_wilson_at_known_values():
    assert wilson(0, 10) == (0.0, pytest.approx(0.27753, abs=1e-5))  # the rule of three's kin
    lo, hi = wilson(81, 263)  # Wilson (1927) / Newcombe (1998) example: 0.2553 to 0.3662
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)


def test_newcombes_interval_covers_the_true_difference_95_times_in_100():
    rng = random.Random(17)
    p1, p0, n1, n0, reps = 0.30, 0.22, 150, 120, 2000
    covered = 0
    for _ in range(reps):
        x1 = sum(rng.random() < p1 for _ in range(n1))
        x0 = sum(rng.random() < p0 for _ in range(n0))
        c = share_difference(x1, n1, x0, n0)
        covered += c["low"] <= p1 - p0 <= c["high"]
    assert 0.93 <= covered / reps <= 0.97, covered / reps


def test_newcombe_at_the_edges_stays_within_minus_one_and_one():
    for x1, n1, x0, n0 in ((0, 5, 5, 5), (5, 5, 0, 5), (0, 1, 0, 1), (3, 3, 3, 3)):
        c = share_difference(x1, n1, x0, n0)
        assert -1 <= c["low"] <= c["difference"] <= c["high"] <= 1


def test_welch_interval_is_scipys():
    rng = random.Random(3)
    a = [rng.gauss(12, 5) for _ in range(40)]
    b = [rng.gauss(10, 9) for _ in range(25)]
    ours = mean_difference(a, b)
    theirs = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert ours is not None
    assert (ours["low"], ours["high"]) == (pytest.approx(theirs.low, abs=1e-4), pytest.approx(theirs.high, abs=1e-4))
    assert mean_difference([1.0], b) is None


def test_the_verdict_says_what_the_interval_says():
    c = share_difference(60, 200, 30, 200)
    assert verdict(c, 200, 200).startswith("it works: +15.0 points (95% CI")
    c = share_difference(41, 412, 4, 47)
    assert verdict(c, 412, 47).startswith("no measurable effect yet: 95% CI")
    assert verdict({}, 300, 0) == "no control group: 300 treated, none held out (set holdout on the policy)"
