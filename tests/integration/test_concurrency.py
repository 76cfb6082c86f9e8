"""Real processes writing one store at once: two `journey ingest` runs over overlapping files, and
`journey forget` racing an ingest of the same customer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from engine.clock import FixedClock
from engine.config import dump_toml
from engine.ids import customer_uuid
from engine.keys import ERASED_KEY
from engine.queries import TOUCHPOINT_TOPIC, scan
from engine.service import Engine
from engine.simulator import simulate

from ..conftest import NOW
from ..helpers import day, tp

JOURNEY = str(Path(sys.executable).parent / "journey")


def journey(config_file: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [JOURNEY, *args, "--config", str(config_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out.decode(), err.decode()


def write(path: Path, records: list) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in records) + b"\n")
    return path


@pytest.mark.parametrize("trial", [1, 2])
def test_two_ingest_processes_over_overlapping_files_count_everything_once(config, tmp_path, trial):
    # SQLite: the second process died on UNIQUE(originator_id, originator_version) after its
    # retries (4 of 4 trials). Small batches make the two collide often.
    config = config.model_copy(update={"ingest": config.ingest.model_copy(update={"batch_size": 50})})
    cfg = tmp_path / "journey.toml"
    cfg.write_text(dump_toml(config))
    records = list(simulate(150, trial, NOW))
    third = len(records) // 3
    a = write(tmp_path / "a.jsonl", records[: 2 * third])
    b = write(tmp_path / "b.jsonl", records[third:][::-1] + records[: third // 2])
    procs = [journey(cfg, "ingest", str(a), "--json"), journey(cfg, "ingest", str(b), "--json")]
    results = [finish(p) for p in procs]
    for code, _, err in results:
        assert code == 0 and "Traceback" not in err, err[-3000:]
    summaries = [json.loads(out) for _, out, _ in results]
    unique = len({r["event_id"] for r in records})
    assert sum(s["accepted"] for s in summaries) == unique
    assert sum(s["accepted"] + s["duplicates"] for s in summaries) == 2 * third + len(records) - third + third // 2
    with Engine(config) as engine:  # the clock the processes ran on
        ids = [b["touchpoint"]["event_id"] for _, _, b in scan(engine, TOUCHPOINT_TOPIC)]
        assert len(ids) == len(set(ids)) == unique
        changes = engine.changes(limit=10**6)
        assert len({c["change_id"] for c in changes}) == len(changes)
        for customer in {r["customer_id"] for r in records}:  # the feed ends where the history says
            stages = [c["to"] for c in changes if c["customer_id"] == customer and c["dimension"] == "stage"]
            assert stages[-1] == engine.customer(customer)["stage"], customer


def test_forget_racing_an_ingest_leaves_the_customer_erased_for_good(config, tmp_path):
    # Once forget deleted the key and died on a conflict: the customer was not marked erased, the
    # ingest made a new key, and 1,500 later emails were readable. Now: erased, and no new key ever.
    cfg = tmp_path / "journey.toml"
    cfg.write_text(dump_toml(config))
    for trial, delay in enumerate((0.0, 0.4, 1.2)):
        victim = f"victim-{trial}"
        records = [
            tp(
                f"t{trial}-{i}",
                "profile.updated",
                day(i / 10),
                customer=victim,
                traits={"email": f"{victim}-{i}@mail.test", "tier": "gold"},
            )
            for i in range(3000)
        ]
        first = write(tmp_path / f"first-{trial}.jsonl", records[:1])
        rest = write(tmp_path / f"rest-{trial}.jsonl", records[1:])
        assert finish(journey(cfg, "ingest", str(first)))[0] == 0
        ingest = journey(cfg, "ingest", str(rest), "--json")
        time.sleep(delay)
        code, out, err = finish(journey(cfg, "forget", victim, "--json"))
        assert code == 0, err
        assert json.loads(out)["erased"] is True
        code, out, err = finish(ingest)
        assert code == 0 and "Traceback" not in err, err[-3000:]
        assert json.loads(out)["accepted"] == len(records) - 1
        with Engine(config, FixedClock(NOW)) as engine:
            view = engine.customer(victim)
            assert view["erased"] is True and "email" not in view["traits"], view["traits"]
            assert engine.keys.get_many([str(customer_uuid(victim))]) == {str(customer_uuid(victim)): ERASED_KEY}
            # a later touchpoint with personal data makes no key: its personal fields are dropped
            engine.ingest(
                [
                    tp(
                        f"t{trial}-late",
                        "profile.updated",
                        day(400),
                        customer=victim,
                        traits={"email": f"{victim}-late@mail.test"},
                    )
                ]
            )
            assert engine.keys.get_many([str(customer_uuid(victim))]) == {str(customer_uuid(victim)): ERASED_KEY}
            assert "email" not in engine.customer(victim)["traits"]
            assert not any("@mail.test" in json.dumps(b["touchpoint"]) for _, _, b in scan(engine, TOUCHPOINT_TOPIC))


def test_forget_of_an_unknown_customer_changes_nothing_and_says_so(sqlite_config, tmp_path):
    cfg = tmp_path / "journey.toml"
    cfg.write_text(dump_toml(sqlite_config))
    with Engine(sqlite_config, FixedClock(NOW)) as engine:
        engine.ingest([tp("t1", "page.viewed", day(1), customer="somebody")])
    code, _, err = finish(journey(cfg, "forget", "nobody"))
    assert code == 1 and "no customer 'nobody' in the store; nothing was changed" in err
    with Engine(sqlite_config, FixedClock(NOW)) as engine:
        assert engine.keys.get_many([str(customer_uuid("nobody"))]) == {}  # no tombstone either
