"""The predictive value model: BG/NBD for how often a person will buy and Gamma-Gamma for what they
will spend, fitted to the persons' transactions up to a calibration end, and the predictions per
person as of T (P(alive), expected transactions, expected spend, CLV, value segment).

Conventions (the paper's): a transaction is a person's purchases on one calendar day (UTC), their
net amounts in the base currency summed (an amount with no rate counts 0 here, the purchase still
counts); time in weeks (days / 7); x = repeat transactions (after the first), t_x = weeks from the
first to the last transaction, T = weeks from the first transaction to the end of the period.
A fitted model is a fact (engine.value_view keeps it in the store): its id is a hash of the data
it was fitted to and of its parameters, so a score names the model that made it."""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime
from typing import Any

import numpy as np
import orjson

from ..projections.facts import Facts
from ..rules import ValueRules, ValueSegment
from . import bgnbd, gamma_gamma
from .bgnbd import BgNbd
from .gamma_gamma import GammaGamma
from .history import transactions
from .rfm import score_against, thresholds

MONTH_WEEKS = 365.25 / 12 / 7
FREQUENCIES = 8  # the holdout table's rows: 0, 1, ..., 6 repeat transactions, then "7+"


@dataclass(frozen=True)
class Row:
    """A person's transactions summarised at the end of a period (weeks)."""

    x: int  # repeat transactions
    t_x: float  # first to last transaction
    T: float  # first transaction to the end of the period
    m: float  # average value of the repeat transactions (0 without one)


def summarise(days: Sequence[tuple[date, float]], end: date) -> Row | None:
    """The row of a person's transactions on or before `end`; None without one."""
    kept = [(d, a) for d, a in days if d <= end]
    if not kept:
        return None
    first, last = kept[0][0], kept[-1][0]
    x = len(kept) - 1
    m = sum(a for _, a in kept[1:]) / x if x else 0.0
    return Row(x, (last - first).days / 7, (end - first).days / 7, m)


@dataclass(frozen=True)
class Horizon:
    """What a prediction looks ahead to, fixed with the model (from [value] when it was fitted)."""

    expected_weeks: float  # expected transactions over these next weeks
    clv_months: int  # CLV over these months, each discounted at the annual rate (compounded monthly)
    annual_discount_rate: float

    @classmethod
    def of(cls, rules: ValueRules) -> Horizon:
        return cls(rules.expected_weeks, rules.clv_months, rules.annual_discount_rate)


@dataclass(frozen=True)
class Model:
    model_id: str
    calibration_end: date
    base_currency: str
    persons: int  # fitted to (a transaction by the calibration end)
    spenders: int  # the Gamma-Gamma's persons (a repeat transaction of positive value)
    data_digest: str  # of the rows it was fitted to
    bgnbd: BgNbd
    gamma_gamma: GammaGamma | None  # None when nobody had a repeat transaction
    horizon: Horizon
    # The value segments, best first, each with the lowest CLV in it among the persons fitted to
    # (at the calibration end); a person as of T is in the first whose lowest CLV theirs reaches.
    segments: tuple[tuple[str, float | None], ...]  # None: nobody was in it
    rest_segment: str
    # RFM cut points of the persons fitted to, at the calibration end (engine.value.rfm.thresholds):
    # for scores 2..5, days since the last purchase (fewer is better), purchases, net revenue.
    rfm_cuts: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] = ((), (), ())

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "calibration_end": self.calibration_end.isoformat(),
            "base_currency": self.base_currency,
            "customers": self.persons,
            "spenders": self.spenders,
            "data_digest": self.data_digest,
            "bgnbd": self.bgnbd.as_dict(),
            "gamma_gamma": None if self.gamma_gamma is None else self.gamma_gamma.as_dict(),
            "horizon": asdict(self.horizon),
            "value_segments": [{"name": n, "min_clv": c} for n, c in self.segments],
            "rest_segment": self.rest_segment,
            "rfm_cuts": dict(zip(("recency_days", "frequency", "monetary"), (list(c) for c in self.rfm_cuts))),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Model:
        gg = d["gamma_gamma"]
        return cls(
            model_id=d["model_id"],
            calibration_end=date.fromisoformat(d["calibration_end"]),
            base_currency=d["base_currency"],
            persons=d["customers"],
            spenders=d["spenders"],
            data_digest=d["data_digest"],
            bgnbd=BgNbd(**d["bgnbd"]),
            gamma_gamma=None if gg is None else GammaGamma(**gg),
            horizon=Horizon(**d["horizon"]),
            segments=tuple((s["name"], s["min_clv"]) for s in d["value_segments"]),
            rest_segment=d["rest_segment"],
            rfm_cuts=(
                tuple(d["rfm_cuts"]["recency_days"]),
                tuple(d["rfm_cuts"]["frequency"]),
                tuple(d["rfm_cuts"]["monetary"]),
            ),
        )

    @property
    def segment_names(self) -> list[str]:
        """Its value segments, best first, then the rest."""
        return [name for name, _ in self.segments] + [self.rest_segment]

    def segment_of(self, clv: float | None) -> str:
        if clv is None:
            return self.rest_segment
        return next((name for name, lowest in self.segments if lowest is not None and clv >= lowest), self.rest_segment)

    def rfm_scores(self, recency_days: float, purchases: int, monetary: float) -> tuple[int, int, int] | None:
        """A person's RFM scores among the persons the model was fitted to (their quintiles at the
        calibration end): the same scores `score_rfm` gives there, for anyone at any time."""
        r, f, m = self.rfm_cuts
        if not r:
            return None
        return (1 + sum(1 for c in r if recency_days < c), score_against(purchases, f), score_against(monetary, m))


def _columns(rows: Sequence[Row]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.array([r.x for r in rows], dtype=np.float64),
        np.array([r.t_x for r in rows], dtype=np.float64),
        np.array([r.T for r in rows], dtype=np.float64),
        np.array([r.m for r in rows], dtype=np.float64),
    )


def _digest(rows: Mapping[str, Row]) -> str:
    h = hashlib.sha256()
    for person in sorted(rows):
        r = rows[person]
        h.update(f"{person}\t{r.x}\t{r.t_x:.6f}\t{r.T:.6f}\t{r.m:.6f}\n".encode())
    return h.hexdigest()


def fit(
    rows: Mapping[str, Row],
    calibration_end: date,
    rules: ValueRules,
    rfm: Mapping[str, tuple[float, int, float]] | None = None,
) -> Model:
    """Fit both models to the persons' rows at the calibration end, and fix the value segments'
    CLV cut-offs among these persons, and their RFM cut points from `rfm` (recency in days,
    purchases, net revenue in the base currency, as of the calibration end)."""
    if not rows:
        raise ValueError(f"nobody had a purchase by {calibration_end}: there is nothing to fit the model to")
    # In the persons' order: sums in another order would differ in the last bits, and so the id.
    x, t_x, T, m = _columns([rows[p] for p in sorted(rows)])
    if not (x > 0).any():
        raise ValueError(
            f"nobody had bought twice by {calibration_end}: without repeat purchases the model cannot tell "
            "how often customers buy or when they drop out; fit later, on more history"
        )
    # Persons with the same row weigh as one row: a large fit evaluates each distinct row once.
    distinct, weights = np.unique(np.stack([x, t_x, T]), axis=1, return_counts=True)
    frequency = bgnbd.fit(distinct[0], distinct[1], distinct[2], weights=weights)
    spenders = int(gamma_gamma.usable(x, m).sum())
    spend = gamma_gamma.fit(x, m) if spenders else None
    horizon = Horizon.of(rules)
    draft = Model(
        "",
        calibration_end,
        rules.base_currency,
        len(rows),
        spenders,
        _digest(rows),
        frequency,
        spend,
        horizon,
        (),
        rules.rest_segment,
    )
    clv = {p: pr.clv for p, pr in predict(draft, {p: rows[p] for p in sorted(rows)}).items()}
    ranked = value_segments(clv, rules.value_segments, rules.rest_segment)
    # An empty segment (few persons, or ties sharing the segment above) has no cut-off: nobody is in it.
    cutoffs = tuple(
        (s.name, min((v for p, v in clv.items() if ranked[p] == s.name and v is not None), default=None))
        for s in rules.value_segments
    )
    cuts: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] = ((), (), ())
    if rfm:
        values = list(rfm.values())
        recency = tuple(-c for c in thresholds([-v[0] for v in values]))  # fewer days is better
        cuts = (recency, thresholds([v[1] for v in values]), thresholds([v[2] for v in values]))
    done = replace(draft, segments=cutoffs, rfm_cuts=cuts)
    model_id = "vm-" + hashlib.sha256(orjson.dumps(done.as_dict(), option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return replace(done, model_id=model_id)


@dataclass(frozen=True)
class Prediction:
    p_alive: float
    expected_transactions: float  # in the model's next `expected_weeks`
    expected_spend: float | None  # per transaction, base currency (None without a spend model)
    clv: float | None  # discounted, over the model's `clv_months`, base currency
    value_segment: str

    @property
    def churn_risk(self) -> float:
        return 1.0 - self.p_alive


CHUNK = 50_000  # persons scored at once: a (persons x months) array per step stays a few MB


def predict(model: Model, rows: Mapping[str, Row]) -> dict[str, Prediction]:
    """Each person's predictions from their row at T (the period ending at T): P(alive), expected
    transactions and spend, CLV, and the value segment the model's cut-offs give that CLV."""
    people = list(rows)
    out = {}
    for start in range(0, len(people), CHUNK):
        chunk = people[start : start + CHUNK]
        alive, soon, spend, value = _scores(model, *_columns([rows[p] for p in chunk]))
        for i, p in enumerate(chunk):
            s = float(spend[i]) if math.isfinite(spend[i]) else None
            v = float(value[i]) if math.isfinite(value[i]) else None
            out[p] = Prediction(float(alive[i]), float(soon[i]), s, v, model.segment_of(v))
    return out


def _scores(
    model: Model, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, m: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """P(alive), expected transactions over `expected_weeks`, expected spend and CLV (NaN without
    a spend model), per person. The expected transactions by the end of each month of the CLV
    horizon come from one call over a (persons x horizons) grid: a person scored alone costs
    about what one horizon does."""
    f, h = model.bgnbd, model.horizon
    alive = bgnbd.p_alive(f, x, t_x, T)
    weeks = np.array([[h.expected_weeks, *(i * MONTH_WEEKS for i in range(1, h.clv_months + 1))]])
    by = bgnbd.expected(f, weeks, x[:, None], t_x[:, None], T[:, None])
    spend = value = np.full_like(x, np.nan)
    if model.gamma_gamma is not None:
        spend = gamma_gamma.expected_spend(model.gamma_gamma, x, m)
        value = spend * discounted(by[:, 1:], h.annual_discount_rate)
    return alive, by[:, 0], spend, value


def discounted(by_month: np.ndarray, annual_rate: float) -> np.ndarray:
    """Per person, the expected transactions of each month (from those expected by each month's
    end, one column per month), each discounted to T at the annual rate compounded monthly:
    times the expected spend, the CLV."""
    monthly = (1 + annual_rate) ** (1 / 12) - 1
    each = np.diff(by_month, axis=1, prepend=0.0)
    # Column by column, not a matrix product: BLAS may sum a row differently by where it sits in
    # memory, and a person's CLV must have the same bits alone (a decision) and among many (the
    # fit's cut-offs, a list).
    total = np.zeros(by_month.shape[0])
    for i in range(by_month.shape[1]):
        total += each[:, i] / (1 + monthly) ** (i + 1)
    return total


def value_segments(clv: Mapping[str, float | None], segments: Sequence[ValueSegment], rest: str) -> dict[str, str]:
    """Segments by CLV, best first: a person is in the first segment whose cumulative share of the
    persons, rounded up, is more than the number of persons with a strictly higher CLV. Equal
    CLVs share a segment; a person without a CLV is in `rest`."""
    ranked = sorted(v for v in clv.values() if v is not None)
    n = len(ranked)
    bounds, total = [], 0.0
    for s in segments:
        total += s.share
        bounds.append((math.ceil(round(n * total, 9)), s.name))
    out = {}
    for person, v in clv.items():
        if v is None:
            out[person] = rest
            continue
        higher = n - bisect_right(ranked, v)
        out[person] = next((name for bound, name in bounds if higher < bound), rest)
    return out


def holdout(model: Model, rows: Mapping[str, Row], actual: Mapping[str, int], weeks: float) -> dict[str, Any]:
    """Predicted against actual repeat transactions in the `weeks` after the calibration end, over
    the calibration's persons: in total and by their repeat transactions in calibration (0..6, 7+),
    as in the paper's figure of conditional expectations."""
    people = sorted(rows)
    x, t_x, T, _ = _columns([rows[p] for p in people])
    predicted = bgnbd.expected(model.bgnbd, weeks, x, t_x, T)
    got = np.array([actual.get(p, 0) for p in people], dtype=np.float64)
    table = []
    for k in range(FREQUENCIES):
        sel = x >= k if k == FREQUENCIES - 1 else x == k
        n = int(sel.sum())
        table.append(
            {
                "frequency": f"{k}+" if k == FREQUENCIES - 1 else str(k),
                "customers": n,
                "actual": round(float(got[sel].mean()), 4) if n else None,
                "predicted": round(float(predicted[sel].mean()), 4) if n else None,
            }
        )
    return {
        "weeks": round(weeks, 4),
        "actual": int(got.sum()),
        "predicted": round(float(predicted.sum()), 2),
        "by_frequency": table,
    }


def row_at(facts: Facts, T: datetime, rules: ValueRules) -> Row | None:
    """A person's row for the model as of T: their transactions as of T, the period ending on T's day."""
    return summarise(transactions(facts, T, rules), T.date())


def predict_one(model: Model, facts: Facts, T: datetime, rules: ValueRules) -> Prediction | None:
    """One person's predictions as of T; None without a purchase by then."""
    row = row_at(facts, T, rules)
    return None if row is None else predict(model, {"": row})[""]
