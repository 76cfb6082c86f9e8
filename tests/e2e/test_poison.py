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
from engine.config import Config
from engine.ids import customer_uuid
from engine.queries import TOUCHPOINT_TOPIC, scan
from engine.service import Engine
from replay.rebuild import rebuild

from ..conftest import NOW
from ..helpers import facts_of
from ..poison import EDGES, POISON, check_rejections, mixed

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
    for args in (
        ["changes", "--limit", "100000"],
        ["actions", "--limit", "100000"],
        ["customer", "x-[/]-y"],
        ["customer", "[bold]c[/bold] :smile:"],
    ):
        shown = run(*args, data=data)
        assert shown.returncode == 0, (args, shown.stderr.decode()[-2000:])
        assert b"Traceback" not in shown.stderr
    assert b"x-[/]-y" in run("changes", "--limit", "100000", data=data).stdout
    assert b"[bold]c[/bold] :smile:" in run("customer", "[bold]c[/bold] :smile:", data=data).stdout


def test_records_at_the_limits_are_stored_snapshotted_and_replayed(config, tmp_path):
    # An order with a property nested 250 levels was accepted, and then every batch in which its
    # customer reached a snapshot point failed after committing. What is accepted now is storable,
    # snapshottable and replayable, up to the limits' edge values.
    config = config.model_copy(update={"store": config.store.model_copy(update={"snapshot_interval": 3})})
    longest = "x" * config.ingest.max_string_chars
    edges = [{**e, "customer_id": "edge"} for e in EDGES] + [
        {**EDGES[0], "event_id": "edge-long", "customer_id": "edge", "properties": {"note": longest}}
    ]
    with Engine(config, FixedClock(NOW)) as engine:
        for e in edges:  # one batch each: snapshots along the way
            assert engine.ingest([e]).accepted == 1
        assert engine.store.snapshots.recorder.select_events(customer_uuid("edge"))
    with Engine(config, FixedClock(NOW)) as engine:  # a new process: the customer from its snapshot
        assert engine.ingest([{**EDGES[0], "event_id": "edge-after", "customer_id": "edge"}]).accepted == 1
        view = engine.customer("edge")
        assert view["touchpoints"] == len(edges) + 1 and view["purchases"] == 2
        with Engine(Config(data_dir=str(tmp_path / "rebuilt")), FixedClock(NOW)) as target:
            rebuild(engine, target)
            assert facts_of(target) == facts_of(engine)
            assert target.customer("edge")["touchpoints"] == len(edges) + 1
