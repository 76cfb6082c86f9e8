"""RFM: recency, frequency and monetary value scored 1-5 by quintile, and named segments.

Over the persons with at least one purchase as of T: recency is the days since the last purchase
(fewer is better), frequency the purchases, monetary the net revenue in the base currency. A score
says which fifth of the persons a value starts in, from the worst: 1 + floor(5 * k / n), where k
is the number of persons with a strictly worse value. Equal values share a score (two customers
with one purchase each are never told apart by the order they were listed in); so when many share
the worst value, the next value up starts higher (with 60% at one purchase, two purchases score 4).
The code is the three digits; the segment is the first of the configured segments that covers the
scores, in their order (engine.rules.DEFAULT_RFM_SEGMENTS cover every score), else "Other"."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from ..rules import RfmSegment

OTHER = "Other"


@dataclass(frozen=True)
class Rfm:
    recency_days: float
    frequency: int
    monetary: float
    r: int
    f: int
    m: int
    segment: str

    @property
    def code(self) -> str:
        return f"{self.r}{self.f}{self.m}"


def _scores(values: Sequence[float]) -> list[int]:
    """Each value's score, higher values better: 1 + floor(5 * (values strictly below) / n)."""
    ordered = sorted(values)
    n = len(ordered)
    return [1 + (5 * bisect_left(ordered, v)) // n for v in values]


def thresholds(values: Sequence[float]) -> tuple[float, float, float, float]:
    """The population's cut points for scores 2..5 (higher values better): a value scores
    1 + (the cut points it is above). For any value of the population this is its score by
    _scores; for a value outside it, the score it would have had among them. Kept with a value
    model, so one person's RFM against a fixed population needs nobody else's data."""
    ordered = sorted(values)
    n = len(ordered)
    # score >= s  <=>  5k/n >= s-1  <=>  k >= ceil((s-1)n/5), k the values strictly below:
    # the value must be above the ceil((s-1)n/5)-th smallest.
    cut = [ordered[math.ceil(round((s - 1) * n / 5, 9)) - 1] for s in range(2, 6)]
    return cut[0], cut[1], cut[2], cut[3]


def score_against(value: float, cuts: Sequence[float]) -> int:
    return 1 + sum(1 for c in cuts if value > c)


def score_rfm(rows: dict[str, tuple[float, int, float]], segments: Sequence[RfmSegment]) -> dict[str, Rfm]:
    """RFM of each person from (recency in days, purchases, monetary in the base currency)."""
    people = sorted(rows)
    if not people:
        return {}
    r = _scores([-rows[p][0] for p in people])  # fewer days since the last purchase is better
    f = _scores([rows[p][1] for p in people])
    m = _scores([rows[p][2] for p in people])
    out = {}
    for i, p in enumerate(people):
        segment = next((s.name for s in segments if s.covers(r[i], f[i], m[i])), OTHER)
        out[p] = Rfm(rows[p][0], rows[p][1], rows[p][2], r[i], f[i], m[i], segment)
    return out


def pareto_share(revenues: Sequence[float], top: float = 0.2) -> float | None:
    """The share of the total net revenue that the top ceil(top * n) persons bring (ranked by net
    revenue): the Pareto figure. None when the total is not positive."""
    ranked = sorted(revenues, reverse=True)
    total = sum(ranked)
    if not ranked or total <= 0:
        return None
    k = max(1, math.ceil(round(len(ranked) * top, 9)))  # 0.2 * 10 is 2.0000000000000004 in floats
    return sum(ranked[:k]) / total
