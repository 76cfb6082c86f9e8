"""`journey`: the command line. Every command takes --config and --json (one JSON object, or
JSON lines for feeds), so scripts never parse the human-readable output."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click
import orjson
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import parallel
from .clock import Clock, EventTimeClock, SystemClock, parse_time
from .config import Config, ConfigError, load_config
from .identity import is_visitor
from .limits import id_problem
from .memory import settle
from .money import minor_digits
from .persistence.postgres import postgres_store_exists
from .service import Engine, ForgetIncomplete
from .terminal import cell, console_for, line

# Plain consoles: whatever users sent is printed as it is (engine.terminal), never as markup.
console = console_for()
err = console_for(stderr=True)


def say(*parts: Any) -> None:
    """Print one line: strings as they are, (text, style) pairs styled; see engine.terminal.line."""
    console.print(line(*parts))


def say_lines(text: str) -> None:
    for row in text.splitlines():
        say(row)


def emit(obj: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.flush()


def common(f: Any) -> Any:
    f = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        help="Config file (default ./config.toml, else the packaged defaults).",
    )(f)


def config_of(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def open_engine(config: Config, clock: Clock | None = None, create: bool = False) -> Engine:
    """The engine on the configured store; a command that only reads (create=False) says so when
    there is no store there, rather than making an empty one where a typo pointed."""
    if not create and config.store.backend == "sqlite":
        db = config.data_path / config.store.sqlite_file
        if not db.exists():
            raise click.ClickException(
                f"no store at {db}: ingest touchpoints first, or point JOURNEY_DATA_DIR "
                "(or data_dir in config.toml) at the data directory"
            )
    if not create and config.store.backend == "postgres" and not postgres_store_exists(config.store.postgres):
        pg = config.store.postgres
        raise click.ClickException(
            f"no store in PostgreSQL schema {pg.schema_!r} of database {pg.dbname!r} at {pg.host}:{pg.port}: "
            "ingest touchpoints first, or set [store.postgres] schema (or PGDATABASE, PGHOST...)"
        )
    try:
        return Engine(config, clock)
    except (ConfigError, ValueError) as e:
        raise click.ClickException(str(e)) from None


class Time(click.ParamType):
    """An ISO 8601 time with an offset, or a date meaning its end (UTC), or with `start` its
    beginning (the --from of a period); click names the option in the error."""

    name = "time"

    def __init__(self, start: bool = False):
        self.start = start

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(value, self.start)
        except ValueError as e:
            # what the user typed is theirs to see, once
            self.fail(str(e) if str(value) in str(e) else f"{value!r} {e}", param, ctx)


TIME = Time()
START = Time(start=True)  # a date is its first instant: --from 2026-03-01 includes that day
AS_OF = "ISO 8601 time with an offset, or a date (its end, UTC), 1900-01-01 to 8999-12-31. Default: now."


class Journey(click.Group):
    """The core commands, and those of the outer layers (streams/, replay/), which register through
    the `journey.commands` entry point so that this module never imports them. They are loaded when
    the command line asks for them, so importing this module (or a plugin's) has no side effect.
    Core commands with an option served by an outer layer find it by name (`extension`)."""

    @staticmethod
    def plugins() -> dict[str, Any]:
        from importlib.metadata import entry_points

        return {ep.name: ep for ep in entry_points(group="journey.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.plugins()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        ep = self.plugins().get(name)
        if ep is not None:
            try:
                return ep.load()
            except ImportError as e:  # an optional part not installed: the core commands still work
                err.print(line(f"journey: `{name}` is unavailable ({e})"))
        return super().get_command(ctx, name)


def extension(group: str, name: str) -> Any:
    """What an outer layer registers under an entry point group (`journey.views`, `journey.demos`)
    for an option of a core command: the option is declared here, its work is done there."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=group, name=name):
        try:
            return ep.load()
        except ImportError as e:
            raise click.ClickException(f"{name} is unavailable: {e}") from None
    raise click.ClickException(f"{name} is not installed (no {group} entry point named {name!r})")


@click.group(cls=Journey)
@click.version_option(package_name="journey-engine")
def main() -> None:
    """Event-sourced customer-journey engine."""


@contextmanager
def reading(engine: Engine, as_json: bool, label: str = "reading the store") -> Iterator[Callable[[int], None]]:
    """A bar of the event log read by a command that folds every person (funnel, value ...), on a
    terminal and not for --json: the log's last position is how many events there are."""
    total = engine.store.journal.max_notification_id() or 0
    with progress(total, label, err.is_terminal and not as_json) as bar:
        task = bar.add_task(label, total=total, rate="events")
        yield lambda n: bar.advance(task, n)


def progress(total: int | None, label: str, enabled: bool) -> Progress:
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        disable=not enabled,
        transient=True,
    )


def ingest_file(engine: Engine, path: Path, show: bool, label: str = "ingesting", workers: int = 1) -> Any:
    """Ingest a JSON-lines file, or standard input for `-`, with a progress bar."""
    stdin = str(path) == "-"
    total = None if stdin else sum(1 for _ in path.open("rb"))
    with nullcontext(sys.stdin.buffer) if stdin else path.open("rb") as f:
        lines: Iterator[bytes] = (line.rstrip(b"\r\n") for line in f)
        return ingest_records(engine, _without_bom(lines), total, show, label, workers)


def ingest_records(
    engine: Engine,
    records: Iterator[bytes] | Iterator[dict],
    total: int | None,
    show: bool,
    label: str = "ingesting",
    workers: int = 1,
    on_batch: Callable[[int], None] | None = None,
) -> Any:
    """Ingest records with a progress bar (`total` records expected; more stretch it)."""
    with progress(total, label, show) as bar:
        task = bar.add_task(label, total=total, rate="")
        started = datetime.now()

        def advance(n: int) -> None:
            settle()  # the collector's policy, after each batch (engine.memory)
            if on_batch:
                on_batch(n)
            bar.advance(task, n)
            done = bar.tasks[0].completed
            if total is not None and done > total:
                bar.update(task, total=done)
            secs = max((datetime.now() - started).total_seconds(), 1e-6)
            bar.update(task, rate=f"{done / secs:,.0f}/s")

        return parallel.ingest(engine, records, workers, on_batch=advance)


def _without_bom(lines: Iterator[bytes]) -> Iterator[bytes]:
    """Files saved by some editors start with a UTF-8 byte order mark: not part of record 1."""
    first = next(lines, None)
    if first is None:
        return
    yield first.removeprefix(b"\xef\xbb\xbf")
    yield from lines


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every rejected record, with its reason, as JSON lines.",
)
@click.option(
    "--backfill",
    is_flag=True,
    help="Loading history: follow event time, so lifecycle changes are recorded as a live "
    "engine would have recorded them and timers fire along the way.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes sharing the work, each owning a shard of the customers (use the cores).",
)
@common
def ingest(
    file: Path, rejects: Path | None, backfill: bool, workers: int, config_path: str | None, as_json: bool
) -> None:
    """Ingest touchpoints from a JSON-lines FILE (one touchpoint per line; UTF-8, a byte order
    mark at its start and blank lines are skipped), or standard input for `-`."""
    out = None
    if rejects:  # before anything is ingested: a rejects file that cannot be written loses nothing
        if rejects.exists() and str(file) != "-" and rejects.resolve() == file.resolve():
            raise click.BadParameter("is the input file; write the rejects elsewhere", param_hint="--rejects")
        try:
            out = rejects.open("wb")
        except OSError as e:
            raise click.BadParameter(f"cannot be written: {e.strerror}", param_hint="--rejects") from None
    try:
        with open_engine(config_of(config_path), EventTimeClock() if backfill else None, create=True) as engine:
            report = ingest_file(engine, file, show=err.is_terminal and not as_json, workers=workers)
            engine.clock = SystemClock()
            report.add_timers(engine.run_due())  # what fell due while it ran
        if out:
            for r in report.rejections:
                out.write(orjson.dumps({**r.as_dict(), "raw": (r.raw or b"").decode("utf-8", "replace")}) + b"\n")
    finally:
        if out:
            out.close()
    summary = report.summary()
    if as_json:
        emit(summary)
        return
    say(
        f"accepted {summary['accepted']:,}, duplicates {summary['duplicates']:,}, "
        f"rejected {summary['rejected']:,}; "
        f"recorded {counted(summary['changes'], 'change')} (journey changes) and "
        f"{counted(summary['actions'], 'action')} (journey actions), "
        f"{summary['timer_changes'] + summary['timer_actions']:,} of them by due timers"
    )
    for r in report.rejections[:10]:
        say("  ", ("rejected", "red"), " ", r.message())
    if report.rejected > 10:
        say(f"  ... and {report.rejected - 10:,} more" + ("" if rejects else " (use --rejects FILE)"))


def share(name: str, default: float, help: str) -> Any:
    """An option that is a share, 0 to 1 (journey simulate's identity options: docs/identity.md)."""
    return click.option(name, default=default, show_default=True, type=click.FloatRange(0, 1), help=help)


@main.command()
@click.option("--customers", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--until", type=TIME, help="End of the simulated history (default: today, UTC).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@share("--anonymous", 0.0, "Share of the web and app touchpoints that also carry the device's anonymous id.")
@share("--shared-devices", 0.1, "With --anonymous: share of customers on another customer's device.")
@share(
    "--guests",
    0.0,
    "With --anonymous: share of customers who also browse and buy signed out half of the time (the device's id "
    "alone), whose guest history counts for them once they sign in on it.",
)
@click.option(
    "--ladder-persons",
    "ladder_persons_n",
    type=click.IntRange(0),
    help="Persons on each [[ladders]] of the config (default: a quarter of --customers, at least 40).",
)
@share(
    "--treatment-effect",
    0.0,
    "How often a person answers an issued promotional action with an order within 30 days: the engine runs "
    "(with the config's policies, on a temporary store) to know which actions it issues (docs/policies.md).",
)
@common
def simulate(
    customers: int,
    seed: int,
    until: datetime | None,
    out: Path,
    anonymous: float,
    shared_devices: float,
    guests: float,
    ladder_persons_n: int | None,
    treatment_effect: float,
    config_path: str | None,
    as_json: bool,
) -> None:
    """Write a reproducible synthetic history as JSON lines; with a config that declares
    [[ladders]], persons on each of them too (--ladder-persons); with --treatment-effect, the
    orders its persons place in answer to the promotional actions issued to them."""
    from .demo import answered_history, ladder_persons, today, with_ladders, write_history
    from .simulator import simulate as generate
    from .simulator import with_devices

    config = config_of(config_path)
    end = until or today()
    records = generate(customers, seed, end)
    records = with_devices(records, anonymous, shared_devices, seed, guests) if anonymous else records
    persons = ladder_persons(customers) if ladder_persons_n is None else ladder_persons_n
    records = with_ladders(config, records, persons, seed, end)
    answers = 0
    if treatment_effect and end > datetime.now(UTC):
        raise click.BadParameter(
            "with --treatment-effect the engine decides as the history unfolds, and it rejects what lies in the "
            "future: give an --until that has passed",
            param_hint="--until",
        )
    if treatment_effect:
        simulated = out.with_name(out.name + ".simulated")
        total = write_history(simulated, records)
        show = err.is_terminal and not as_json
        try:
            answers = answered_history(
                config,
                simulated,
                total,
                out,
                treatment_effect,
                seed,
                end,
                lambda engine, lines, total, on_batch: ingest_records(
                    engine, lines, total, show, "deciding", on_batch=on_batch
                ),
            )
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        finally:
            simulated.unlink()
        n = total + answers
    else:
        n = write_history(out, records)
    ladders = {d.name: persons for d in config.ladders}
    summary = {
        "records": n,
        "answers": answers,
        "treatment_effect": treatment_effect,
        "customers": customers,
        "ladders": ladders,
        "seed": seed,
        "until": end.isoformat(),
        "out": str(out),
    }
    on = "".join(f" and {k:,} persons on the {name} ladder" for name, k in ladders.items())
    if as_json:
        emit(summary)
        return
    say(f"wrote {n:,} touchpoints of {customers:,} customers{on} to {out}")
    if treatment_effect:
        say(
            f"  {answers:,} of them orders placed in answer to an issued promotional action "
            f"(--treatment-effect {treatment_effect:g}; ingest with --backfill to decide the same actions)"
        )


@main.command()
@click.option("--as-of", "as_of", type=TIME, help=AS_OF)
@click.option("--as-known", is_flag=True, help="Only touchpoints already recorded at that time.")
@click.option("--ladder", help="A ladder of the config ([[ladders]]; default: the customer ladder).")
@common
def funnel(as_of: datetime | None, as_known: bool, ladder: str | None, config_path: str | None, as_json: bool) -> None:
    """Customers per stage and health of a ladder as of a time."""
    with open_engine(config_of(config_path)) as engine:
        from . import queries

        try:
            with reading(engine, as_json) as advance:
                result = queries.funnel(engine, as_of or engine.clock.now(), as_known, ladder, advance)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
    emit(result) if as_json else print_funnel(result)


def print_read_model_row(row: dict[str, Any]) -> None:
    """A customer's row of the Redis read model (streams.readmodel.lookup), as words."""

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    say((row["customer_id"], "bold"), " in the Redis read model (as of the last change journey readmodel applied)")
    say(f"  stage {plain(row['stage'])}, health {plain(row['health'])}")
    for name, status in row["ladders"].items():
        say(f"  {name} ladder: stage {plain(status.get('stage'))}, health {plain(status.get('health'))}")
    net = row["net_revenue"]
    say(
        f"  purchases {row['purchases']:,}, revenue {money(row['revenue'])}"
        + (f", net revenue {net:,.2f} {row['base_currency']}" if net is not None else "")
        + f"; last purchase {plain(row['last_purchase'])[:10]}"
    )
    if row["model_id"]:
        clv = f", CLV {row['clv']:,.2f} {row['base_currency']}" if row["clv"] is not None else ""
        p_alive = f", P(alive) {row['p_alive']:.0%}" if row["p_alive"] is not None else ""
        say(f"  value segment {plain(row['value_segment'])}{p_alive}{clv} (model {row['model_id']})")
    say(
        f"  open complaint {yes(row['open_complaint'])}; overdue invoice {yes(row['overdue_invoice'])}; "
        f"erased {yes(row['erased'])}"
    )
    consent = ", ".join(f"{k} {'granted' if c['granted'] else 'withdrawn'}" for k, c in row["consent"].items())
    say(f"  consent {consent or 'none recorded'}")


def print_funnel(f: dict[str, Any]) -> None:
    who = "customers" if f.get("ladder", "customer") == "customer" else f"persons on the {f['ladder']} ladder"
    table = Table(title=f"Funnel as of {f['as_of'][:19]}Z — {f['customers']:,} {who}")
    table.add_column("stage")
    table.add_column(who.split()[0], justify="right")
    table.add_column("share", justify="right")
    for stage, n in f["stages"].items():  # in the ladder's order
        table.add_row(stage, f"{n:,}", f"{n / max(f['customers'], 1):.1%}")
    table.add_section()
    for health, n in f["health"].items():
        table.add_row(f"health: {health}", f"{n:,}", f"{n / max(f['customers'], 1):.1%}")
    if f.get("not_on_ladder"):
        table.add_section()
        table.add_row("not on this ladder", f"{f['not_on_ladder']:,}", "")
    if f.get("anonymous_visitors"):
        table.add_section()
        table.add_row("anonymous visitors (no customer id linked)", f"{f['anonymous_visitors']:,}", "")
    console.print(table)


@main.command()
@click.argument("customer_id")
@click.option("--as-of", "as_of", type=TIME, help=AS_OF)
@click.option("--as-known", is_flag=True, help="Only what had been recorded by then.")
@click.option(
    "--limit", default=25, show_default=True, type=click.IntRange(0), help="Timeline entries, newest first (0: all)."
)
@click.option(
    "--offset",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Skip this many of the newest entries (the next page: --offset 25).",
)
@click.option(
    "--from-redis",
    is_flag=True,
    help="What a service sees: the Redis read model (journey readmodel keeps it), not the store.",
)
@common
def customer(
    customer_id: str,
    as_of: datetime | None,
    as_known: bool,
    limit: int,
    offset: int,
    from_redis: bool,
    config_path: str | None,
    as_json: bool,
) -> None:
    """A customer's 360° view: stage and health with reasons, profile, timeline (newest first).

    An id that starts with a dash goes after `--`: journey customer -- -42."""
    if from_redis:
        if as_of or as_known or offset:
            raise click.UsageError("--from-redis reads the current read model: no --as-of, --as-known or --offset")
        row = extension("journey.views", "redis")(config_of(config_path), customer_id)
        if row is None:
            raise click.ClickException(
                f"no customer {customer_id!r} in the Redis read model (journey readmodel brings it up to date)"
            )
        emit(row) if as_json else print_read_model_row(row)
        return
    with open_engine(config_of(config_path)) as engine:
        try:
            view = engine.view(customer_id, as_of or engine.clock.now(), as_known, limit=limit or None, offset=offset)
        except KeyError:
            raise click.ClickException(f"no customer {customer_id!r} in the store") from None
    if not as_json and "identified_by" in view:
        if is_visitor(view["customer_id"]):  # linked to no customer
            say(f"{customer_id} is an anonymous visitor linked to no customer yet: nothing is derived or sent for it")
        else:
            say(f"{customer_id} is an anonymous id of {view['customer_id']} (journey identity show {customer_id})")
    emit(view) if as_json else print_customer(view, offset)


def counted(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def listed(values: list[str], most: int = 10) -> str:
    """Up to `most` values, then how many more."""
    if not values:
        return "none"
    more = len(values) - most
    return ", ".join(values[:most]) + (f" and {more:,} more" if more > 0 else "")


def money(amounts: dict[str, float]) -> str:
    """Net revenue per currency, as words: "120.50 EUR, 30.00 USD" or "none"."""
    return ", ".join(f"{v:,.{minor_digits(c)}f} {c}" for c, v in amounts.items()) or "none"


STALE_MODEL_DAYS = 90  # scoring this long after a model's calibration end gets a word of warning


def model_age(model: dict[str, Any], as_of: str) -> str | None:
    """A warning when scores as of a time come from a model fitted far from it, else None."""
    gap = (date.fromisoformat(as_of[:10]) - date.fromisoformat(model["calibration_end"])).days
    if gap > STALE_MODEL_DAYS:
        return (
            f"  (the model was fitted to purchases by {model['calibration_end']}, {gap:,} days before: its CLVs have "
            "fallen since, and fewer customers reach its cut-offs; journey value fit again)"
        )
    if gap < 0:
        return f"  (the model was fitted to purchases up to {model['calibration_end']}, after this date)"
    return None


def clv_total(total: float | None, base: str) -> str:
    return "none (no spend model)" if total is None else money({base: total})


def predicted_line(p: dict[str, Any], base: str) -> str:
    """A person's predictions in words (the value model's, docs/value.md)."""
    clv = "no spend model" if p["clv"] is None else f"CLV {money({base: p['clv']})} over {p['clv_months']} months"
    return (
        f"P(alive) {p['p_alive']:.0%}, {p['expected_transactions']:.2f} purchase days expected in "
        f"{p['expected_weeks']:g} weeks, {clv}; value segment {p['value_segment']} (model {p['model_id']})"
    )


def print_customer(v: dict[str, Any], offset: int = 0) -> None:
    say((v["customer_id"], "bold"), f" as of {v['as_of'][:19]}Z")
    say("  stage   ", (plain(v["stage"]), "bold"), f" — {v['stage_reason']}")
    if v["health"]:
        say("  health  ", (v["health"], "bold"), f" — {v['health_reason']}")
    for name, on in (v.get("ladders") or {}).items():  # the other ladders the person stands on
        say(f"  {name}: stage ", (on["stage"], "bold"), f" — {on['stage_reason']}")
        if on["health"]:
            say(f"  {name}: health ", (on["health"], "bold"), f" — {on['health_reason']}")
    say(
        f"  purchases {v['purchases']}, revenue {money(v['revenue'])}, first {(v['first_purchase'] or '-')[:10]}, "
        f"last {(v['last_purchase'] or '-')[:10]}; preferred channel {plain(v['preferred_channel'])}"
    )
    if v.get("value") and v["purchases"]:
        x = v["value"]
        base = x["base_currency"]
        other = f" (and, with no rate to {base}: {money(x['unconverted'])})" if x["unconverted"] else ""
        say(
            f"  value   net revenue {money({base: x['net_revenue']})}{other}, average order "
            f"{money({base: x['average_order_value'] or 0})}; a customer for {x['tenure_days'] or 0:,.0f} days"
        )
        if p := x.get("predicted"):
            say(f"          {predicted_line(p, base)}")
    say(f"  open complaints {listed(v['open_complaints'])}; overdue invoices {listed(v['overdue_invoices'])}")
    consent = ", ".join(f"{k} {'granted' if c['granted'] else 'withdrawn'}" for k, c in v["consent"].items())
    say(f"  consent {consent or 'none recorded'}")
    say("  traits  " + (", ".join(f"{k}={plain(val)}" for k, val in v["traits"].items()) or "none"))
    history = v["history"]
    say(f"  history (as corrected since, by effective time; the last {min(len(history), 10)} of {len(history):,}):")
    for tr in history[-10:]:
        say(f"    {tr['at'][:16]}  {tr['dimension']:<6} {plain(tr['from'])} → {plain(tr['to'])}: {tr['reason']}")
    shown, total = v["timeline"], v["timeline_total"]
    if shown:
        say(f"  timeline (as recorded; entries {offset + 1:,}-{offset + len(shown):,} of {total:,}, newest first):")
    else:
        say(f"  timeline: {total:,} entries, none from entry {offset + 1:,} on")
    for item in shown:
        if item["type"] == "touchpoint":
            say(f"    {item['at'][:16]}  {item['kind']:<20} {item['channel']:<10} {item['event_id']}")
        else:
            ladder = item.get("ladder") or "customer"
            say(
                f"    {item['at'][:16]}  " + ("" if ladder == "customer" else f"{ladder} "),
                (item["type"], "bold"),
                f" {plain(item['from'])} → {plain(item['to'])}: {item['reason']}",
            )


def plain(value: Any) -> str:
    """A value as a reader expects it: none for nothing, JSON for objects and arrays."""
    if value is None:
        return "none"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def feed_options(f: Any) -> Any:
    f = click.option("--customer", "customer_id", help="Only this customer's entries.")(f)
    f = click.option(
        "--limit", default=100, show_default=True, type=click.IntRange(1), help="Entries to show at most."
    )(f)
    f = click.option(
        "--after",
        default=0,
        show_default=True,
        type=click.IntRange(0, 2**63 - 1),  # a store's positions are 64-bit
        help="Feed position to read after (the last position you saw).",
    )(f)
    return common(f)


def print_feed(config_path: str | None, as_json: bool, read: Any, text: Any) -> None:
    with open_engine(config_of(config_path)) as engine:
        entries = read(engine)
    for entry in entries:
        emit(entry) if as_json else say(text(entry))
    if not entries and not as_json:  # JSON lines: none is an empty output
        err.print(line("no entries after that position"))


@main.command()
@feed_options
def changes(after: int, limit: int, customer_id: str | None, config_path: str | None, as_json: bool) -> None:
    """The lifecycle-change feed (stage and health), in order, from a position."""
    print_feed(
        config_path,
        as_json,
        lambda e: e.changes(after, limit, customer_id),
        lambda c: (
            f"{c['position']:>8}  {c['effective_at'][:16]}  {c['customer_id']:<14} "
            + ("" if c.get("ladder", "customer") == "customer" else f"{c['ladder']} ")
            + f"{c['dimension']:<6} {plain(c['from'])} → {plain(c['to'])}  ({c['reason']})"
        ),
    )


@main.command()
@click.option("--policy", help="Only this policy's actions (e.g. top_customer_call; one no longer configured too).")
@feed_options
def actions(
    after: int, limit: int, customer_id: str | None, policy: str | None, config_path: str | None, as_json: bool
) -> None:
    """The action feed: retention actions issued, suppressed and deferred, in order."""
    print_feed(
        config_path,
        as_json,
        lambda e: e.actions(after, limit, customer_id, policy),
        lambda a: (
            f"{a['position']:>8}  {a['at'][:16]}  {a['customer_id']:<14} {a['policy']:<22} "
            f"{a['status']:<10} {a['channel']:<6} {a['reason']}"
        ),
    )


@main.group()
def identity() -> None:
    """Identity resolution: which identifiers make one person, and why (docs/identity.md)."""


@identity.command("show")
@click.argument("identifier")
@common
def identity_show(identifier: str, config_path: str | None, as_json: bool) -> None:
    """The person IDENTIFIER (a customer id or an anonymous id) belongs to: its identifiers, the
    links that joined them with their evidence, and the links refused with the reason."""
    from .identity_view import person

    if (problem := id_problem(identifier)) is not None:
        raise click.BadParameter(f"{problem}: give a customer id or an anonymous id", param_hint="IDENTIFIER")
    config = config_of(config_path)
    with open_engine(config) as engine:
        p = person(engine.store.journal, config.identity, identifier)
    if as_json:
        emit(p)
        return
    if p["blocked"]:
        say(f"{identifier} {p['blocked']}")
    if not p["known"]:
        say(f"no links recorded for {identifier}: a person of its own")
        return
    say(f"{p['identifier']}: person {p['person']}, {counted(len(p['identifiers']), 'identifier')}")
    for i in p["identifiers"]:
        when = f"  linked {i['first_linked'][:16]} .. {i['last_linked'][:16]}" if i["first_linked"] else ""
        say(f"  {i['kind']:<10} {i['value']}{when}")
    for x in p["links"]:
        say(f"  linked   {x['a']} = {x['b']}  ({x['rule']}, evidence {x['evidence']}, {x['at'][:16]})")
    for x in p["refused"]:
        say(f"  refused  {x['a']} = {x['b']}  ({x['rule']}, evidence {x['evidence']}): {x['reason']}")


@identity.command("unlink")
@click.argument("a")
@click.argument("b")
@click.option(
    "--reason",
    required=True,
    help="Why they are not one person (kept with the unlink, and in the log: no personal data).",
)
@common
def identity_unlink(a: str, b: str, reason: str, config_path: str | None, as_json: bool) -> None:
    """Undo the link between identifiers A and B (a shared device, a wrong alias): from now on no
    link between them counts, and each person is derived without it. Recorded as a fact."""
    if not reason.strip():
        raise click.BadParameter("is empty: say why they are not one person", param_hint="--reason")
    if len(reason) > 2000:
        raise click.BadParameter("is longer than 2,000 characters", param_hint="--reason")
    for name, value in (("A", a), ("B", b)):
        if (problem := id_problem(value)) is not None:
            raise click.BadParameter(problem, param_hint=name)
    with open_engine(config_of(config_path)) as engine:
        try:
            done = engine.unlink(a, b, reason.strip())
        except ValueError as e:
            raise click.ClickException(str(e)) from None
    emit(done) if as_json else say(
        f"unlinked {done['a']} and {done['b']} (no longer counted: {counted(done['links_refused'], 'link')} "
        f"between them): {done['reason']}; {counted(done['changes'], 'lifecycle correction')} recorded"
    )


@main.command()
@click.option("--after", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1), help="Number to read after.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1), help="Entries to show at most.")
@common
def rejects(after: int, limit: int, config_path: str | None, as_json: bool) -> None:
    """Records refused over HTTP or Kafka, kept as they came with the reason (the dead-letter table).

    Kept with personal data as sent; `journey forget ID` deletes those sent for a customer id.
    """
    from . import rejects as dead_letters

    with open_engine(config_of(config_path)) as engine:
        entries = [dead_letters.as_dict(kept) for kept in engine.rejects.after(after, limit)]
    for e in entries:
        if as_json:
            emit(e)
            continue
        body = e["body"] if e["body"] is not None else f"(not UTF-8, base64) {e['body_base64']}"
        say(
            f"{e['number']:>6}  {e['received_at'][:19]}  {e['source']:<37} {e['message_id'] or '-'}  "
            f"{e['field'] or '(the record)'}: {e['reason']}"
        )
        say(f"        {body if len(body) <= 200 else body[:200] + '...'}")
    if not entries and not as_json:
        err.print(line("no refused records kept after that number"))


@main.command()
@click.argument("action_id")
@common
def why(action_id: str, config_path: str | None, as_json: bool) -> None:
    """Explain an action or a suppression in plain words, from its recorded trail."""
    with open_engine(config_of(config_path)) as engine:
        try:
            result = engine.why(action_id)
        except KeyError:
            raise click.ClickException(f"no action {action_id!r} in the store") from None
    emit(result) if as_json else say_lines(result["explanation"])


@main.command()
@click.argument("customer_id")
@common
def forget(customer_id: str, config_path: str | None, as_json: bool) -> None:
    """Erase a customer's personal data (deletes the key; the history stays, anonymous)."""
    with open_engine(config_of(config_path)) as engine:
        try:
            result = engine.forget(customer_id)
        except KeyError:
            raise click.ClickException(f"no customer {customer_id!r} in the store; nothing was changed") from None
        except ForgetIncomplete as e:
            raise click.ClickException(str(e)) from None
    dropped = result["rejects_deleted"]
    if not result["erased"]:
        said = "no such customer in the store"
    elif result["already_erased"] and not result["key_deleted"]:
        said = "already erased" + ("" if dropped else "; nothing was left to erase")
    else:
        said = "personal data erased"
    if dropped:
        said += f"; {counted(dropped, 'refused record')} sent for it deleted (journey rejects)"
    emit(result) if as_json else say(f"{customer_id}: {said}")


@main.command()
@common
def tick(config_path: str | None, as_json: bool) -> None:
    """Run due lifecycle timers now (window expiries, health thresholds)."""
    with open_engine(config_of(config_path)) as engine:
        run = engine.run_due()
    emit({"changes": run.changes, "actions": run.actions}) if as_json else say(
        f"recorded {counted(run.changes, 'change')} (journey changes) and "
        f"{counted(run.actions, 'action')} (journey actions)"
    )


@main.command()
@click.option("--customers", type=click.IntRange(1), help="[default: 2000; 200 with --streaming]")
@click.option("--seed", default=7, show_default=True, type=int)
@click.option(
    "--streaming",
    is_flag=True,
    help="Run the whole pipeline on throwaway local servers (Tansu broker, redis-server, a worker).",
)
@share(
    "--treatment-effect",
    0.15,
    "How often a simulated person answers an issued promotional action with an order within 30 days "
    "(engine.reactions; 0: the actions do nothing).",
)
@click.option(
    "--holdout",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="The control group of each promotional policy that sets no holdout of its own (0: none).",
)
@common
def demo(
    customers: int | None,
    seed: int,
    streaming: bool,
    treatment_effect: float,
    holdout: float,
    config_path: str | None,
    as_json: bool,
) -> None:
    """Simulate, ingest and derive on the embedded store, then show the results."""
    if streaming:
        ctx = click.get_current_context()
        for given in ("treatment_effect", "holdout"):
            if ctx.get_parameter_source(given) == click.core.ParameterSource.COMMANDLINE:
                raise click.UsageError(f"--{given.replace('_', '-')} is for the embedded demo, not --streaming")
        result = extension("journey.demos", "streaming")(
            config_of(config_path), customers or 200, seed, None if as_json else say
        )
        if as_json:
            emit(result)
        return
    customers = customers or 2000
    from .demo import run_demo

    show = err.is_terminal and not as_json
    try:
        summary = run_demo(
            config_of(config_path),
            customers,
            seed,
            lambda engine, records, total, on_batch: ingest_records(
                engine, records, total, show, "demo ingest", on_batch=on_batch
            ),
            treatment_effect,
            holdout,
        )
    except (ConfigError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        emit(summary)
        return
    i = summary["ingest"]
    say(f"simulated {customers:,} customers (seed {seed}) → {summary['history']}")
    say(
        f"ingested: {i['accepted']:,} accepted, {i['duplicates']:,} duplicates, {i['rejected']:,} rejected; "
        f"recorded {counted(i['changes'], 'change')} and {counted(i['actions'], 'action')}"
    )
    who = summary["identity"]
    say(
        f"identity: {who['customers_with_guest_history']:,} customers' guest history joined theirs when they "
        f"signed in; {who['anonymous_visitors']:,} visitors still anonymous (docs/identity.md)"
    )
    v = summary["value"]
    say(
        f"value: net revenue {money({v['base_currency']: v['net_revenue']})} from {v['buyers']:,} buyers; the top "
        f"{v['top_share']:.0%} bring {v['top_share_of_revenue'] or 0:.1%} of it; RFM: "
        + ", ".join(f"{name} {n:,}" for name, n in v["rfm_segments"].items())
        + " (journey value summary)"
    )
    if v["value_segments"]:
        model, base = v["model"], v["base_currency"]
        say(
            f"  value model {model['model_id']} fitted to {model['customers']:,} buyers: expected CLV over "
            f"{model['horizon']['clv_months']} months {clv_total(v['expected_clv'], base)}; value segments "
            + ", ".join(f"{name} {n:,}" for name, n in v["value_segments"].items())
            + " (journey value customers)"
        )
    say()
    print_funnel(summary["funnel"])
    for f in summary["ladders"]:
        print_funnel(f)
    table = Table(title="Lifecycle changes recorded")
    for col in ("dimension", "from", "to", "count"):
        table.add_column(col, justify="right" if col == "count" else "left")
    for c in summary["changes"]:  # every kind of change: the counts add up to the total above
        on = "" if c["ladder"] in ("customer", None) else f"{c['ladder']} "  # another ladder's, named
        table.add_row(on + c["dimension"], cell(plain(c["from"])), cell(plain(c["to"])), f"{c['count']:,}")
    console.print(table)
    table = Table(title="Retention actions by policy (latest status of each action)")
    for col in ("policy", "issued", "suppressed", "deferred", "held_out"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for policy, n in summary["actions"]["by_policy"].items():
        table.add_row(cell(policy), *(f"{n[s]:,}" for s in ("issued", "suppressed", "deferred", "held_out")))
    console.print(table)
    say("blocked by: " + ", ".join(f"{k} {v:,}" for k, v in summary["actions"]["blocked_by"].items()))
    print_uplift(summary["uplift"])
    print_customer(summary["customer"])
    if summary["why"]:
        say()
        say(("journey why", "bold"), " " + summary["why"]["action_id"])
        say_lines(summary["why"]["explanation"])
    say()
    # The venv's journey, as it was run, by its absolute path: the line works from any directory.
    me = str(Path(sys.argv[0]).absolute()) if Path(sys.argv[0]).name == "journey" else "journey"
    data = Path(summary["data_dir"]).resolve()
    # The config too, when it was given: its ladders, kinds and policies are part of what to explore.
    given = f" --config {Path(config_path).resolve()}" if config_path else ""
    say(f"explore: JOURNEY_DATA_DIR={data} {me} customer {summary['customer']['customer_id']}{given}")
    for f in summary["ladders"]:
        say(f"         JOURNEY_DATA_DIR={data} {me} funnel --ladder {f['ladder']}{given}")


def print_uplift(u: dict[str, Any]) -> None:
    """The demo's measured effect of each promotional policy, beside the effect simulated."""
    days, effect = u["days"], u["treatment_effect"]
    rows = {name: r for name, r in u["policies"].items() if r["conversion"]}
    if not rows:
        say(
            "no promotional policy has a control group to measure its actions against "
            "(journey demo --holdout 0.1 gives each one)"
        )
        return
    table = Table(
        title=f"Did the promotional actions work? A purchase within {days} days, treated vs held out",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("policy", no_wrap=True)
    for col in ("persons", "bought", "uplift", "95% CI", "simulated"):
        table.add_column(col, justify="right", no_wrap=True)
    for name, r in rows.items():
        c, truth = r["conversion"], r["true_effect"]
        table.add_row(
            cell(name),
            f"{r['treated']:,} / {r['held_out']:,}",
            f"{c['treated']:.0%} / {c['held_out']:.0%}",
            f"{100 * c['difference']:+.1f}",
            f"{100 * c['low']:+.1f}…{100 * c['high']:+.1f}",
            "—" if truth is None else f"{100 * truth:+.1f}",
        )
    console.print(table)
    say("  persons treated / held out and the share of each who bought; the uplift in points.")
    if effect:
        say(
            f"  The simulated persons answer an issued promotional action with an order within {days} days "
            f"{effect:.0%} of the time (--treatment-effect); 'simulated' is what that did to these persons, "
            "which the interval contains about 95 times in 100 (docs/policies.md says what it leaves out)."
        )
    else:
        say("  The simulated persons ignore the actions (--treatment-effect 0): any uplift is chance.")
    say("  More: journey replay uplift.")


@main.group()
def value() -> None:
    """Customer value: net revenue in one currency, the top customers' share, RFM (docs/value.md)."""


@value.command("summary")
@click.option("--as-of", "as_of", type=TIME, help=AS_OF)
@click.option("--as-known", is_flag=True, help="Only what had been recorded by then.")
@common
def value_summary(as_of: datetime | None, as_known: bool, config_path: str | None, as_json: bool) -> None:
    """Customers, net revenue in the base currency, the share the top customers bring, RFM segments."""
    from .value_view import summary

    with open_engine(config_of(config_path)) as engine, reading(engine, as_json) as advance:
        s = summary(engine, as_of or engine.clock.now(), as_known, advance)
    if as_json:
        emit(s)
        return
    base = s["base_currency"]
    say(f"as of {s['as_of'][:19]}Z: {s['customers']:,} customers, {s['buyers']:,} with a purchase")
    say(
        f"  net revenue {money({base: s['net_revenue']})}"
        + (f" (and, with no rate to {base}: {money(s['unconverted'])})" if s["unconverted"] else "")
    )
    if s["top_share_of_revenue"] is not None:
        say(
            f"  the top {s['top_share']:.0%} of buyers bring {s['top_share_of_revenue']:.1%} of it "
            f"(net revenue in {base}, ranked by it)"
        )
    table = Table(title="RFM segments (customers with a purchase)")
    table.add_column("segment")
    table.add_column("customers", justify="right")
    table.add_column("share", justify="right")
    for name, n in s["rfm_segments"].items():
        table.add_row(cell(name), f"{n:,}", f"{n / max(s['buyers'], 1):.1%}")
    console.print(table)
    model = s["model"]
    if model is None:
        say(f"  no value model in {base} yet: journey value fit --calibration-end DATE predicts P(alive) and CLV")
        return
    say(
        f"  value model {model['model_id']} (fitted to {model['customers']:,} customers' purchases by "
        f"{model['calibration_end']}): expected CLV over {model['horizon']['clv_months']} months "
        f"{clv_total(s['expected_clv'], base)}"
    )
    say(
        "  value segments by CLV: "
        + ", ".join(f"{name} {n:,}" for name, n in s["value_segments"].items())
        + " (journey value customers --segment NAME)"
    )
    if note := model_age(model, s["as_of"]):
        say(note)


def listing(f: Any) -> Any:
    """The options of the value lists: as of when, as known then, how many."""
    for option in (
        click.option(
            "--limit", default=25, show_default=True, type=click.IntRange(0), help="Customers to show (0: all)."
        ),
        click.option("--as-known", is_flag=True, help="Only what had been recorded by then (and the model in force)."),
        click.option("--as-of", "as_of", type=TIME, help=AS_OF),
    ):
        f = option(f)
    return common(f)


@value.command("rfm")
@click.option("--segment", help='Only the customers of this RFM segment (e.g. "At Risk").')
@listing
def value_rfm(
    as_of: datetime | None,
    as_known: bool,
    segment: str | None,
    limit: int,
    config_path: str | None,
    as_json: bool,
) -> None:
    """Customers with a purchase, by net revenue: RFM scores and segment, purchases, value."""
    from .value_view import customers

    config = config_of(config_path)
    known = [s.name for s in config.value.rfm_segments]
    if segment is not None and segment not in known:
        raise click.BadParameter(
            f"{segment!r} is not a segment; the segments: {listed(known, 20)}", param_hint="--segment"
        )
    with open_engine(config) as engine, reading(engine, as_json) as advance:
        rows = customers(engine, as_of or engine.clock.now(), segment, as_known, progress=advance)
    shown = rows if limit == 0 else rows[:limit]
    if as_json:
        emit(shown)
        return
    base = config.value.base_currency
    table = Table(
        title=f"{len(rows):,} customers" + (f" in {segment}" if segment else "") + f", by net revenue ({base})"
    )
    table.add_column("customer", no_wrap=True)
    for col in ("segment", "RFM", "days since", "purchases", "net revenue"):
        table.add_column(col, justify="right" if col in ("days since", "purchases", "net revenue") else "left")
    for r in shown:
        table.add_row(
            cell(r["customer_id"]),
            cell(r["rfm_segment"]),
            r["rfm"],
            f"{r['recency_days']:,.0f}",
            f"{r['purchases']:,}",
            money({base: r["net_revenue"]}),
        )
    console.print(table)
    if len(shown) < len(rows):
        say(f"... and {len(rows) - len(shown):,} more (--limit 0 for all)")


FEW_TO_FIT = 200  # below this many customers, `journey value fit` says its estimates are rough


@value.command("fit")
@click.option(
    "--calibration-end",
    "calibration_end",
    type=TIME,
    required=True,
    help="Fit to the purchases made by this date (its end, UTC).",
)
@click.option(
    "--holdout-end",
    "holdout_end",
    type=TIME,
    help="Also compare the predicted repeat purchase days after the calibration end with those made by then.",
)
@click.option("--dry-run", is_flag=True, help="Fit and report, but do not record the model (the one in force stays).")
@common
def value_fit(
    calibration_end: datetime, holdout_end: datetime | None, dry_run: bool, config_path: str | None, as_json: bool
) -> None:
    """Fit the value model (BG/NBD and Gamma-Gamma) and make it the model in force."""
    from .value_view import fit

    with open_engine(config_of(config_path)) as engine:
        try:
            with reading(engine, as_json, "reading the purchases, then fitting") as advance:
                out = fit(engine, calibration_end, holdout_end, record=not dry_run, progress=advance)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
    if as_json:
        emit(out)
        return
    f, g = out["bgnbd"], out["gamma_gamma"]
    say(
        (out["model_id"], "bold"),
        f": fitted to {out['customers']:,} customers' purchases by {out['calibration_end']}"
        + ("" if out["recorded"] else " (dry run: not recorded)"),
    )
    say(
        f"  BG/NBD       r {f['r']:.4f}, alpha {f['alpha']:.4f}, a {f['a']:.4f}, b {f['b']:.4f}; "
        f"log-likelihood {f['log_likelihood']:,.2f}"
    )
    if g is None:
        say("  Gamma-Gamma  not fitted: nobody has a repeat purchase of positive value (no CLV)")
    else:
        say(f"  Gamma-Gamma  p {g['p']:.4f}, q {g['q']:.4f}, gamma {g['gamma']:.4f} ({out['spenders']:,} customers)")
        if g["q"] <= 1:
            say("  (q <= 1: spend is so heavy-tailed that its mean does not exist; one-time buyers get no CLV)")
    if out["customers"] < FEW_TO_FIT:
        say(f"  (only {out['customers']:,} customers: estimates from so few are rough; prefer thousands)")
    base = out["base_currency"]
    say(
        "  value segments by CLV: "
        + ", ".join(
            f"{s['name']} from {money({base: s['min_clv']})}" if s["min_clv"] is not None else f"{s['name']} nobody"
            for s in out["value_segments"]
        )
        + f", then {out['rest_segment']}"
    )
    if h := out.get("holdout"):
        say(
            f"  holdout ({h['weeks']:.1f} weeks): {h['predicted']:,.1f} repeat purchase days predicted, "
            f"{h['actual']:,} made"
        )
        table = Table(title="repeat purchase days per customer in the holdout, by those in calibration")
        for col in ("in calibration", "customers", "actual", "predicted"):
            table.add_column(col, justify="right")
        for row in h["by_frequency"]:
            table.add_row(
                row["frequency"],
                f"{row['customers']:,}",
                "-" if row["actual"] is None else f"{row['actual']:.3f}",
                "-" if row["predicted"] is None else f"{row['predicted']:.3f}",
            )
        console.print(table)


@value.command("customers")
@click.option("--segment", help="Only the customers of this value segment (e.g. top).")
@listing
def value_customers(
    as_of: datetime | None,
    as_known: bool,
    segment: str | None,
    limit: int,
    config_path: str | None,
    as_json: bool,
) -> None:
    """Customers with a purchase by CLV, with P(alive), churn risk, expected purchases and RFM."""
    from .value_view import customers

    config = config_of(config_path)
    with open_engine(config) as engine:
        try:
            with reading(engine, as_json) as advance:
                rows = customers(
                    engine,
                    as_of or engine.clock.now(),
                    None,
                    as_known,
                    value_segment=segment,
                    scored=True,
                    progress=advance,
                )
        except ValueError as e:
            raise click.ClickException(str(e)) from None
    rows.sort(key=lambda r: (-(r["predicted"]["clv"] or 0), r["customer_id"]))
    shown = rows if limit == 0 else rows[:limit]
    if as_json:
        emit(shown)
        return
    base = config.value.base_currency
    title = (
        f"{len(rows):,} customers"
        + (f" in {segment}" if segment else "")
        + f", by CLV (net revenue and CLV in {base}; "
        "alive: P(alive))"
    )
    table = Table(title=title)
    table.add_column("customer", no_wrap=True)
    for col in ("segment", "CLV", "alive", "expected", "RFM segment", "revenue"):
        left = col in ("segment", "RFM segment")
        table.add_column(col, justify="left" if left else "right", no_wrap=not left)
    for r in shown:
        p = r["predicted"]
        table.add_row(
            cell(r["customer_id"]),
            cell(p["value_segment"]),
            "-" if p["clv"] is None else f"{p['clv']:,.2f}",
            f"{p['p_alive']:.0%}",
            f"{p['expected_transactions']:.2f}",
            cell(r["rfm_segment"]),
            f"{r['net_revenue']:,.2f}",
        )
    console.print(table)
    if len(shown) < len(rows):
        say(f"... and {len(rows) - len(shown):,} more (--limit 0 for all)")
    if not rows:
        say("no customer with a purchase" + (f" in {segment}" if segment else "") + " by then")
    if shown:
        p = shown[0]["predicted"]
        say(
            f"CLV over {p['clv_months']} months; expected: purchase days in the next {p['expected_weeks']:g} "
            f"weeks; model {p['model_id']}"
        )


@value.command("models")
@common
def value_models(config_path: str | None, as_json: bool) -> None:
    """The value models recorded, oldest first: the last is in force."""
    from .value_view import models

    with open_engine(config_of(config_path)) as engine:
        rows = models(engine)
        in_force = engine.value_models.in_force()
    if as_json:
        emit(rows)
        return
    if not rows:
        say("no value model yet: journey value fit --calibration-end DATE")
    for m in rows:
        f, g, base = m["bgnbd"], m["gamma_gamma"], m["base_currency"]
        now = in_force is not None and (m["model_id"], m["recorded_at"]) == (
            in_force.model_id,
            in_force_at(rows, in_force),
        )
        say(
            (m["model_id"], "bold"),
            f" recorded {m['recorded_at'][:19]}Z: {m['customers']:,} customers by {m['calibration_end']}, in {base}"
            + (" (in force)" if now else ""),
        )
        spend = "no spend model" if g is None else f"p {g['p']:.3f}, q {g['q']:.3f}, gamma {g['gamma']:.3f}"
        cuts = ", ".join(
            f"{s['name']} from {money({base: s['min_clv']})}" if s["min_clv"] is not None else f"{s['name']} nobody"
            for s in m["value_segments"]
        )
        say(f"    r {f['r']:.3f}, alpha {f['alpha']:.3f}, a {f['a']:.3f}, b {f['b']:.3f}; {spend}; {cuts}")


def in_force_at(rows: list[dict[str, Any]], model: Any) -> str:
    """When the model in force was last recorded (a model may be recorded more than once)."""
    return max(r["recorded_at"] for r in rows if r["model_id"] == model.model_id)


@main.group()
def ladders() -> None:
    """The ladders a person's stages are decided on: show them, check a config (docs/ladders.md)."""


@ladders.command("show")
@common
def ladders_show(config_path: str | None, as_json: bool) -> None:
    """Each ladder as readable rules: what counts, the stages, the health rules."""
    from .ladders.show import lines

    found = config_of(config_path).compiled_ladders()
    if as_json:
        emit([{"name": lad.name, "version": lad.version, "definition": lad.definition.model_dump()} for lad in found])
        return
    for lad in found:
        say_lines("\n".join(lines(lad.definition, lad.version)))


@ladders.command("check")
@common
def ladders_check(config_path: str | None, as_json: bool) -> None:
    """Validate a config file's ladders without a store: names, kinds, properties, and stages or
    health rules that can never be reached. Exits 1 on a problem."""
    from .catalog import Catalog
    from .ladders.check import problems

    try:
        config = load_config(config_path)
    except ConfigError as e:  # a config that cannot load is the first problem
        if as_json:
            emit([{"ladder": None, "version": None, "problems": [str(e)]}])
            sys.exit(1)
        raise click.ClickException(str(e)) from None
    kinds = Catalog(config.kinds).properties()
    found = config.compiled_ladders()
    report = [
        {"ladder": lad.name, "version": lad.version, "problems": problems(lad.definition, kinds)} for lad in found
    ]
    if as_json:
        emit(report)
    else:
        for r in report:
            if r["problems"]:
                for p in r["problems"]:
                    say((p, "red"))
            else:
                lad = next(x for x in found if x.name == r["ladder"])
                say(
                    f"ok: ladder {lad.name} (version {lad.version}): {len(lad.stages)} stages, "
                    f"{len(lad.healths)} health rules"
                )
    if any(r["problems"] for r in report):
        sys.exit(1)


if __name__ == "__main__":
    main()
