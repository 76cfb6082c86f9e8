"""Progress of the long replay commands: bars on standard error for a person at a terminal,
nothing on standard output and nothing at all for --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.clock import EventTimeClock, FixedClock
from engine.config import Config
from engine.service import Engine
from engine.simulator import simulate
from replay.history import load
from replay.journeys import Journeys, counted
from replay.whatif import whatif

from ..conftest import NOW


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    data = tmp_path_factory.mktemp("progress") / "var"
    with Engine(Config(data_dir=str(data)), EventTimeClock()) as engine:
        engine.ingest(simulate(40, 3, NOW))
    return data


def test_counted_reports_every_item_once():
    heard: list[int] = []
    assert list(counted(range(2500), heard.append)) == list(range(2500))
    assert heard == [1000, 1000, 500]
    heard.clear()
    list(counted(range(2000), heard.append))
    assert heard == [1000, 1000]  # no empty report at the end
    assert list(counted("ab", None)) == ["a", "b"]


def test_the_callbacks_add_up_to_the_events_and_the_customers(store):
    events, customers, whatif_customers, positions = [], [], [], []
    with Engine(Config(data_dir=str(store)), FixedClock(NOW)) as engine:
        last = engine.store.journal.max_notification_id()
        h = load(engine, progress=events.append)
        Journeys(h, engine.rules, NOW, customers.append).timelines()
        alternative = Config.model_validate({"lifecycle": {"loyal_min_purchases": 3, "rules_version": "alt"}})
        whatif(
            engine,
            alternative,
            NOW,
            h,
            on_step=lambda s: positions.append(s.position),
            on_customers=whatif_customers.append,
        )
    assert sum(events) == h.events == last  # the bar's total is the log's last position
    assert sum(customers) == sum(whatif_customers) == len(h.facts) == 40
    assert positions == sorted(positions) and 0 < positions[-1] <= last


JOURNEY = str(Path(sys.executable).parent / "journey")
COMMANDS = [
    ["replay", "journeys", "--months", "3"],
    ["replay", "time-to-stage"],
    ["replay", "cohorts"],
    ["replay", "transitions", "--from", "2026-01-01", "--to", "2026-05-01"],
    ["replay", "policies"],
]


def test_bars_go_to_standard_error_on_a_terminal_and_never_with_json(store, tmp_path):
    alt = tmp_path / "alt.toml"
    alt.write_text('[lifecycle]\nrules_version = "alt"\nloyal_min_purchases = 3\n')
    whatif_command = ["replay", "whatif", "--config", str(alt), "--as-of", NOW.isoformat()]
    commands = COMMANDS + [
        whatif_command,
        ["report", "--out", str(tmp_path / "report.html")],
        ["replay", "export", "--out", str(tmp_path / "x")],
    ]
    # TTY_COMPATIBLE=1: rich takes standard error for a terminal (read when the command starts,
    # hence a process of its own rather than click's runner).
    env = {**os.environ, "JOURNEY_DATA_DIR": str(store), "TTY_COMPATIBLE": "1"}
    run = lambda *a: subprocess.run([JOURNEY, *a], capture_output=True, text=True, env=env, cwd=tmp_path)  # noqa: E731
    for command in commands:
        shown = run(*command)
        assert shown.returncode == 0, shown.stderr
        assert "reading history" in shown.stderr, command
        assert "\x1b" not in shown.stdout and "reading history" not in shown.stdout, command
        if command is whatif_command:
            assert "evaluating customers" in shown.stderr and "replaying under the alternative" in shown.stderr
        quiet = run(*command, "--json")
        assert quiet.returncode == 0, quiet.stderr
        assert json.loads(quiet.stdout) and quiet.stderr == "", command
