"""The benchmark scripts still run (a seconds-long smoke scale; figures are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_benchmarks_smoke_run():
    from ..conftest import pg_available

    args = [sys.executable, str(ROOT / "bench" / "run.py"), "--scale", "smoke", "--no-write"]
    if os.environ.get("CI") == "true" or pg_available() is None:
        args.append("--postgres")
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| Ingest, full pipeline, SQLite, 1 process (touchpoints/s) |" in out.stdout


def test_the_http_benchmark_runs():
    """bench/serve.py at a tiny scale: it starts journey serve, compares, and prints its table."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "serve.py"), "--customers", "20", "--seconds", "1", "--rate", "20"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.splitlines()[0])
    assert result["http"]["accepted"] == result["ingest"]["accepted"] > 0 and result["latency"]["requests"] == 20


def test_the_ladder_walk_benchmark_runs(tmp_path):
    """bench/ladder.py over a small simulated history: it walks it and counts the changes."""
    history = tmp_path / "h.jsonl"
    journey = [sys.executable, "-m", "engine.cli"]
    subprocess.run([*journey, "simulate", "--customers", "30", "--out", str(history)], check=True, cwd=tmp_path)
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ladder.py"), "--history", str(history), "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    touchpoints, changes = out.stdout.split(" touchpoints, ")[0], out.stdout.split(" touchpoints, ")[1].split(" ")[0]
    assert int(touchpoints.replace(",", "")) > 0 and int(changes.replace(",", "")) > 0, out.stdout
