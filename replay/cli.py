"""Analyst commands, joined to `journey` through the `journey.commands` entry point:
`journey replay rebuild|whatif|journeys|transitions|time-to-stage|cohorts|policies|export`
and `journey report`."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from engine.cli import AS_OF, START, TIME, common, config_of, counted, emit, err, open_engine, progress, say
from engine.clock import FixedClock
from engine.config import Config, PostgresSettings
from engine.vocabulary import STAGES

from .history import History, load
from .journeys import Journeys, period_ends

Phase = Callable[[str, int | None, str], Callable[[int], None]]


@contextmanager
def analytics() -> Iterator[None]:
    """Exports and the report need the analytics extra (pandas, pyarrow, plotly): without it,
    say how to install it rather than fail with a traceback."""
    try:
        yield
    except ModuleNotFoundError as e:
        raise click.ClickException(
            f"this command needs {e.name}, part of the analytics extra: pip install -e '.[analytics]' "
            "(./scripts/demo.sh installs it)"
        ) from None


@click.group()
def replay() -> None:
    """Replay the history: rebuild, what-if, journeys over time, exports."""


def _as_of(engine: Any, at: datetime | None) -> datetime:
    return at or engine.clock.now()


@contextmanager
def phases(as_json: bool) -> Iterator[Phase]:
    """Progress bars on standard error, one a phase of a long command, gone when it ends; shown
    as `ingest` and `replay rebuild` show theirs: on a terminal, and not for --json.

    Yields `phase(label, total, unit)`, which adds a bar and returns what advances it. A bar
    without a total is shown as full once the next phase starts: phases run one after another."""
    with progress(None, "{task.description}", err.is_terminal and not as_json) as bar:

        def phase(label: str, total: int | None, unit: str) -> Callable[[int], None]:
            for task in bar.tasks:
                if task.total is None:
                    bar.update(task.id, total=task.completed)
            task_id = bar.add_task(label, total=total, rate=unit)
            return lambda n: bar.advance(task_id, n)

        yield phase


def _read(engine: Any, phase: Phase) -> History:
    return load(engine, progress=_events(engine, phase))


def _events(engine: Any, phase: Phase) -> Callable[[int], None]:
    """A bar of the events read: the log's last position is how many there are (every event has
    one, and it costs one query to know)."""
    return phase("reading history", engine.store.journal.max_notification_id() or 0, "events")


def _by_position(advance: Callable[[int], None]) -> Callable[[Any], None]:
    """A rebuild's on_step that advances a bar of source events: a step covers the log up to its position."""
    done = 0

    def step(s: Any) -> None:
        nonlocal done
        advance(s.position - done)
        done = s.position

    return step


def rebuild_target(config: Config) -> Config:
    if config.store.backend == "sqlite":
        return config.model_copy(update={"data_dir": str(config.data_path / "rebuild")})
    pg = config.store.postgres
    return config.model_copy(
        update={
            "store": config.store.model_copy(
                update={"postgres": pg.model_copy(update={"schema_": f"{pg.schema_}_rebuild"})}
            )
        }
    )


@replay.command()
@click.option("--swap", is_flag=True, help="When complete, put the rebuilt store in place of the live one.")
@click.option(
    "--keep-old/--no-keep-old",
    default=True,
    show_default=True,
    help="With --swap: keep the previous store (a full copy, beside the new one) or delete it.",
)
@common
def rebuild(swap: bool, keep_old: bool, config_path: str | None, as_json: bool) -> None:
    """Recompute every lifecycle change and decision from the touchpoints into a fresh store.

    Resumable: run it again after an interruption and it carries on. The live store is only read.
    With --swap the previous store is kept as a full copy (its name is printed) unless
    --no-keep-old deletes it.
    """
    from .rebuild import rebuild as run

    if not keep_old and not swap:
        raise click.BadParameter("only means something with --swap", param_hint="--no-keep-old")
    config = config_of(config_path)
    target_config = rebuild_target(config)
    started = datetime.now()
    with open_engine(config) as live, open_engine(target_config, FixedClock(datetime.now(UTC)), create=True) as target:
        total = live.store.journal.max_notification_id() or 0
        with progress(total, "rebuilding", err.is_terminal and not as_json) as bar:
            task = bar.add_task("rebuild", total=total, rate="")
            done = target.store.journal.get_position("rebuild:source")
            bar.update(task, completed=done)

            def step(s: Any) -> None:
                secs = max((datetime.now() - started).total_seconds(), 1e-6)
                bar.update(task, completed=s.position, rate=f"{(s.position - done) / secs:,.0f} events/s")

            steps = run(live, target, on_step=step)
        changes = len(target.changes(limit=10**9))
        same = changes == len(live.changes(limit=10**9))
    seconds = (datetime.now() - started).total_seconds()
    result: dict[str, Any] = {
        "events": total,
        "steps": steps,
        "seconds": round(seconds, 2),
        "events_per_second": round(total / max(seconds, 1e-6)),
        "changes": changes,
        "same_number_of_changes_as_live": same,
        "target": _where(target_config),
        "swapped": False,
    }
    if swap:
        result["swapped"] = True
        previous = _swap(config, target_config)
        if keep_old:
            result["previous"], result["previous_bytes"] = previous.name, previous.size()
        else:
            previous.drop()
            result["previous"], result["previous_bytes"] = None, 0
    if as_json:
        emit(result)
        return
    say(
        f"rebuilt {total:,} events in {seconds:.1f} s ({result['events_per_second']:,} events/s) into "
        f"{result['target']}"
    )
    if swap and keep_old:
        say(
            f"swapped in; the previous store is kept: {result['previous']} ({result['previous_bytes'] / 1e6:,.1f} MB; "
            "delete it when no longer needed, or pass --no-keep-old)"
        )
    elif swap:
        say("swapped in; the previous store was deleted (--no-keep-old)")


def _where(config: Config) -> str:
    if config.store.backend == "sqlite":
        return str(config.data_path / config.store.sqlite_file)
    return f"postgres schema {config.store.postgres.schema_}"


class Previous:
    """The store a swap replaced: its name, its size, and how to delete it."""

    def __init__(self, name: str, files: list[Path] | None = None, schema: tuple[PostgresSettings, str] | None = None):
        self.name, self.files, self.schema = name, files or [], schema

    def size(self) -> int:
        if self.schema is None:
            return sum(f.stat().st_size for f in self.files if f.exists())
        from engine.persistence.postgres import pg_connect

        pg, schema = self.schema
        with pg_connect(pg) as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                (schema,),
            ).fetchone()
        return int(row[0])

    def drop(self) -> None:
        for f in self.files:
            f.unlink(missing_ok=True)
        if self.schema is not None:
            from psycopg.sql import SQL, Identifier

            from engine.persistence.postgres import pg_connect

            pg, schema = self.schema
            with pg_connect(pg, autocommit=True) as conn:
                conn.execute(SQL("DROP SCHEMA {} CASCADE").format(Identifier(schema)))


def _swap(live: Config, rebuilt: Config) -> Previous:
    stamp = datetime.now().strftime("%Y%m%d%H%M%S")
    if live.store.backend == "sqlite":
        current = live.data_path / live.store.sqlite_file
        previous = current.with_name(f"{current.name}.before-rebuild-{stamp}")
        n = 1
        while previous.exists():  # two swaps in one second: never move over a kept copy
            n += 1
            previous = current.with_name(f"{current.name}.before-rebuild-{stamp}-{n}")
        moved = []
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{current}{suffix}").exists():
                shutil.move(f"{current}{suffix}", f"{previous}{suffix}")
                moved.append(Path(f"{previous}{suffix}"))
        new = rebuilt.data_path / rebuilt.store.sqlite_file
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{new}{suffix}").exists():
                shutil.move(f"{new}{suffix}", f"{current}{suffix}")
        shutil.rmtree(rebuilt.data_path, ignore_errors=True)  # what is left there: an empty key store, a lock
        return Previous(str(previous), files=moved)
    from psycopg.sql import SQL, Identifier

    from engine.persistence.postgres import pg_connect

    old, rebuilt_schema = live.store.postgres.schema_, rebuilt.store.postgres.schema_
    kept = f"{old}_before_rebuild_{stamp}_{datetime.now():%f}"  # unique: a rename over it would fail
    with pg_connect(live.store.postgres) as conn, conn.transaction():
        # The keys and the kept rejects stay with the live data: a rebuild does not recompute them.
        for table in ("journey_customer_keys", "journey_rejects"):
            conn.execute(SQL("DROP TABLE IF EXISTS {}.{}").format(Identifier(rebuilt_schema), Identifier(table)))
            conn.execute(
                SQL("ALTER TABLE IF EXISTS {}.{} SET SCHEMA {}").format(
                    Identifier(old), Identifier(table), Identifier(rebuilt_schema)
                )
            )
        conn.execute(SQL("ALTER SCHEMA {} RENAME TO {}").format(Identifier(old), Identifier(kept)))
        conn.execute(SQL("ALTER SCHEMA {} RENAME TO {}").format(Identifier(rebuilt_schema), Identifier(old)))
    return Previous(f"postgres schema {kept}", schema=(live.store.postgres, kept))


@replay.command()
@click.option(
    "--config",
    "alt_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The alternative rules and policies.",
)
@click.option(
    "--live-config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="The live config (default ./config.toml, else the packaged defaults).",
)
@click.option("--as-of", "as_of", type=TIME, help=AS_OF)
@click.option("--json", "as_json", is_flag=True)
def whatif(alt_path: str, config_path: str | None, as_of: datetime | None, as_json: bool) -> None:
    """Run other lifecycle rules and policies over the full history, with no side effects."""
    from .whatif import whatif as run

    alternative = config_of(alt_path)
    with phases(as_json) as phase, open_engine(config_of(config_path)) as live:
        h = _read(live, phase)
        customers = phase("evaluating customers", len(h.facts), "customers")
        replaying = phase("replaying under the alternative", live.store.journal.max_notification_id() or 0, "events")
        result = run(live, alternative, _as_of(live, as_of), h, on_step=_by_position(replaying), on_customers=customers)
    if as_json:
        emit(result)
        return
    say(
        f"as of {result['as_of'][:16]}Z, {result['changed']:,} of {result['customers']:,} customers would "
        f"be in another stage ({result['health_changed']:,} in another health) under the alternative "
        + (
            f"rules {result['rules']['alternative']} instead of {result['rules']['live']}:"
            if result["rules"]["alternative"] != result["rules"]["live"]
            else f"config (its rules_version is the live one's, {result['rules']['live']}: bump it to tell them apart):"
        )
    )
    for move, n in result["by_transition"].items():
        say(f"  {move.replace('->', ' → '):<28} {n:>8,}")
    for name, lad in result["ladders"].items():
        v = lad["versions"]
        if v["live"] is None or v["alternative"] is None:
            versions = f"only in the {'alternative' if v['live'] is None else 'live'} config"
        elif v["live"] == v["alternative"]:
            versions = f"version {v['live']}"
        else:
            versions = f"version {v['live']} → {v['alternative']}"
        say(
            f"ladder {name} ({versions}): {lad['changed']:,} of {lad['persons']:,} persons in another stage "
            f"({lad['health_changed']:,} in another health)"
        )
        for move, n in lad["by_transition"].items():
            say(f"  {move.replace('->', ' → '):<28} {n:>8,}")
    say("decisions per policy, compared by what the customer would get (action, channel, status, time):")
    for policy, row in result["actions"].items():
        say(
            f"  {policy}: live {_by_status(row['live'])} → alternative {_by_status(row['alternative'])}; "
            f"{row['added']:,} added, {row['removed']:,} removed, {row['changed']:,} changed "
            f"({row['same']:,} the same)"
        )
        for kind in ("added", "removed", "changed"):
            for e in row["examples"][kind]:
                said = [_experienced(e[side]) for side in ("live", "alternative") if side in e]
                say(f"    {kind:<8} {e['customer_id']}: " + " → ".join(said))
            if row[kind] > len(row["examples"][kind]):
                say(f"    {kind:<8} ... and {row[kind] - len(row['examples'][kind]):,} more")


def _by_status(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {status}" for status, n in counts.items() if n) or "no decisions"


def _experienced(d: dict[str, str]) -> str:
    """ "issued win_back_offer by email at 2026-03-01 12:00Z"; a deferred one says until when."""
    when = "until" if d["status"] == "deferred" else "at"
    return f"{d['status']} {d['action']} by {d['channel']} {when} {d['at'][:16].replace('T', ' ')}Z"


def _journeys(
    config_path: str | None, as_of: datetime | None, phase: Phase, timelines: bool = True
) -> tuple[Journeys, Any]:
    """The history read, and a bar for working out each customer's journey when the command
    asks for journeys (`timelines`; cohorts need purchases only)."""
    config = config_of(config_path)
    with open_engine(config) as engine:
        T = _as_of(engine, as_of)
        h = _read(engine, phase)
    customers = phase("evaluating customers", len(h.facts), "customers") if timelines else None
    return Journeys(h, engine.rules, T, customers), T


@replay.command()
@click.option("--as-of", "as_of", type=TIME, help=AS_OF)
@click.option("--months", default=24, show_default=True, type=click.IntRange(1, 1200))
@click.option("--period", type=click.Choice(["month", "week"]), default="month", show_default=True)
@common
def journeys(as_of: datetime | None, months: int, period: str, config_path: str | None, as_json: bool) -> None:
    """Stage and health distribution per month (or week)."""
    with phases(as_json) as phase:
        j, T = _journeys(config_path, as_of, phase)
        rows = j.distribution(period_ends(T - timedelta(days=31 * months), T, period))
    if as_json:
        emit({"period": period, "rows": rows})
        return
    say(
        f"{'period end':<12}"
        + "".join(f"{s:>12}" for s in rows[0]["stages"])
        + "".join(f"{h:>10}" for h in rows[0]["health"])
    )
    for r in rows:
        say(
            f"{r['period_end'][:10]:<12}"
            + "".join(f"{n:>12,}" for n in r["stages"].values())
            + "".join(f"{n:>10,}" for n in r["health"].values())
        )


@replay.command()
@click.option(
    "--from", "start", required=True, type=START, help="Start of the period (ISO 8601 time, or a date: from its start)."
)
@click.option("--to", "end", required=True, type=TIME, help="End of the period.")
@common
def transitions(start: datetime, end: datetime, config_path: str | None, as_json: bool) -> None:
    """The stage transition matrix between two dates."""
    if start > end:
        raise click.BadParameter(f"{start:%Y-%m-%d %H:%M} comes after --to {end:%Y-%m-%d %H:%M}", param_hint="--from")
    with phases(as_json) as phase:
        j, _ = _journeys(config_path, end, phase)
        result = j.transitions(start, end)
    if as_json:
        emit(result)
        return
    stages = list(next(iter(result["matrix"].values()), {}))
    say("from \\ to".ljust(14) + "".join(f"{s:>12}" for s in stages))
    for a, row in result["matrix"].items():
        say(f"{a:<14}" + "".join(f"{n:>12,}" for n in row.values()))


@replay.command("time-to-stage")
@click.option("--stage", default="loyal", show_default=True, type=click.Choice(STAGES))
@click.option("--origin", default="first_buyer", show_default=True, type=click.Choice(STAGES))
@click.option("--as-of", "as_of", type=TIME, help=AS_OF)
@common
def time_to_stage(stage: str, origin: str, as_of: datetime | None, config_path: str | None, as_json: bool) -> None:
    """Days from entering one stage (default first_buyer) to first entering another."""
    if stage == origin:
        raise click.UsageError(f"--stage and --origin are both {stage}: name two stages (e.g. --origin first_buyer)")
    with phases(as_json) as phase:
        j, _ = _journeys(config_path, as_of, phase)
        r = j.time_to_stage(stage, origin)
    if as_json:
        emit(r)
        return
    if r["count"] < 2:
        say(f"{r['count']} customers went from {origin} to {stage}")
        return
    say(
        f"{r['count']:,} customers went from {origin} to {stage}: median {r['median_days']:.0f} days "
        f"(quartiles {r['p25_days']:.0f}–{r['p75_days']:.0f})"
    )


@replay.command()
@click.option("--as-of", "as_of", type=TIME, help=AS_OF)
@click.option("--months", default=12, show_default=True, type=click.IntRange(1, 1200))
@common
def cohorts(as_of: datetime | None, months: int, config_path: str | None, as_json: bool) -> None:
    """Retention curves by acquisition cohort (month of the first purchase)."""
    with phases(as_json) as phase:
        j, _ = _journeys(config_path, as_of, phase, timelines=False)
        rows = j.cohorts(months)
    if as_json:
        emit({"cohorts": rows})
        return
    if not rows:
        say("no customer has purchased yet: no cohort")
        return
    width = max(len(r["retention"]) for r in rows)
    say("share of each cohort (customers by month of first purchase) that purchased in month k (k=0: that month):")
    say("cohort   customers  " + " ".join(f"{'k=' + str(k):>4}" for k in range(width)))
    for r in rows:
        say(f"{r['cohort']}  {r['customers']:>9,}  " + " ".join(f"{x:>4.0%}" for x in r["retention"]))


@replay.command()
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 36600))
@click.option("--as-of", "as_of", type=TIME, help=AS_OF)
@common
def policies(days: int, as_of: datetime | None, config_path: str | None, as_json: bool) -> None:
    """Per policy: actions issued, suppressed, deferred and held out, and what followed within N days
    (held out: the policy's control group; suppressed ones are no control group: they differ)."""
    with phases(as_json) as phase:
        j, _ = _journeys(config_path, as_of, phase)
        r = j.policy_outcomes(days)
    if as_json:
        emit(r)
        return
    for policy, row in r["policies"].items():
        fi, fs, fh = (row["followed"][s] for s in ("issued", "suppressed", "held_out"))
        held = f", held out {_pct(fh['purchased'])} of {row['held_out']:,}" if row["held_out"] else ""
        say(
            f"{policy:<24} issued {row['issued']:>6,} suppressed {row['suppressed']:>6,} "
            f"deferred {row['deferred']:>4,} | purchased within {days} d: issued "
            f"{_pct(fi['purchased'])}, suppressed {_pct(fs['purchased'])}{held}"
        )


@replay.command("uplift")
@click.option("--policy", help="One policy (default: every policy with decisions that would have been sent).")
@click.option(
    "--from", "start", type=START, help="Decisions from this time (ISO 8601 time, or a date: from its start)."
)
@click.option("--to", "end", type=TIME, help="Decisions up to this time.")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650), help="The outcome window.")
@common
def uplift_command(
    policy: str | None,
    start: datetime | None,
    end: datetime | None,
    days: int,
    config_path: str | None,
    as_json: bool,
) -> None:
    """Does an action work? Treated against held-out persons per policy (docs/policies.md): a
    purchase within N days and net revenue per person, with 95% intervals."""
    from engine.uplift import MIN_WITH_REVENUE, uplift

    if start and end and start > end:
        raise click.BadParameter(f"{start:%Y-%m-%d %H:%M} comes after --to {end:%Y-%m-%d %H:%M}", param_hint="--from")
    config = config_of(config_path)
    with phases(as_json) as phase, open_engine(config) as engine:
        h = _read(engine, phase)
        # a policy of the config, or one that decided before it was renamed or removed
        known = {p.name: p.purpose for p in config.policies} | {a["policy"]: a["purpose"] for a in h.actions}
        if policy is not None and policy not in known:
            promotional = sorted(name for name, purpose in known.items() if purpose == "promotional")
            raise click.BadParameter(
                f"no policy {policy!r}; the promotional policies: {', '.join(promotional) or 'none'}",
                param_hint="--policy",
            )
        if policy is not None and known[policy] != "promotional":
            raise click.BadParameter(
                f"{policy} is a {known[policy]} policy: sent to everyone, it has no control group to measure against",
                param_hint="--policy",
            )
        result = uplift(
            h.actions,
            dict(h.customers()),
            engine.value_rules,
            engine.ladders[0],
            engine.clock.now(),
            days,
            start,
            end,
            policy,
        )
    if as_json:
        emit(result)
        return
    if not result["policies"]:
        times = sorted(a["at"] for a in h.actions if a["purpose"] == "promotional")
        span = f" (promotional decisions from {times[0][:10]} to {times[-1][:10]})" if times else ""
        say("no promotional decision that would have been sent" + (f" by {policy}" if policy else "") + span)
    base = result["base_currency"]
    for name, r in result["policies"].items():
        say((name, "bold"), f": {r['verdict']}")
        for key, what in (
            ("conversion", f"purchased within {counted(days, 'day')}"),
            ("moved_up", "moved up the customer ladder"),
            ("not_lapsed", "not lapsed at the end"),
        ):
            if c := r[key]:
                say(
                    f"  {what}: treated {c['treated']:.1%} of {r['treated']:,}, held out {c['held_out']:.1%} of "
                    f"{r['held_out']:,} ({100 * c['difference']:+.1f} points, 95% CI {100 * c['low']:+.1f} to "
                    f"{100 * c['high']:+.1f})"
                )
        m = r["revenue_per_person"]
        if m is None and r["treated"] + r["held_out"]:
            say("  net revenue per person in those days: too few persons on a side to compare")
        elif m and m["low"] is None:
            say(
                f"  net revenue per person in those days: {m['difference']:+,.2f} {base} (treated {m['treated']:,.2f}, "
                f"held out {m['held_out']:,.2f}; no interval: fewer than {MIN_WITH_REVENUE} persons with revenue "
                "on a side)"
            )
        elif m:
            say(
                f"  net revenue per person in those days: {m['difference']:+,.2f} {base} "
                f"(95% CI {m['low']:+,.2f} to {m['high']:+,.2f}; treated {m['treated']:,.2f}, "
                f"held out {m['held_out']:,.2f})"
            )
        if r["open"] and r["treated"] + r["held_out"]:
            say(
                f"  not counted yet: {counted(r['open'], 'decision')} whose {counted(days, 'day')} are not over in "
                f"what is known (to {result['as_of'][:10]})"
            )


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


@replay.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--as-of", "as_of", type=TIME, help=AS_OF)
@click.option("--as-known", is_flag=True)
@common
def export(out: Path, as_of: datetime | None, as_known: bool, config_path: str | None, as_json: bool) -> None:
    """Parquet files of touchpoints, changes, actions and the as-of snapshot (no personal data)."""
    with analytics():
        from .export import frames, to_parquet
    with phases(as_json) as phase, open_engine(config_of(config_path)) as engine:
        tables = frames(engine, _as_of(engine, as_of), as_known, progress=_events(engine, phase))
        writing = phase("writing", len(tables), "files")
        written = {}
        for name, table in tables.items():
            written.update(to_parquet({name: table}, out))
            writing(1)
    rows = {k: len(v) for k, v in tables.items()}
    if as_json:
        emit({"files": written, "rows": rows})
        return
    for k, v in written.items():
        say(f"{k:<12} {rows[k]:>9,} rows  {v}")


@click.command()
@click.option("--out", default="report.html", show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as-of", "as_of", type=TIME, help=AS_OF)
@common
def report(out: Path, as_of: datetime | None, config_path: str | None, as_json: bool) -> None:
    """A self-contained HTML page of plots: funnel over time, transitions, cohorts, time to stage, policies."""
    with analytics():
        from .report import write_report
    with phases(as_json) as phase, open_engine(config_of(config_path)) as engine:
        h = _read(engine, phase)
        customers = phase("evaluating customers", len(h.facts), "customers")
        result = write_report(engine, out, _as_of(engine, as_of), history=h, progress=customers)
    emit(result) if as_json else say(f"wrote {out} ({result['bytes'] / 1e6:.1f} MB, {result['customers']:,} customers)")
