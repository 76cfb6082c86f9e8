"""No record crashes ingestion: poison records mixed into 10,000 valid ones are each rejected
with their reason, and every valid record is ingested, through `Engine.ingest` (both stores) and
`journey ingest` (a real process). The worker's turn is in test_worker.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.clock import FixedClock
from engine.queries import TOUCHPOINT_TOPIC, scan
from engine.service import Engine

from .conftest import NOW
from .poison import EDGES, POISON, check_rejections, mixed

JOURNEY = str(Path(sys.executable).parent / "journey")


def test_engine_ingest_keeps_every_valid_record_and_rejects_each_poison(config):
    lines, expected, n_valid = mixed()
    with Engine(config, FixedClock(NOW)) as engine:
        report = engine.ingest(lines)
        assert (report.accepted, report.duplicates) == (n_valid, 0)
        check_rejections([r.as_dict() for r in report.rejections], expected)
        stored = {b["touchpoint"]["event_id"] for _, _, b in scan(engine, TOUCHPOINT_TOPIC)}
        assert len(stored) == n_valid and {e["event_id"] for e in EDGES} <= stored
        # the odd-looking customers are ordinary customers
        assert engine.customer("x-[/]-y")["touchpoints"] == sum(e["customer_id"] == "x-[/]-y" for e in EDGES)
        # ...and a second run of the same file changes nothing
        again = engine.ingest(lines)
        assert (again.accepted, again.duplicates, again.rejected) == (0, n_valid, len(POISON))


def run(*args: str, data: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JOURNEY_DATA_DIR": str(data), "COLUMNS": "300"}
    return subprocess.run([JOURNEY, *args], capture_output=True, env=env, timeout=300)


def test_journey_ingest_keeps_every_valid_record_and_rejects_each_poison(tmp_path):
    lines, expected, n_valid = mixed()
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    data = tmp_path / "var"
    done = run("ingest", str(path), "--rejects", str(tmp_path / "rejects.jsonl"), "--json", data=data)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["accepted"], summary["rejected"]) == (n_valid, len(POISON))
    rejects = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    check_rejections(rejects, expected)
    # Each rejected record is in the rejects file as it came (invalid UTF-8 replaced), to fix and resend.
    by_number = {r["record"]: r for r in rejects}
    for number in expected:
        assert by_number[number]["raw"] == lines[number - 1].decode("utf-8", "replace")
    # The text views print what users sent as it is: no markup read, no crash.
    text = run("ingest", str(path), data=data)
    assert text.returncode == 0 and b"unknown kind '[/bold] oops'" in text.stdout, text.stderr.decode()[-2000:]
    for args in (["changes", "--limit", "100000"], ["actions", "--limit", "100000"], ["customer", "x-[/]-y"],
                 ["customer", "[bold]c[/bold] :smile:"]):
        shown = run(*args, data=data)
        assert shown.returncode == 0, (args, shown.stderr.decode()[-2000:])
        assert b"Traceback" not in shown.stderr
    assert b"x-[/]-y" in run("changes", "--limit", "100000", data=data).stdout
    assert b"[bold]c[/bold] :smile:" in run("customer", "[bold]c[/bold] :smile:", data=data).stdout
