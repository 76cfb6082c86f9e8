"""Value benchmark: fitting the value model and scoring with it (engine.value.model), and `journey
value summary` over a simulated store, in one run.

    .venv/bin/python bench/value.py --fit 100000 --score 1000000 --customers 20000

1. Fit: `fit` (BG/NBD and Gamma-Gamma by maximum likelihood, then every person's CLV for the value
   segments' cut-offs and the RFM cut points) on `--fit` persons drawn from the models' own story
   with known parameters: seconds, and how close the estimates come to the truth.
2. Score: `predict` (P(alive), expected purchases, expected spend, CLV over 12 months, value
   segment) for `--score` persons: seconds and persons/s.
3. `journey value summary`, and `journey value fit`, over a store of `--customers` simulated
   customers (`journey demo`'s simulator, ingested once): seconds, process start included; the
   baseline beside them is `journey funnel` over the same store (the same fold of the history).
Prints a markdown table (docs/benchmarks.md keeps the figures with the machine they ran on).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.rules import ValueRules  # noqa: E402
from engine.value.model import Row, fit, predict  # noqa: E402

TRUE = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5, "p": 6.0, "q": 4.0, "gamma": 15.0}


def draw(n: int, seed: int) -> dict[str, Row]:
    """n persons from BG/NBD and Gamma-Gamma with TRUE parameters, each observed for T weeks
    (uniform in 1-52) from their first purchase: x, t_x, T and the average repeat spend."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(TRUE["r"], 1 / TRUE["alpha"], n)
    drop = rng.beta(TRUE["a"], TRUE["b"], n)
    T = rng.uniform(1, 52, n).round(0) / 1.0  # whole weeks: many persons share a row, as days do
    nu = rng.gamma(TRUE["q"], 1 / TRUE["gamma"], n)
    t = np.zeros(n)
    x = np.zeros(n, dtype=np.int64)
    last = np.zeros(n)
    spent = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        t[alive] += rng.exponential(1 / lam[alive])
        bought = alive & (t <= T)
        x[bought] += 1
        last[bought] = t[bought]
        spent[bought] += rng.gamma(TRUE["p"], 1 / nu[bought])
        alive = bought & (rng.random(n) >= drop)
    m = np.where(x > 0, spent / np.maximum(x, 1), 0.0)
    return {f"p{i}": Row(int(x[i]), float(last[i]), float(T[i]), float(m[i])) for i in range(n)}


def timed(f, *args):
    t0 = time.perf_counter()
    out = f(*args)
    return out, time.perf_counter() - t0


def journey(data: Path, *args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "journey"), *args],
        check=True,
        env={**os.environ, "JOURNEY_DATA_DIR": str(data)},
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fit", type=int, default=100_000, help="persons to fit to")
    p.add_argument("--score", type=int, default=1_000_000, help="persons to score")
    p.add_argument("--customers", type=int, default=20_000, help="customers in the store for the summary")
    args = p.parse_args()
    rows = []
    rules = ValueRules()
    sample, drawn = timed(draw, args.fit, 1)
    model, took = timed(fit, sample, date(2026, 9, 30), rules)
    est = model.bgnbd.as_dict() | (model.gamma_gamma.as_dict() if model.gamma_gamma else {})
    off = max(abs(est[k] - v) / v for k, v in TRUE.items())
    distinct = len({(r.x, r.t_x, r.T) for r in sample.values()})
    rows.append(
        (
            f"Fit on {args.fit:,} persons ({distinct:,} distinct rows) (s)",
            f"{took:.2f}",
            "≤ 10",
            f"estimates within {off:.1%} of the truth; drawing them took {drawn:.1f} s",
        )
    )
    many, drawn = timed(draw, args.score, 2)
    scored, took = timed(predict, model, many)
    rows.append(
        (
            f"Score {args.score:,} persons: P(alive), CLV over 12 months, segment (s)",
            f"{took:.2f}",
            "≤ 30",
            f"{args.score / took:,.0f} persons/s",
        )
    )
    assert len(scored) == args.score
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        history = data / "history.jsonl"
        journey(data, "simulate", "--customers", str(args.customers), "--out", str(history))
        journey(data, "ingest", str(history), "--backfill")
        funnel = journey(data, "funnel", "--json")
        summary = journey(data, "value", "summary", "--json")
        fitted = journey(data, "value", "fit", "--calibration-end", "2026-09-30", "--json")
        with_model = journey(data, "value", "summary", "--json")
        rows.append(
            (
                f"`journey value summary` over {args.customers:,} simulated customers (s)",
                f"{summary:.2f}",
                "—",
                f"`journey funnel` {funnel:.2f} s; with a model {with_model:.2f} s; `journey value fit` {fitted:.2f} s",
            )
        )
    print("| measure | result | target | beside it, same run |")
    print("|---|---:|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
