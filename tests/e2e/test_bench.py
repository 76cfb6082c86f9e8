"""The benchmark scripts still run (a seconds-long smoke scale; figures are not asserted)."""

from __future__ import annotations

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
