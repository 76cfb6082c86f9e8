"""The read side of customer value (engine.value, docs/value.md): each customer's historical value,
RFM and predictions as of T, over the store's history (with the anonymous ids linked to them), and
the fitting and recording of the value model, for `journey value` and whoever asks."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any

import orjson

from .clock import iso
from .queries import Progress, persons_facts, prediction_fields
from .rules import ValueRules
from .service import Engine
from .value import historical, pareto_share, rfm_of, transactions
from .value.rfm import OTHER

if TYPE_CHECKING:
    from .value.person import Values


def no_model(base_currency: str) -> str:
    """What to say when no value model is in force (in this base currency)."""
    return (
        f"no value model in {base_currency} yet: fit one with journey value fit --calibration-end DATE "
        "(journey value models lists those recorded)"
    )


def values(engine: Engine, T: datetime, as_known: bool = False, progress: Progress | None = None) -> Values:
    """Each customer's value as of T, with the model in force (now, or as known at T)."""
    from .value.person import valuate

    facts, _ = persons_facts(engine, T, as_known, progress)
    return valuate(facts, T, engine.config.value, engine.value_models.in_force(iso(T) if as_known else None))


def summary(engine: Engine, T: datetime, as_known: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Customers, net revenue in the base currency (and what could not be converted), the Pareto
    share, the customers per RFM segment and, with a fitted model, per value segment, as of T."""
    rules: ValueRules = engine.config.value
    v = values(engine, T, as_known, progress)
    buyers = [x for x in v.historical.values() if x.purchases]
    unconverted: Counter[str] = Counter()
    for x in buyers:
        unconverted.update(x.unconverted)
    segments = Counter(x.segment for x in v.rfm.values())
    names = [s.name for s in rules.rfm_segments] + ([OTHER] if segments[OTHER] else [])
    revenues = [x.net_revenue for x in buyers]
    share = pareto_share(revenues, rules.top_share)
    out = {
        "as_of": iso(T),
        "as_known": as_known,
        "base_currency": rules.base_currency,
        "customers": len(v.historical),
        "buyers": len(buyers),
        "net_revenue": round(sum(x.net_revenue for x in buyers), 2),
        "unconverted": {c: round(a, 2) for c, a in sorted(unconverted.items())},
        "top_share": rules.top_share,
        "top_share_of_revenue": None if share is None else round(share, 4),
        # the Pareto figure at the usual 20%, whatever top_share says (scripts compare it across stores)
        "top20_share": None if (top20 := pareto_share(revenues, 0.2)) is None else round(top20, 4),
        "rfm_segments": {name: segments[name] for name in dict.fromkeys(names)},
        "model": None,
        "value_segments": None,
    }
    if v.model is not None:
        by_segment = Counter(p.value_segment for p in v.predicted.values())
        names = v.model.segment_names
        out["model"] = v.model.as_dict()
        out["value_segments"] = {n: by_segment[n] for n in names}
        clvs = [p.clv for p in v.predicted.values() if p.clv is not None]
        out["expected_clv"] = round(sum(clvs), 2) if clvs else None
    return out


def customers(
    engine: Engine,
    T: datetime,
    segment: str | None = None,
    as_known: bool = False,
    value_segment: str | None = None,
    scored: bool = False,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """The customers with a purchase, best first (by net revenue), with their value, RFM and
    predictions; only those of an RFM `segment` or a `value_segment` when given. ValueError without
    a model when the predictions are asked for (`scored`, or a value segment), and for a value
    segment the model in force does not have."""
    v = values(engine, T, as_known, progress)
    if (scored or value_segment is not None) and v.model is None:
        raise ValueError(no_model(engine.config.value.base_currency))
    if value_segment is not None:
        assert v.model is not None  # checked above
        names = v.model.segment_names
        if value_segment not in names:
            raise ValueError(f"{value_segment!r} is not a value segment; the segments: {', '.join(names)}")
    out = []
    for c, x in v.rfm.items():
        if segment is not None and x.segment != segment:
            continue
        if value_segment is not None and v.predicted[c].value_segment != value_segment:
            continue
        h = v.historical[c]
        p = v.predicted.get(c)
        out.append(
            {
                "customer_id": c,
                "rfm_segment": x.segment,
                "rfm": x.code,
                "recency_days": round(x.recency_days, 1),
                "purchases": h.purchases,
                "net_revenue": h.net_revenue,
                "unconverted": h.unconverted,
                "average_order_value": h.average_order_value,
                "first_purchase": iso(h.first_purchase) if h.first_purchase else None,
                "last_purchase": iso(h.last_purchase) if h.last_purchase else None,
                "tenure_days": None if h.tenure_days is None else round(h.tenure_days, 1),
                "predicted": None if p is None or v.model is None else prediction_fields(v.model, p),
            }
        )
    return sorted(out, key=lambda r: (-v.historical[r["customer_id"]].net_revenue, r["customer_id"]))


def fit(
    engine: Engine,
    calibration_end: datetime,
    holdout_end: datetime | None = None,
    record: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fit the value model to every person's purchases by the calibration end (as known now) and,
    unless told not to, record it: from then on it is the model in force. With a holdout end, the
    repeat transactions it predicts after the calibration end against those that happened."""
    from .value.model import fit as fit_model
    from .value.model import holdout, summarise

    # Periods are whole days (UTC): a time of day would drop that day's later purchases from both.
    today = engine.clock.now().astimezone(UTC).date()
    calibration_end = day_end(calibration_end)
    holdout_end = None if holdout_end is None else day_end(holdout_end)
    for name, t in (("calibration end", calibration_end), ("holdout end", holdout_end)):
        if t is not None and t.date() > today:  # weeks not lived yet would count as silence
            raise ValueError(f"the {name} {t.date()} is after today ({today}): fit to days that have passed")
    if holdout_end is not None and holdout_end <= calibration_end:
        raise ValueError(
            f"the holdout end {holdout_end.date()} is not after the calibration end {calibration_end.date()}"
        )
    rules = engine.config.value
    facts, _ = persons_facts(engine, holdout_end or calibration_end, progress=progress)
    end = calibration_end.date()
    rows, actual, rfm = {}, {}, {}
    for c, f in facts.items():
        if (row := summarise(transactions(f, calibration_end, rules), end)) is None:
            continue
        rows[c] = row
        if (rfm_row := rfm_of(historical(f, calibration_end, rules), calibration_end)) is not None:
            rfm[c] = rfm_row
        if holdout_end is not None:
            actual[c] = sum(1 for day, _ in transactions(f, holdout_end, rules) if end < day <= holdout_end.date())
    model = fit_model(rows, end, rules, rfm)
    body = model.as_dict()
    if holdout_end is not None:  # kept with the model (not part of its id): the report draws it
        body["holdout"] = holdout(model, rows, actual, (holdout_end.date() - end).days / 7)
    recorded_at = iso(engine.clock.now())
    if record:
        engine.store.journal.record_model((model.model_id, recorded_at, orjson.dumps(body).decode()))
    return body | {"recorded": record, "recorded_at": recorded_at if record else None}


def day_end(t: datetime) -> datetime:
    """The last instant of t's day (UTC)."""
    return datetime.combine(t.astimezone(UTC).date(), time.max, tzinfo=UTC)


def models(engine: Engine) -> list[dict[str, Any]]:
    """Every recorded value model, oldest first, with when it was recorded (the last is in force)."""
    return [orjson.loads(body) | {"recorded_at": at} for _, at, body in engine.store.journal.models()]
