"""Persons' value with a given model, as of a time: one person's, as a policy condition and the
value segment dimension read it (engine.policies.decide, engine.ingest), and many persons' at once
for the views, lists and exports. Pure: the caller passes the facts and the model in force."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ..projections.facts import Facts
from ..rules import ValueRules
from .history import Historical, historical, rfm_of
from .model import Model, Prediction, predict, predict_one, row_at
from .rfm import OTHER, Rfm, score_rfm


@dataclass(frozen=True)
class Valued:
    model_id: str
    p_alive: float
    clv: float | None
    value_segment: str
    rfm_segment: str | None


def valued(facts: Facts, now: datetime, model: Model, rules: ValueRules, with_rfm: bool = True) -> Valued | None:
    """The person's predictions and segments now; None without a purchase by now. RFM (only
    `with_rfm`: it costs another walk of the orders) is scored against the model's cut points,
    its segment named by [value] rfm_segments."""
    p = predict_one(model, facts, now, rules)
    if p is None:
        return None
    if not with_rfm:
        return Valued(model.model_id, p.p_alive, p.clv, p.value_segment, None)
    rfm = rfm_of(historical(facts, now, rules), now)
    scores = None if rfm is None else model.rfm_scores(*rfm)
    segment = None
    if scores is not None:
        segment = next((s.name for s in rules.rfm_segments if s.covers(*scores)), OTHER)
    return Valued(model.model_id, p.p_alive, p.clv, p.value_segment, segment)


def segment_reason(v: Valued | None, model: Model) -> str:
    """Why a person is in their value segment, in words: their CLV against the model's cut-offs."""
    base = model.base_currency
    if v is None:
        return f"no purchase to value (model {model.model_id})"
    if v.clv is None:
        return f"no CLV without a spend model: {v.value_segment} (model {model.model_id})"
    cuts = {name: lowest for name, lowest in model.segments if lowest is not None}
    if v.value_segment in cuts:
        where = f"{v.value_segment} from {cuts[v.value_segment]:,.2f} {base}"
    else:
        where = f"{v.value_segment}, below {min(cuts.values(), default=0.0):,.2f} {base}"
    return f"CLV {v.clv:,.2f} {base}: {where} (model {model.model_id})"


@dataclass(frozen=True)
class Values:
    """Many persons' value as of T: historical, RFM among those with a purchase, and the
    predictions of the model (those with a purchase, when there is a model)."""

    historical: dict[str, Historical]
    rfm: dict[str, Rfm]
    model: Model | None
    predicted: dict[str, Prediction]


def valuate(facts: Mapping[str, Facts], T: datetime, rules: ValueRules, model: Model | None) -> Values:
    """Every person's value as of T, for the views, lists and exports that show them all."""
    value = {p: historical(f, T, rules) for p, f in facts.items()}
    rows = {p: row for p, v in value.items() if (row := rfm_of(v, T)) is not None}
    predicted = {}
    if model is not None:
        model_rows = {p: r for p, f in facts.items() if (r := row_at(f, T, rules)) is not None}
        predicted = predict(model, model_rows)
    return Values(value, score_rfm(rows, rules.rfm_segments), model, predicted)
