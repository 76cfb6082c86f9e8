"""The `journey` command end to end, through click's runner, with --json output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from engine.cli import main

from ..helpers import day, order, tp


def run(*args: str, env: dict, ok: bool = True):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert (result.exit_code == 0) is ok, result.output
    return result


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ingest_funnel_customer_changes_forget(tmp_path, workers):
    env = {"JOURNEY_DATA_DIR": str(tmp_path / "var")}
    lines = [
        json.dumps(r)
        for r in (
            tp("r", "customer.registered", day(0), traits={"name": "Ann"}),
            order("o1", day(1)),
            order("o2", day(2)),
            tp("v", "page.viewed", day(0), customer="c2"),
        )
    ]
    lines.insert(2, "{broken")
    lines.append(lines[1])  # a duplicate delivery
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "rejects.jsonl"
    summary = json.loads(
        run("ingest", str(src), "--rejects", str(rejects), "--workers", workers, "--json", env=env).output
    )
    assert (summary["accepted"], summary["duplicates"], summary["rejected"]) == (4, 1, 1)
    bad = orjson.loads(rejects.read_text().splitlines()[0])
    assert bad["record"] == 3 and bad["raw"] == "{broken" and "not valid JSON" in bad["reason"]

    funnel = json.loads(run("funnel", "--json", env=env).output)
    assert funnel["customers"] == 2
    assert funnel["stages"] == {"prospect": 1, "first_buyer": 0, "repeat": 1, "loyal": 0, "advocate": 0}
    assert set(funnel["health"]) == {"active", "at_risk", "lapsed"}
    early = json.loads(run("funnel", "--as-of", "2025-01-02", "--json", env=env).output)
    assert early["stages"]["first_buyer"] == 1

    view = json.loads(run("customer", "c1", "--json", env=env).output)
    assert view["stage"] == "repeat" and view["traits"]["name"] == "Ann"
    assert "c1" in run("customer", "c1", env=env).output
    run("customer", "nobody", env=env, ok=False)

    feed = [json.loads(line) for line in run("changes", "--json", env=env).output.splitlines()]
    assert feed and all("position" in c for c in feed)
    rest = run("changes", "--after", str(feed[0]["position"]), "--json", env=env).output.splitlines()
    assert len(rest) == len(feed) - 1

    assert json.loads(run("forget", "c1", "--json", env=env).output)["erased"] is True
    assert "name" not in json.loads(run("customer", "c1", "--json", env=env).output)["traits"]
    assert json.loads(run("tick", "--json", env=env).output) == {"changes": 0, "actions": 0}


def test_bad_time_and_bad_config_give_clear_errors(tmp_path):
    env = {"JOURNEY_DATA_DIR": str(tmp_path)}
    out = run("funnel", "--as-of", "last tuesday", env=env, ok=False).output
    assert "Invalid value for '--as-of': 'last tuesday' is not an ISO 8601 date-time" in out
    for odd in ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "1800-01-01", "2026-03-01T11:00:00+25:00"):
        out = run("customer", "c1", "--as-of", odd, env=env, ok=False).output  # once a traceback
        assert "Invalid value for '--as-of'" in out and "Traceback" not in out
    out = run("funnel", env={"JOURNEY_DATA_DIR": str(tmp_path / "typo")}, ok=False).output
    assert "no store at" in out and not (tmp_path / "typo").exists()  # nothing made where a typo points
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[lifecycle]\nwindow_days = -3\n")
    out = run("funnel", "--config", str(cfg), env=env, ok=False).output
    assert "lifecycle.window_days" in out


def test_a_rejects_file_that_cannot_be_written_is_refused_before_ingesting(tmp_path):
    env = {"JOURNEY_DATA_DIR": str(tmp_path / "var")}
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + json.dumps(order("o1", day(1))).encode() + b"\n{broken\n")  # a BOM first
    out = run("ingest", str(src), "--rejects", str(tmp_path / "no" / "dir" / "r.jsonl"), env=env, ok=False).output
    assert "--rejects" in out and "cannot be written" in out and not (tmp_path / "var").exists()
    out = run("ingest", str(src), "--rejects", str(src), env=env, ok=False).output
    assert "is the input file" in out and src.read_bytes().startswith(b"\xef\xbb\xbf")
    summary = json.loads(run("ingest", str(src), "--rejects", str(tmp_path / "r.jsonl"), "--json", env=env).output)
    assert (summary["accepted"], summary["rejected"]) == (1, 1)  # the BOM is not part of record 1


def test_simulate_then_demo(tmp_path):
    env = {"JOURNEY_DATA_DIR": str(tmp_path / "var")}
    out = tmp_path / "h.jsonl"
    a = json.loads(
        run(
            "simulate",
            "--customers",
            "50",
            "--seed",
            "3",
            "--until",
            "2026-01-01",
            "--out",
            str(out),
            "--json",
            env=env,
        ).output
    )
    first = out.read_bytes()
    run("simulate", "--customers", "50", "--seed", "3", "--until", "2026-01-01", "--out", str(out), env=env)
    assert out.read_bytes() == first and a["records"] == len(first.splitlines())

    demo = json.loads(run("demo", "--customers", "400", "--json", env=env).output)
    assert demo["ingest"]["accepted"] > 0 and demo["ingest"]["rejected"] == 0
    assert demo["ingest"]["duplicates"] > 0
    assert all(n > 0 for n in demo["funnel"]["stages"].values()), demo["funnel"]
    assert all(n > 0 for n in demo["funnel"]["health"].values()), demo["funnel"]
    assert demo["customer"]["stage"] and demo["changes"]
    by_policy = demo["actions"]["by_policy"]
    assert by_policy["welcome"]["issued"] == 400  # every new customer, once
    assert sum(p["suppressed"] for p in by_policy.values()) > 0
    assert {"consent", "quiet_hours"} <= set(demo["actions"]["blocked_by"])
    # every promotional policy has a control group (--holdout 0.1) and its uplift is measured
    # against it, beside the effect the simulated answers put in (--treatment-effect 0.15)
    promotional = {"second_purchase_nudge", "loyalty_enrolment", "referral_ask", "advocate_reward", "win_back"}
    uplift = demo["uplift"]
    assert uplift["treatment_effect"] == 0.15 and promotional <= set(uplift["policies"])
    assert all(by_policy[p]["held_out"] > 0 for p in promotional)
    for name, r in uplift["policies"].items():
        if r["conversion"]:
            c = r["conversion"]
            assert c["low"] <= c["difference"] <= c["high"] and 0 <= r["true_effect"] <= 0.15 + 0.1, (name, r)
    text = run("demo", "--customers", "100", env=env).output
    assert "Funnel as of" in text and "Lifecycle changes recorded" in text
    assert "Retention actions by policy" in text and "journey why" in text
    assert "Did the promotional actions work?" in text
    quiet = json.loads(
        run("demo", "--customers", "100", "--treatment-effect", "0", "--holdout", "0", "--json", env=env).output
    )
    assert (
        quiet["uplift"]["treatment_effect"] == 0
        and sum(p["held_out"] for p in quiet["actions"]["by_policy"].values()) == 0
    )
    assert all(
        r["verdict"].startswith(("no control group", "nothing to measure"))
        for r in quiet["uplift"]["policies"].values()
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_ingest_summary_counts_what_the_feeds_hold(tmp_path, workers):
    # It reported stage_changes 4,403, timer_changes 2,146 and actions 2,934 while the feeds held
    # 5,191 changes and 4,292 actions: decisions of due timers were counted as changes.
    from engine.simulator import simulate

    from ..conftest import NOW

    env = {"JOURNEY_DATA_DIR": str(tmp_path / "var")}
    src = tmp_path / "h.jsonl"
    src.write_bytes(b"\n".join(orjson.dumps(r) for r in simulate(150, 2, NOW)) + b"\n")
    summary = json.loads(run("ingest", str(src), "--backfill", "--workers", workers, "--json", env=env).output)
    changes = run("changes", "--limit", "1000000", "--json", env=env).output.splitlines()
    actions = run("actions", "--limit", "1000000", "--json", env=env).output.splitlines()
    assert (summary["changes"], summary["actions"]) == (len(changes), len(actions))
    welcomes = run("actions", "--limit", "1000000", "--policy", "welcome", "--json", env=env).output.splitlines()
    assert welcomes and len(welcomes) == sum(json.loads(a)["policy"] == "welcome" for a in actions)
    assert 0 < summary["timer_changes"] < summary["changes"] and 0 < summary["timer_actions"] < summary["actions"]
    assert set(summary) == {
        "accepted",
        "duplicates",
        "rejected",
        "changes",
        "actions",
        "timer_changes",
        "timer_actions",
    }


def test_blank_lines_standard_input_and_odd_options(tmp_path):
    env = {"JOURNEY_DATA_DIR": str(tmp_path / "var")}
    lines = (
        b"\n".join([orjson.dumps(order("o1", day(1))), b"", b"   ", b"{bad", orjson.dumps(order("o2", day(2)))])
        + b"\n\n"
    )
    result = CliRunner().invoke(main, ["ingest", "-", "--json"], input=lines, env=env, catch_exceptions=False)
    summary = json.loads(result.output)
    assert (summary["accepted"], summary["rejected"]) == (2, 1)  # blank lines are no records
    text = CliRunner().invoke(main, ["ingest", "-"], input=lines, env=env).output
    assert "rejected record 4:" in text  # numbers stay line numbers
    out = run("replay", "transitions", "--from", "2026-02-01", "--to", "2026-01-01", env=env, ok=False).output
    assert "comes after --to" in out
    out = run("replay", "time-to-stage", "--stage", "vip", env=env, ok=False).output
    assert "'vip' is not one of 'prospect', 'first_buyer', 'repeat', 'loyal', 'advocate'" in out
    assert "--limit" in run("changes", "--limit", "0", env=env, ok=False).output


def test_every_command_module_imports_on_its_own():
    # engine/cli.py loaded the plugin commands when imported, so `import streams.cli` failed
    # with "partially initialized module".
    import subprocess
    import sys

    for module in ("streams.cli", "replay.cli", "engine.cli"):
        done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        assert done.returncode == 0, (module, done.stderr[-1500:])


REPO = Path(__file__).parents[2]
JOURNEY = str(Path(sys.executable).parent / "journey")


def _block(text: str, lang: str, containing: str) -> str:
    """The fenced code block of a language that contains a string."""
    blocks = re.findall(rf"```{lang}\n(.*?)```", text, re.S)
    return next(b for b in blocks if containing in b)


def test_the_custom_policy_example_of_the_docs_runs_as_written(tmp_path):
    """docs/policies.md: a module in the working directory, the policy in ./config.toml, and the
    commands shown, run from that directory by the installed `journey`."""
    docs = (REPO / "docs" / "policies.md").read_text()
    (tmp_path / "mycompany").mkdir()
    (tmp_path / "mycompany" / "__init__.py").write_text("")
    (tmp_path / "mycompany" / "policies.py").write_text(_block(docs, "python", "def big_spender"))
    (tmp_path / "config.toml").write_text(_block(docs, "toml", "mycompany.policies:big_spender"))
    now = datetime.now(UTC)
    (tmp_path / "orders.jsonl").write_text(
        "".join(
            json.dumps(order(f"o{i}", now - timedelta(days=3), amount=amount, customer=customer)) + "\n"
            for i, (customer, amount) in enumerate([("c1", 600), ("c2", 100)])
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "JOURNEY_DATA_DIR"}
    for line in _block(docs, "bash", "journey ingest orders.jsonl").splitlines():
        command = line.split("#")[0].strip()
        if command.startswith("journey"):
            done = subprocess.run(
                command.replace("journey", JOURNEY, 1),
                shell=True,
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, done.stderr
    actions = [
        json.loads(line)
        for line in subprocess.run(
            [JOURNEY, "actions", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    ]
    assert [a["customer_id"] for a in actions if a["policy"] == "vip_care"] == ["c1"]  # 600 EUR, not 100


def test_exports_without_the_analytics_extra_say_how_to_install_it(tmp_path):
    """As if pandas, pyarrow and plotly were not installed (the demo's minimal setup before)."""
    env = {**os.environ, "JOURNEY_DATA_DIR": str(tmp_path / "var")}
    subprocess.run([JOURNEY, "demo", "--customers", "30"], env=env, capture_output=True, check=True, cwd=tmp_path)
    hide = "import sys; sys.modules.update(dict.fromkeys(('pandas', 'plotly', 'pyarrow')));"
    for args in (["report", "--out", str(tmp_path / "r.html")], ["replay", "export", "--out", str(tmp_path / "x")]):
        done = subprocess.run(
            [sys.executable, "-c", hide + "from engine.cli import main; main()", *args],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert "part of the analytics extra: pip install -e '.[analytics]'" in done.stderr


def test_an_unreachable_redis_is_said_in_a_line(tmp_path):
    for url in ("redis://127.0.0.1:1/0", "notaurl"):
        env = {**os.environ, "JOURNEY_DATA_DIR": str(tmp_path / "var"), "REDIS_URL": url}
        for args in (["customer", "c1", "--from-redis"], ["readmodel"]):
            done = subprocess.run([JOURNEY, *args], env=env, capture_output=True, text=True, cwd=tmp_path)
            assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
            assert f"cannot use Redis at {url}" in done.stderr


def test_text_output_has_no_python_words(tmp_path):
    """None, reprs: what a reader sees is words (a prospect's stage before its first touchpoint, a
    demo table's 'from' of a new customer, a welcome's reason)."""
    env = {**os.environ, "JOURNEY_DATA_DIR": str(tmp_path / "var")}
    demo = subprocess.run([JOURNEY, "demo", "--customers", "40"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert demo.returncode == 0 and "None" not in demo.stdout, demo.stdout
    data = demo.stdout.strip().splitlines()[-1].split()[1].split("=", 1)[1]
    env["JOURNEY_DATA_DIR"] = data
    early = subprocess.run(
        [JOURNEY, "customer", "cust-000001", "--as-of", "2000-01-01"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert early.returncode == 0 and "None" not in early.stdout and "stage   none" in early.stdout, early.stdout
    actions = subprocess.run([JOURNEY, "actions", "--limit", "1000"], env=env, capture_output=True, text=True)
    assert "None" not in actions.stdout and "changed none → prospect" in actions.stdout


def test_a_query_on_an_empty_postgresql_schema_says_so_and_creates_nothing(pg_config, tmp_path):
    from engine.persistence.postgres import pg_connect, postgres_store_exists

    pg = pg_config.store.postgres.model_copy(update={"schema_": pg_config.store.postgres.schema_ + "_none"})
    env = {
        **os.environ,
        "JOURNEY_STORE": "postgres",
        "PGHOST": pg.host,
        "PGPORT": str(pg.port),
        "PGUSER": pg.user,
        "PGDATABASE": pg.dbname,
    }
    (tmp_path / "config.toml").write_text(f'[store.postgres]\nschema = "{pg.schema_}"\n')
    done = subprocess.run([JOURNEY, "funnel"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1 and f"no store in PostgreSQL schema '{pg.schema_}'" in done.stderr, done.stderr
    assert not postgres_store_exists(pg)
    with pg_connect(pg) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (pg.schema_,)).fetchone() is None


@pytest.mark.parametrize("example, ladder", [("employees.toml", "employees"), ("dealers.toml", "dealers")])
def test_each_shipped_example_runs_as_a_demo_with_every_stage_populated(tmp_path, example, ladder):
    """journey simulate and journey demo with an example's config: its persons are generated from the
    ladder's definition, every stage of it is populated, and the funnel equals a plain evaluation of
    each simulated person's touchpoints (tests/support/oracle_ladder.py)."""
    from engine.config import load_config

    from ..support import oracle_ladder as plain

    config = str(Path(__file__).parents[2] / "examples" / example)
    env = {"JOURNEY_DATA_DIR": str(tmp_path / "var")}
    history = str(tmp_path / "h.jsonl")
    args = ["simulate", "--customers", "20", "--ladder-persons", "7", "--config", config, "--out", history, "--json"]
    out = json.loads(run(*args, env=env).output)
    assert out["ladders"] == {ladder: 7}
    demo = json.loads(run("demo", "--customers", "120", "--config", config, "--json", env=env).output)
    assert demo["ingest"]["rejected"] == 0
    (funnel,) = demo["ladders"]
    assert funnel["ladder"] == ladder and all(n > 0 for n in funnel["stages"].values()), funnel
    d = next(d for d in load_config(config).ladders if d.name == ladder)
    persons: dict[str, list] = {}
    for line in Path(demo["history"]).read_bytes().splitlines():
        r = orjson.loads(line)
        if r.get("customer_id", "").startswith(f"{ladder}-"):  # (a guest's records have none)
            at = datetime.fromisoformat(r["occurred_at"])
            persons.setdefault(r["customer_id"], []).append((r["event_id"], r["kind"], at, r["properties"]))
    T = datetime.fromisoformat(funnel["as_of"])
    want = dict.fromkeys(funnel["stages"], 0)
    for tps in persons.values():
        want[plain.status(d, tps, T)[0]] += 1
    assert funnel["stages"] == want and funnel["customers"] == len(persons) == 40
    text = run("demo", "--customers", "120", "--config", config, env=env).output
    assert f"persons on the {ladder} ladder" in text
