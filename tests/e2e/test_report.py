"""`journey report` renders in a real headless Chromium with no script errors."""

from __future__ import annotations

import heapq
import json
import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.clock import EventTimeClock, SystemClock
from engine.config import load_config
from engine.ladder_sim import simulate_ladder
from engine.service import Engine
from engine.simulator import simulate
from engine.value_view import fit

from ..conftest import NOW

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required on CI (scripts/test.sh installs Debian's chromium)")
        pytest.skip("no chromium on this machine")
    return found


def test_report_renders_in_headless_chromium(tmp_path):
    browser = chromium()
    data = tmp_path / "var"
    example = Path(__file__).parents[2] / "examples" / "employees.toml"
    config = load_config(example).model_copy(update={"data_dir": str(data)})
    with Engine(config, EventTimeClock()) as engine:
        staff = simulate_ladder(config.ladders[0], config.kinds, 40, 4, NOW)
        engine.ingest(heapq.merge(simulate(150, 4, NOW), staff, key=lambda r: str(r["occurred_at"])))
        engine.clock = SystemClock()
        engine.run_due()
        fit(engine, NOW - timedelta(days=120), NOW)  # a value model with a holdout: all four value charts
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        main,
        ["report", "--out", str(out), "--as-of", NOW.isoformat(), "--config", str(example), "--json"],
        env={"JOURNEY_DATA_DIR": str(data)},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["charts"] == 11  # 6 of journeys, 4 of value, 1 of the employees ladder
    assert "Funnel over time: the employees ladder" in out.read_text()
    page = out.read_text()
    assert "<script src=" not in page  # self-contained: nothing to fetch
    dom = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={tmp_path / 'profile1'}", "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    status = re.search(r'<div id="report-status" data-errors="(\d*)" data-charts="(\d*)"', dom)
    assert status, dom[-2000:]
    assert status.groups() == ("0", "11")
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile2'}",
            "--window-size=1280,3000",
            f"--screenshot={shot}",
            out.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 50_000
    print(f"screenshot: {shot}")
