"""Identity benchmark: what identity resolution costs at ingest (links recorded, persons resolved and
merged), and the customer view by an anonymous id, in one run.

    .venv/bin/python bench/identity.py --customers 3000 --rounds 3

1. The same simulated history twice: without anonymous ids (the baseline), and with 63% of the web
   and app touchpoints (30% of all) carrying the device's anonymous id, 10% of customers on
   another's device and 10% of customers browsing and buying as guests, whose guest history
   merges into theirs (`journey simulate --anonymous 0.63 --shared-devices 0.1 --guests 0.1`).
   Each `journey ingest`ed into an empty store, alternating, `--rounds` times: touchpoints/s, and
   the ratio to the baseline.
2. `Engine.view` by anonymous id (links read and resolved, then the view) beside `Engine.view`
   by customer id, over 500 devices: p50 and p99 in ms.
Prints a markdown table (docs/benchmarks.md keeps the figures with the machine they ran on).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import median, quantiles

ROOT = Path(__file__).resolve().parents[1]


def views(data: Path, ids: list[str]) -> list[float]:
    from engine.config import Config
    from engine.service import Engine

    took = []
    with Engine(Config(data_dir=str(data))) as engine:
        now = engine.clock.now()
        for i in ids:
            t0 = time.perf_counter()
            engine.view(i, now, limit=25)
            took.append((time.perf_counter() - t0) * 1000)
    return took


def cuts(ms: list[float]) -> str:
    q = quantiles(ms, n=100)
    return f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--customers", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.serve import baseline
    from engine.simulator import simulate, with_devices

    def ingest(history: Path, data: Path) -> float:
        return float(baseline(history, data)["rate"])  # `journey ingest` of the file, timed

    with tempfile.TemporaryDirectory(prefix="journey-bench-identity-") as tmp:
        work = Path(tmp)
        records = list(simulate(a.customers, 7, datetime.now(UTC)))
        plain, devices = work / "plain.jsonl", work / "devices.jsonl"
        plain.write_text("".join(json.dumps(r) + "\n" for r in records))
        linked = list(with_devices(records, 0.63, 0.1, 7, guests=0.1))
        devices.write_text("".join(json.dumps(r) + "\n" for r in linked))
        base, ident = [], []
        for k in range(a.rounds):
            base.append(ingest(plain, work / f"plain{k}"))
            ident.append(ingest(devices, work / f"devices{k}"))
        anonymous = sorted({r["anonymous_id"] for r in linked if "anonymous_id" in r})[:500]
        customers = sorted({r["customer_id"] for r in records})[:500]
        by_device = views(work / "devices0", anonymous)
        by_customer = views(work / "devices0", customers)
    ratios = [i / b for i, b in zip(ident, base, strict=True)]
    result = {
        "records": len(records),
        "with_anonymous_ids": sum("anonymous_id" in r for r in linked),
        "anonymous_only": sum("customer_id" not in r for r in linked),
        "baseline_rates": [round(x) for x in base],
        "identity_rates": [round(x) for x in ident],
        "ratios": [round(x, 2) for x in ratios],
        "view_by_anonymous_id": cuts(by_device),
        "view_by_customer_id": cuts(by_customer),
    }
    print(json.dumps(result))
    print(
        f"| `journey ingest`, no anonymous ids (baseline) | {median(base):,.0f} touchpoints/s (median of {a.rounds}) |"
    )
    print(
        f"| `journey ingest`, {sum('anonymous_id' in r for r in linked) / len(linked):.0%} with anonymous ids, "
        "10% shared devices, 10% guests merging "
        f"| {median(ident):,.0f} touchpoints/s: "
        f"{min(ratios):.2f}–{max(ratios):.2f} of the baseline |"
    )
    print(f"| customer view by anonymous id ({len(by_device)} devices) | {cuts(by_device)} |")
    print(f"| customer view by customer id ({len(by_customer)} customers) | {cuts(by_customer)} |")


if __name__ == "__main__":
    main()
