"""`journey report`: one self-contained HTML page of plots for analysts (plotly, inlined once).

The page records its own script errors and how many charts it drew in #report-status, so a
headless browser (and the test) can tell a page that works from one that merely loads.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from engine.clock import iso
from engine.projections.lifecycle import HEALTHS, STAGES, timeline
from engine.service import Engine
from engine.uplift import uplift
from engine.value import pareto_share
from engine.value.person import valuate

from .history import History, load
from .journeys import Journeys, period_ends

COLORS = {
    "prospect": "#9aa5b1",
    "first_buyer": "#4e79a7",
    "repeat": "#59a14f",
    "loyal": "#f28e2b",
    "advocate": "#e15759",
    "active": "#59a14f",
    "at_risk": "#edc948",
    "lapsed": "#b07aa1",
}

GUARD = """<script>window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message))});
window.addEventListener('load',function(){var n=document.querySelectorAll('.js-plotly-plot').length;
var s=document.getElementById('report-status');s.dataset.errors=window.__errors.length;s.dataset.charts=n;
s.textContent=window.__errors.length?('script errors: '+window.__errors.join('; ')):(n+' charts drawn');});</script>"""


def build(
    engine: Engine,
    as_of: datetime,
    months: int = 24,
    history: History | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """`progress` hears how many customers' journeys were worked out (see Journeys)."""
    h = history or load(engine)
    j = Journeys(h, engine.rules, as_of, progress)
    first = min((f.first_seen for _, f in h.customers() if f.first_seen), default=as_of)
    start = max(first, as_of - timedelta(days=31 * months))
    return {
        "as_of": iso(as_of),
        "customers": len(h.facts),
        "distribution": j.distribution(period_ends(start, as_of)),
        "transitions": j.transitions(as_of - timedelta(days=90), as_of),
        "cohorts": j.cohorts(12)[-12:],
        "time_to_loyal": j.time_to_stage("loyal"),
        "time_to_repeat": j.time_to_stage("repeat"),
        "policies": j.policy_outcomes(30),
        "value": value_data(engine, h, as_of),
        "ladders": ladder_data(engine, h, period_ends(start, as_of)),
        "uplift": uplift(h.actions, dict(h.customers()), engine.value_rules, engine.ladders[0], as_of, 30, end=as_of),
    }


def ladder_data(engine: Engine, h: History, ends: list[datetime]) -> list[dict[str, Any]]:
    """Each declared ladder ([[ladders]]): persons per stage at each period's end, read from one
    walk of each person's history (its stage changes), not one evaluation per period."""
    out = []
    for lad in engine.ladders[1:]:
        counts = [dict.fromkeys(lad.stages, 0) for _ in ends]
        for _, facts in h.customers():
            moves = [(tr.effective_at, tr.to_value) for tr in timeline(facts, lad, None, ends[-1])[0]
                     if tr.dimension == "stage"]  # fmt: skip
            i, stage = 0, None
            for k, T in enumerate(ends):
                while i < len(moves) and moves[i][0] <= T:
                    stage = moves[i][1]
                    i += 1
                if stage is not None:
                    counts[k][stage] += 1
        dist = [{"period_end": iso(T), "stages": c} for T, c in zip(ends, counts)]
        out.append({"name": lad.name, "version": lad.version, "stages": list(lad.stages), "distribution": dist})
    return out


def value_data(engine: Engine, h: History, as_of: datetime) -> dict[str, Any]:
    """Customer value as of T (docs/value.md): the Pareto curve of net revenue, the RFM grid, and
    with the value model in force the CLVs by value segment and its holdout comparison, if it had one."""
    rules = engine.value_rules
    model = engine.value_models.in_force()
    v = valuate({h.names[u]: f for u, f in h.facts.items()}, as_of, rules, model)
    revenues = sorted((x.net_revenue for x in v.historical.values() if x.purchases), reverse=True)
    total = sum(revenues) or 1.0
    step = max(1, len(revenues) // 200)  # at most ~200 points: the curve's shape, not every buyer
    cumulative, points = 0.0, [(0.0, 0.0)]
    for i, r in enumerate(revenues, start=1):
        cumulative += r
        if i % step == 0 or i == len(revenues):
            points.append((i / len(revenues), cumulative / total))
    grid = [[0] * 5 for _ in range(5)]  # [frequency score - 1][recency score - 1]
    for x in v.rfm.values():
        grid[x.f - 1][x.r - 1] += 1
    clv: dict[str, list[float]] = {}
    for p in v.predicted.values():
        if p.clv is not None:
            clv.setdefault(p.value_segment, []).append(round(p.clv, 2))
    return {
        "base_currency": rules.base_currency,
        "top_share": rules.top_share,
        "top_share_of_revenue": pareto_share(revenues, rules.top_share),
        "pareto": points,
        "rfm_grid": grid,
        "model_id": model.model_id if model else None,
        "clv": clv,
        "holdout": engine.value_models.holdout(model) if model else None,
    }


def figures(data: dict[str, Any]) -> list[tuple[str, str, go.Figure]]:
    dist = data["distribution"]
    x = [d["period_end"][:7] for d in dist]
    funnel = go.Figure(
        [
            go.Scatter(x=x, y=[d["stages"][s] for d in dist], name=s, stackgroup="stages", line={"color": COLORS[s]})
            for s in STAGES
        ]
    )
    health = go.Figure(
        [
            go.Scatter(x=x, y=[d["health"][h] for d in dist], name=h, stackgroup="health", line={"color": COLORS[h]})
            for h in HEALTHS
        ]
    )
    m = data["transitions"]["matrix"]
    rows = list(m)
    heat = go.Figure(
        go.Heatmap(
            z=[[m[r][c] for c in STAGES] for r in rows],
            x=list(STAGES),
            y=rows,
            colorscale="Blues",
            texttemplate="%{z}",
            hovertemplate="%{y} → %{x}: %{z}",
        )
    )
    heat.update_layout(
        xaxis_title=f"stage on {data['transitions']['to'][:10]}",
        yaxis_title=f"stage on {data['transitions']['from'][:10]}",
        yaxis_autorange="reversed",
    )
    cohorts = go.Figure(
        [
            go.Scatter(
                x=list(range(len(c["retention"]))),
                y=c["retention"],
                mode="lines+markers",
                name=f"{c['cohort']} ({c['customers']})",
            )
            for c in data["cohorts"]
        ]
    )
    cohorts.update_layout(
        xaxis_title="months after the first purchase", yaxis_title="share who purchased", yaxis_tickformat=".0%"
    )
    two_weeks = {"start": 0, "size": 14}  # the same bins for both, so the bars compare
    ttl = go.Figure(
        [
            go.Histogram(
                x=data["time_to_repeat"]["days"],
                name="first purchase → repeat",
                opacity=0.7,
                xbins=two_weeks,
                marker_color=COLORS["repeat"],
            ),
            go.Histogram(
                x=data["time_to_loyal"]["days"],
                name="first purchase → loyal",
                opacity=0.7,
                xbins=two_weeks,
                marker_color=COLORS["loyal"],
            ),
        ]
    )
    ttl.update_layout(barmode="overlay", xaxis_title="days", yaxis_title="customers")
    pol = data["policies"]["policies"]
    names = list(pol)
    uplifts = uplift_figures(data.get("uplift", {}))
    outcomes = go.Figure(
        [
            go.Bar(x=names, y=[pol[p][s] for p in names], name=s)
            for s in ("issued", "suppressed", "deferred", "held_out")
        ]
    )
    for status, symbol in (("issued", "diamond"), ("suppressed", "x")):
        outcomes.add_trace(
            go.Scatter(
                x=names,
                y=[pol[p]["followed"][status]["purchased"] for p in names],
                name=f"purchased within 30 days ({status})",
                yaxis="y2",
                mode="markers",
                marker={"size": 12, "symbol": symbol},
            )
        )
    outcomes.update_layout(
        barmode="stack",
        yaxis_title="decisions",
        yaxis2={"overlaying": "y", "side": "right", "tickformat": ".0%", "range": [0, 1]},
    )
    return [
        ("Funnel over time", "customers per stage at each month's end (corrected history)", funnel),
        ("Health over time", "customers with a purchase, by health, at each month's end", health),
        ("Transitions in the last 90 days", "where customers were, and where they are now", heat),
        ("Retention by acquisition cohort", "share of each month's new buyers who purchased again", cohorts),
        ("Time to stage", "days from the first purchase to becoming repeat and loyal", ttl),
        (
            "Policy outcomes",
            "decisions by status; markers: share who purchased within 30 days. Not an effect: suppressed "
            "persons differ from the others (no consent, complaints, overdue invoices)"
            + ("; see the uplift chart" if uplifts else ""),
            outcomes,
        ),
        *uplifts,
        *value_figures(data["value"]),
        *(
            (
                f"Funnel over time: the {lad['name']} ladder",
                f"persons per stage at each month's end (ladder version {lad['version']})",
                go.Figure(
                    [
                        go.Scatter(
                            x=[d["period_end"][:7] for d in lad["distribution"]],
                            y=[d["stages"][s] for d in lad["distribution"]],
                            name=s,
                            stackgroup="stages",
                        )
                        for s in lad["stages"]
                    ]
                ),
            )
            for lad in data.get("ladders", ())
        ),
    ]


def uplift_figures(u: dict[str, Any]) -> list[tuple[str, str, go.Figure]]:
    """The measured effect of each policy with a control group (engine.uplift): per outcome, the
    difference in the share of persons, treated minus held out, with its 95% interval."""
    rows = {name: r for name, r in u.get("policies", {}).items() if r["conversion"]}
    if not rows:
        return []
    names = list(rows)
    fig = go.Figure()
    for key, label in (("conversion", "purchased"), ("moved_up", "moved up a stage"), ("not_lapsed", "not lapsed")):
        c = [rows[n][key] for n in names]
        fig.add_trace(
            go.Bar(
                x=names,
                y=[round(100 * x["difference"], 2) for x in c],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [round(100 * (x["high"] - x["difference"]), 2) for x in c],
                    "arrayminus": [round(100 * (x["difference"] - x["low"]), 2) for x in c],
                },
                text=[f"{rows[n]['treated']:,} vs {rows[n]['held_out']:,}" for n in names],
                name=label,
            )
        )
    fig.update_layout(yaxis_title="points (treated − held out)", barmode="group")
    return [
        (
            "Uplift against control groups",
            f"within {u['days']} days of each person's first decision, treated minus held out, with 95% "
            "intervals (Newcombe): the effect of each policy with a holdout",
            fig,
        )
    ]


def value_figures(v: dict[str, Any]) -> list[tuple[str, str, go.Figure]]:
    """The value charts: always the Pareto curve and the RFM grid; the CLV distribution with a
    value model, and its holdout comparison when it was fitted with one."""
    base = v["base_currency"]
    xs, ys = zip(*v["pareto"], strict=True)
    pareto = go.Figure(go.Scatter(x=xs, y=ys, mode="lines", name="net revenue", line={"color": "#4e79a7"}))
    pareto.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="all equal", line={"dash": "dot", "color": "#bbb"})
    )
    share = v["top_share_of_revenue"]
    if share is not None:
        pareto.add_trace(
            go.Scatter(
                x=[v["top_share"]],
                y=[share],
                mode="markers+text",
                text=[f"top {v['top_share']:.0%}: {share:.0%}"],
                textposition="bottom right",
                name="the Pareto figure",
                marker={"size": 10, "color": "#e15759"},
            )
        )
    pareto.update_layout(
        xaxis={"title": "share of buyers, by net revenue", "tickformat": ".0%"},
        yaxis={"title": f"share of net revenue ({base})", "tickformat": ".0%"},
    )
    scores = ["1", "2", "3", "4", "5"]
    rfm = go.Figure(
        go.Heatmap(z=v["rfm_grid"], x=scores, y=scores, colorscale="Blues", text=v["rfm_grid"], texttemplate="%{text}")
    )
    rfm.update_layout(xaxis_title="recency score (5: bought most recently)", yaxis_title="frequency score")
    out = [
        (
            "Pareto curve",
            f"the share of net revenue ({base}) from the best buyers; the marker is the top share's",
            pareto,
        ),
        ("RFM grid", "buyers by recency and frequency score (quintiles, 5 best)", rfm),
    ]
    if v["clv"]:
        clv = go.Figure(
            [go.Histogram(x=values, name=segment, opacity=0.7, nbinsx=40) for segment, values in v["clv"].items()]
        )
        clv.update_layout(barmode="overlay", xaxis_title=f"CLV ({base})", yaxis_title="customers")
        out.append(("CLV distribution", f"predicted CLV by value segment (model {v['model_id']})", clv))
    if v["holdout"]:
        rows = v["holdout"]["by_frequency"]
        x = [r["frequency"] for r in rows]
        holdout = go.Figure(
            [
                go.Bar(x=x, y=[r["actual"] for r in rows], name="actual"),
                go.Bar(x=x, y=[r["predicted"] for r in rows], name="predicted"),
            ]
        )
        holdout.update_layout(
            barmode="group", xaxis_title="repeat purchase days in calibration", yaxis_title="per customer"
        )
        caption = (
            f"repeat purchase days per customer in the {v['holdout']['weeks']:.1f} weeks after the calibration end, "
            f"made and predicted, by those in calibration (model {v['model_id']})"
        )
        out.append(("Holdout: predicted vs actual", caption, holdout))
    return out


def render(data: dict[str, Any]) -> tuple[str, int]:
    """The page, and how many charts it has."""
    parts = []
    for title, caption, fig in figures(data):
        fig.update_layout(
            height=420,
            margin={"l": 60, "r": 40, "t": 30, "b": 50},
            template="plotly_white",
            legend={"orientation": "h", "y": -0.2},
        )
        parts.append(
            f"<section><h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p>"
            f"{fig.to_html(full_html=False, include_plotlyjs=False)}</section>"
        )
    return (
        f"""<!doctype html><html><head><meta charset="utf-8"><title>Customer journeys — {data["as_of"][:10]}</title>
{GUARD}<script>{get_plotlyjs()}</script>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
section{{margin:2.5em 0}}h2{{margin-bottom:.2em}}p{{color:#666;margin-top:0}}#report-status{{color:#999;font-size:.8em}}</style>
</head><body><h1>Customer journeys</h1>
<p>{data["customers"]:,} customers, as of {data["as_of"][:16]}Z. Generated by <code>journey report</code> from the
event store; every figure is recomputed from the history.</p>{"".join(parts)}
<div id="report-status" data-errors="" data-charts=""></div></body></html>""",
        len(parts),
    )


def write_report(
    engine: Engine,
    out: Path,
    as_of: datetime,
    history: History | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    data = build(engine, as_of, history=history, progress=progress)
    page, charts = render(data)
    out.write_text(page, encoding="utf-8")
    return {
        "out": str(out),
        "as_of": data["as_of"],
        "customers": data["customers"],
        "charts": charts,
        "bytes": out.stat().st_size,
    }
