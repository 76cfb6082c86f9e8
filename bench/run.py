"""Benchmarks: each figure beside its baseline, measured in the same run, written to docs/benchmarks.md.

    python bench/run.py                 # medium scale (a few minutes), rewrites docs/benchmarks.md
    python bench/run.py --scale full    # 1M touchpoints over 100k customers (long)
    python bench/run.py --scale smoke   # seconds: what CI runs, to keep the scripts working

Every measurement runs in its own process, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCALES = {  # customers, naive sample, streaming touchpoints
    "smoke": (300, 500, 0),  # no streaming in the smoke run: CI tests cover the worker
    "medium": (5_000, 5_000, 5_000),
    "full": (100_000, 20_000, 50_000),
}
UNTIL = datetime(2026, 11, 1, tzinfo=UTC)


def history_file(customers: int, work: Path) -> Path:
    path = work / f"history-{customers}.jsonl"
    if not path.exists():
        import orjson

        from engine.simulator import simulate

        with path.open("wb") as f:
            for r in simulate(customers, 1, UNTIL):
                f.write(orjson.dumps(r) + b"\n")
    return path


def account_file(n: int, work: Path) -> Path:
    """One dealer's history of n touchpoints (engine.simulator.simulate_account)."""
    path = work / f"account-{n}.jsonl"
    if not path.exists():
        import orjson

        from engine.simulator import simulate_account

        with path.open("wb") as f:
            for r in simulate_account("dealer-1", n, 1, UNTIL):
                f.write(orjson.dumps(r) + b"\n")
    return path


def dir_mb(path: str) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 1e6


def renamed_head(history: str, n: int, work: Path) -> str:
    """The first n touchpoints of the history as other customers (ids renamed): the same work,
    to ingest into an empty store and into the full one, so only the store's size differs."""
    path = work / f"head-{n}.jsonl"
    with open(history, "rb") as f, path.open("wb") as out:
        for line, _ in zip(f, range(n)):
            out.write(line.replace(b'"cust-', b'"other-').replace(b'"sim-1-', b'"other-1-'))
    return str(path)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the measurements, each run in a subprocess -------------------------------------------------


def children_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def rate_between(marks: list[tuple[int, float]], lo: int, hi: int) -> float:
    """Touchpoints/s between the progress marks nearest to lo and hi touchpoints ingested."""
    start = max((m for m in marks if m[0] <= lo), default=(0, 0.0))
    end = min((m for m in marks if m[0] >= hi), default=marks[-1])
    return (end[0] - start[0]) / max(end[1] - start[1], 1e-9)


def m_ingest(args: dict) -> dict:
    """The full pipeline (validate, dedup, append, lifecycle, policies, timers) reading the history
    file as `journey ingest --backfill --workers N` does: batches of 500, one transaction each."""
    from engine import parallel
    from engine.clock import EventTimeClock
    from engine.config import Config, PostgresSettings, StoreSettings
    from engine.memory import settle
    from engine.service import Engine

    store = StoreSettings(cache_customers=args["customers"])
    if args["backend"] == "postgres":
        store = StoreSettings(
            cache_customers=args["customers"],
            backend="postgres",
            postgres=PostgresSettings(
                dbname=os.environ.get("PGDATABASE", "test"),
                user=os.environ.get("PGUSER", "postgres"),
                host=os.environ.get("PGHOST", "127.0.0.1"),
                schema=f"bench_{os.getpid()}",
            ),
        )
    config = Config(data_dir=args["data"], store=store)
    marks: list[tuple[int, float]] = [(0, 0.0)]
    started = time.perf_counter()

    def on_batch(n: int) -> None:
        settle()  # as journey ingest does after each batch (engine.memory)
        marks.append((marks[-1][0] + n, time.perf_counter() - started))

    try:
        with Engine(config, EventTimeClock()) as engine, open(args["history"], "rb") as f:
            report = parallel.ingest(engine, (line.rstrip(b"\n") for line in f), args["workers"], on_batch=on_batch)
        seconds = time.perf_counter() - started
    finally:
        if args["backend"] == "postgres":
            from engine.persistence.postgres import pg_connect

            with pg_connect(store.postgres, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{store.postgres.schema_}" CASCADE')
    n = marks[-1][0]
    growth = (
        {"at_100k": rate_between(marks, 0, 100_000), "at_1m": rate_between(marks, 900_000, 1_000_000)}
        if n >= 1_000_000
        else {"first_tenth": rate_between(marks, 0, n // 10), "last_tenth": rate_between(marks, n - n // 10, n)}
    )
    return {
        "touchpoints": n,
        "accepted": report.accepted,
        "seconds": seconds,
        "rate": n / seconds,
        "workers": args["workers"],
        "growth": growth,
        "peak_mb": max(peak_mb(), children_peak_mb()),
    }


def m_naive(args: dict) -> dict:
    """What the eventsourcing docs suggest: one load -> record -> save per touchpoint."""
    from uuid import NAMESPACE_URL, UUID, uuid5

    import orjson
    from eventsourcing.application import AggregateNotFoundError, Application
    from eventsourcing.domain import Aggregate, event

    class Shopper(Aggregate):
        @staticmethod
        def create_id(customer_id: str):
            return uuid5(NAMESPACE_URL, customer_id)

        @event("Registered")
        def __init__(self, customer_id: str):
            self.seen: list[str] = []

        @event("Touched")
        def touch(self, touchpoint: dict) -> None:
            self.seen.append(touchpoint["event_id"])

    app: Application[UUID] = Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(Path(args["data"]) / "naive.db")}
    )
    lines = customer_sample(args["history"], args["sample"])
    started = time.perf_counter()
    for line in lines:
        tp = orjson.loads(line)
        cid = uuid5(NAMESPACE_URL, tp["customer_id"])
        shopper: Shopper
        try:
            shopper = app.repository.get(cid)
        except AggregateNotFoundError:
            shopper = Shopper(tp["customer_id"])
        if tp["event_id"] not in shopper.seen:
            shopper.touch(tp)
            app.save(shopper)
    seconds = time.perf_counter() - started
    return {"touchpoints": len(lines), "seconds": seconds, "rate": len(lines) / seconds, "peak_mb": peak_mb()}


def customer_sample(history: str, size: int) -> list[bytes]:
    """About `size` touchpoints: the whole histories of customers picked by a hash of their id, in
    the order of the file. (The first lines of the file would be customers' first touchpoints
    only, whose loads are cheap: the naive loop reloads a customer's whole history each time.)"""
    import zlib

    import orjson

    by: dict[str, list[int]] = {}
    lines = Path(history).read_bytes().splitlines()
    for i, line in enumerate(lines):
        by.setdefault(orjson.loads(line)["customer_id"], []).append(i)
    picked: list[int] = []
    for customer in sorted(by, key=lambda c: zlib.crc32(c.encode())):
        if len(picked) >= size:
            break
        picked += by[customer]
    return [lines[i] for i in sorted(picked)]


def m_raw_insert(args: dict) -> dict:
    """The machine's limit: JSON decode + batched inserts into a bare table with the same keys."""
    import orjson

    lines = Path(args["history"]).read_bytes().splitlines()
    db = sqlite3.connect(str(Path(args["data"]) / "raw.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE events (customer TEXT, version INTEGER, state BLOB, PRIMARY KEY (customer, version))")
    db.execute("CREATE TABLE ids (event_id TEXT PRIMARY KEY)")
    versions: dict[str, int] = {}
    started = time.perf_counter()
    for i in range(0, len(lines), 500):
        rows, ids = [], []
        for line in lines[i : i + 500]:
            tp = orjson.loads(line)
            v = versions.get(tp["customer_id"], 0) + 1
            versions[tp["customer_id"]] = v
            rows.append((tp["customer_id"], v, line))
            ids.append((tp["event_id"],))
        db.execute("BEGIN")
        db.executemany("INSERT INTO events VALUES (?,?,?)", rows)
        db.executemany("INSERT OR IGNORE INTO ids VALUES (?)", ids)
        db.execute("COMMIT")
    seconds = time.perf_counter() - started
    return {"touchpoints": len(lines), "seconds": seconds, "rate": len(lines) / seconds, "peak_mb": peak_mb()}


def m_rebuild(args: dict) -> dict:
    """Fold the whole history into stages and health (replay.history + lifecycle), vs a bare scan + decode +
    dict fold."""
    import orjson

    from engine.config import Config
    from engine.projections.lifecycle import customer_ladder, evaluate
    from engine.queries import gc_paused
    from engine.service import Engine
    from replay.history import load

    with Engine(Config(data_dir=args["data"])) as engine:
        started = time.perf_counter()
        h = load(engine, feeds=False)
        stages: dict[str | None, int] = {}
        for _, facts in h.customers():
            s = evaluate(facts, UNTIL, customer_ladder(engine.rules)).stage
            stages[s] = stages.get(s, 0) + 1
        seconds = time.perf_counter() - started
        events = h.events
        del h  # the bare fold below is a baseline, not part of the rebuild's memory
    db = sqlite3.connect(str(Path(args["data"]) / "journey.db"))
    started = time.perf_counter()
    fold: dict[str, int] = {}
    with gc_paused():
        for originator, state in db.execute("SELECT originator_id, state FROM stored_events ORDER BY rowid"):
            body = orjson.loads(state)
            fold[originator] = fold.get(originator, 0) + len(body)
    raw_seconds = time.perf_counter() - started
    return {
        "events": events,
        "seconds": seconds,
        "rate": events / seconds,
        "raw_rate": events / raw_seconds,
        "peak_mb": peak_mb(),
    }


def m_time_travel(args: dict) -> dict:
    from engine import queries
    from engine.config import Config
    from engine.service import Engine
    from replay.history import load

    with Engine(Config(data_dir=args["data"])) as engine:
        ids = sorted(load(engine, feeds=False).names.values())
        pick = random.Random(1).sample(ids, min(200, len(ids)))
        lat = []
        for cid in pick:
            t = time.perf_counter()
            queries.customer_view(engine, cid, UNTIL)
            lat.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        engine.funnel(UNTIL)
        funnel_s = time.perf_counter() - t
        events = engine.store.journal.max_notification_id()
    q = statistics.quantiles(lat, n=100)
    return {
        "customer_p50_ms": q[49],
        "customer_p99_ms": q[98],
        "funnel_seconds": funnel_s,
        "events": events,
        "peak_mb": peak_mb(),
    }


def m_one_customer(args: dict) -> dict:
    """Appends to one customer with a long history: snapshots should keep them flat."""
    from datetime import timedelta

    from engine.clock import FixedClock
    from engine.config import Config
    from engine.service import Engine

    n = args["n"]
    with Engine(Config(data_dir=args["data"]), FixedClock(UNTIL)) as engine:
        rates = []
        for start in range(0, n, 500):
            batch = [
                {
                    "event_id": f"h{i}",
                    "customer_id": "heavy",
                    "kind": "page.viewed",
                    "channel": "web",
                    "source": "bench",
                    "properties": {},
                    "occurred_at": (UNTIL - timedelta(minutes=n - i)).isoformat(),
                }
                for i in range(start, start + 500)
            ]
            t = time.perf_counter()
            engine.ingest(batch)
            rates.append(500 / (time.perf_counter() - t))
    return {"history": n, "first_rate": rates[0], "last_rate": rates[-1], "peak_mb": peak_mb()}


def m_view(args: dict) -> dict:
    """The 360° view of one customer (the 25 newest timeline entries), in process: best of 5."""
    from engine.config import Config
    from engine.service import Engine

    with Engine(Config(data_dir=args["data"])) as engine:
        view = engine.customer(args["customer"], limit=25)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            engine.customer(args["customer"], limit=25)
            times.append(time.perf_counter() - t)
    return {
        "seconds": min(times),
        "median_seconds": statistics.median(times),
        "touchpoints": view["touchpoints"],
        "purchases": view["purchases"],
        "peak_mb": peak_mb(),
    }


def m_streaming(args: dict) -> dict:
    """One `journey worker` on a throwaway Tansu broker and redis-server: throughput of N new
    customers' registrations until all their stage changes are on the Redis stream, then the
    latency of probes sent at a steady rate, from produce to entry on the stream."""
    import asyncio
    import signal

    import orjson
    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from engine.config import Config, KafkaSettings, RedisSettings, dump_toml
    from streams.local import redis_server, tansu_broker
    from streams.relay import ensure_topics
    from streams.topology import Topology

    n = args["n"]
    with tansu_broker() as bootstrap, redis_server() as url:
        config = Config(
            data_dir=args["data"], kafka=KafkaSettings(bootstrap_servers=bootstrap), redis=RedisSettings(url=url)
        )
        topo = Topology.of(config)
        path = Path(args["data"]) / "journey.toml"
        path.write_text(dump_toml(config))
        asyncio.run(ensure_topics(bootstrap, topo))
        journey = str(Path(sys.executable).parent / "journey")
        log = open(os.environ["BENCH_WORKER_LOG"], "ab") if os.environ.get("BENCH_WORKER_LOG") else subprocess.DEVNULL
        level = os.environ.get("BENCH_WORKER_LOGLEVEL", "warning")
        relay = args.get("relay_process", False)  # the leader's duties in a process of their own
        commands = [
            [journey, "worker", "--config", str(path), "--loglevel", level, *(["--no-relays"] if relay else [])]
            for _ in range(args["workers"])
        ] + ([[journey, "relay", "--config", str(path)]] if relay else [])
        workers = [subprocess.Popen(c, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log) for c in commands]

        def record(i: str) -> bytes:
            return orjson.dumps(
                {
                    "event_id": i,
                    "customer_id": i,
                    "kind": "customer.registered",
                    "channel": "web",
                    "source": "bench",
                    "occurred_at": datetime.now(UTC).isoformat(),
                }
            )

        async def go() -> dict:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
            redis = Redis.from_url(url)
            await producer.start()
            stream = topo.stream("stage-changed")
            warm = 0

            async def warm_up(count: int) -> None:  # every partition's owner has joined and works
                nonlocal warm
                for i in range(count):
                    await producer.send(topo.touchpoints, record(f"warm{warm + i}"), key=f"warm{warm + i}".encode())
                await producer.flush()
                warm += count
                while await redis.xlen(stream) < warm:
                    await asyncio.sleep(0.2)

            await warm_up(1)
            if args["workers"] > 1:
                await asyncio.sleep(15)  # the other workers join; the group rebalances once
                await warm_up(4 * topo.partitions)
            t0 = time.perf_counter()
            for i in range(n):
                await producer.send(topo.touchpoints, record(f"t{i}"), key=f"t{i}".encode())
            await producer.flush()
            while await redis.xlen(stream) < n + warm:
                await asyncio.sleep(0.05)
            throughput = n / (time.perf_counter() - t0)
            sent: dict[str, float] = {}
            newest = await redis.xrevrange(stream, count=1)
            assert newest and newest[0][0] is not None  # the warm-up's entries are there
            last = newest[0][0]
            for i in range(args["probes"]):
                pid = f"p{i}"
                sent[pid] = time.time() * 1000
                await producer.send(topo.touchpoints, record(pid), key=pid.encode())
                await asyncio.sleep(1 / args["probe_rate"])
            await producer.flush()
            lat: list[float] = []
            while len(lat) < len(sent):
                reply = await redis.xread({stream: last}, block=2000, count=1000) or []
                assert isinstance(reply, list)  # redis-py's legacy replies (its default): [[stream, entries]]
                for _, entries in reply:
                    for mid, fields in entries:
                        last = mid
                        pid = fields[b"customer_id"].decode()
                        if pid in sent:  # the entry id is the server's clock (ms) when it was added
                            lat.append(int(mid.split(b"-")[0]) - sent[pid])
            await producer.stop()
            await redis.aclose()
            q = statistics.quantiles(lat, n=100)
            return {
                "touchpoints": n,
                "rate": throughput,
                "p50_ms": q[49],
                "p99_ms": q[98],
                "probes": len(lat),
                "probe_rate": args["probe_rate"],
                "workers": args["workers"],
                "relay_process": relay,
            }

        try:
            return {**asyncio.run(go()), "peak_mb": peak_mb()}
        finally:
            for worker in workers:
                os.killpg(worker.pid, signal.SIGTERM)
            for worker in workers:
                worker.wait(30)


MEASURES = {
    f.__name__[2:]: f
    for f in (m_streaming, m_ingest, m_naive, m_raw_insert, m_rebuild, m_time_travel, m_one_customer, m_view)
}


def measure(name: str, **args: object) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", name, json.dumps(args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {name}: {result}", file=sys.stderr)
    return result


def run(scale: str, work: Path, postgres: bool) -> dict:
    customers, naive_n, streamed = SCALES[scale]
    history = str(history_file(customers, work))

    def fresh(name: str) -> str:
        (work / name).mkdir(exist_ok=True)
        return str(work / name)

    results: dict = {"scale": scale, "customers": customers}
    ingest = {"history": history, "customers": customers}
    data = fresh("sqlite")
    results["ingest_sqlite"] = measure("ingest", **ingest, data=data, backend="sqlite", workers=1)
    results["ingest_sqlite_2"] = measure("ingest", **ingest, data=fresh("sqlite2"), backend="sqlite", workers=2)
    if postgres:
        results["ingest_postgres"] = measure("ingest", **ingest, data=fresh("pg"), backend="postgres", workers=2)
    results["naive"] = measure("naive", history=history, data=fresh("naive"), sample=naive_n)
    results["raw_insert"] = measure("raw_insert", history=history, data=fresh("raw"))
    results["rebuild"] = measure("rebuild", data=data)
    results["time_travel"] = measure("time_travel", data=data)
    # Growth, like for like: the same touchpoints into an empty store and into the full one
    # (the rate along the history also moves with its mix: later touchpoints have longer pasts).
    # This adds customers to `data`: it comes after the measures that read it.
    head = {
        "history": renamed_head(history, min(100_000, results["ingest_sqlite"]["touchpoints"] // 10), work),
        "customers": customers,
        "backend": "sqlite",
        "workers": 1,
    }
    results["growth"] = {
        "empty": measure("ingest", **head, data=fresh("growth")),
        "full": measure("ingest", **head, data=data),
    }
    results["one_customer"] = measure("one_customer", data=fresh("heavy"), n=2_000 if scale == "smoke" else 10_000)
    # A dealer: one customer with as many touchpoints as a spread sample of the history has,
    # each into an empty store through the same pipeline; then its view; then the disk per 1M.
    n = {"smoke": 2_000, "medium": 20_000, "full": 50_000}[scale]
    account = {"history": str(account_file(n, work)), "customers": 1, "backend": "sqlite", "workers": 1}
    spread = {"history": renamed_head(history, n, work), "customers": customers, "backend": "sqlite", "workers": 1}
    results["account"] = {
        "spread": measure("ingest", **spread, data=fresh("spread")),
        "one": measure("ingest", **account, data=fresh("account")),
    }
    results["account"]["view"] = measure("view", data=str(work / "account"), customer="dealer-1")
    results["disk"] = {
        "history_mb": dir_mb(data),
        "history_touchpoints": results["ingest_sqlite"]["touchpoints"],
        "account_mb": dir_mb(str(work / "account")),
        "account_touchpoints": n,
    }
    if streamed:
        for name, workers, relay in STREAMING:
            results[name] = measure(
                "streaming",
                data=fresh(name),
                n=streamed,
                probes=500,
                probe_rate=100,
                workers=workers,
                relay_process=relay,
            )
    return results


# (result name, faust workers, leader duties in a `journey relay` process of their own)
STREAMING = (("streaming_1", 1, False), ("streaming_1_relay", 1, True), ("streaming_2_relay", 2, True))


def table(r: dict) -> str:
    one, two, naive, raw, reb, tt, heavy = (
        r["ingest_sqlite"],
        r["ingest_sqlite_2"],
        r["naive"],
        r["raw_insert"],
        r["rebuild"],
        r["time_travel"],
        r["one_customer"],
    )
    vs_naive = lambda x: f"×{x['rate'] / naive['rate']:.1f} naive ({naive['rate']:,.0f}/s)"  # noqa: E731
    rows = [
        (
            "Ingest, full pipeline, SQLite, 1 process (touchpoints/s)",
            one["rate"],
            "≥ 20,000; ≥ 10× naive",
            f"{vs_naive(one)}; raw limit {raw['rate']:,.0f}/s → {one['rate'] / raw['rate']:.0%} of it",
        ),
        (
            "Ingest, full pipeline, SQLite, 2 processes (touchpoints/s)",
            two["rate"],
            "≥ 20,000; ≥ 10× naive",
            f"{vs_naive(two)}; raw limit → {two['rate'] / raw['rate']:.0%} of it",
        ),
    ]
    if "ingest_postgres" in r:
        pg = r["ingest_postgres"]
        rows.append(("Ingest, full pipeline, PostgreSQL, 2 processes (touchpoints/s)", pg["rate"], "—", vs_naive(pg)))
    empty, full = r["growth"]["empty"], r["growth"]["full"]
    rows.append(
        (
            f"Ingest growth: the same {full['touchpoints']:,} touchpoints into the store of "
            f"{one['touchpoints']:,}, 1 process (touchpoints/s)",
            full["rate"],
            "flat",
            f"into an empty store {empty['rate']:,.0f}/s → {full['rate'] / empty['rate']:.0%} of it",
        )
    )
    g = one["growth"]
    if "at_1m" in g:
        rows.append(
            (
                "Ingest along the history, 1 process: rate at 1M touchpoints (touchpoints/s)",
                g["at_1m"],
                "flat",
                f"at 100k: {g['at_100k']:,.0f}/s; 2 processes: "
                f"{two['growth']['at_100k']:,.0f} → {two['growth']['at_1m']:,.0f}/s",
            )
        )
    else:
        rows.append(
            (
                "Ingest along the history, 1 process: last tenth (touchpoints/s)",
                g["last_tenth"],
                "flat",
                f"first tenth {g['first_tenth']:,.0f}/s",
            )
        )
    rows += [
        (
            "Rebuild: fold into stages and health (events/s)",
            reb["rate"],
            "≥ 150,000",
            f"bare scan + decode + dict fold {reb['raw_rate']:,.0f}/s → {reb['rate'] / reb['raw_rate']:.0%} of it",
        ),
        ("Customer as-of query p99 (ms)", tt["customer_p99_ms"], "≤ 5", f"p50 {tt['customer_p50_ms']:.2f} ms"),
        (
            f"Funnel as-of over {tt['events']:,} events (s)",
            tt["funnel_seconds"],
            "≤ 10 s at 1M",
            f"{tt['funnel_seconds'] * 1e6 / tt['events']:.1f} s per 1M events",
        ),
        (
            f"Appends to one customer with {heavy['history']:,} touchpoints (touchpoints/s)",
            heavy["last_rate"],
            "flat",
            f"first 500: {heavy['first_rate']:,.0f}/s",
        ),
    ]
    if "account" in r:
        acc, disk = r["account"], r["disk"]
        one_acc, spread = acc["one"], acc["spread"]
        rows += [
            (
                f"Ingest one customer's {one_acc['touchpoints']:,} touchpoints (a dealer: a fifth orders), "
                "1 process (touchpoints/s)",
                one_acc["rate"],
                "≥ 0.5 × spread",
                f"the same number spread over customers {spread['rate']:,.0f}/s → "
                f"{one_acc['rate'] / spread['rate']:.2f}×",
            ),
            (
                f"360° view of that customer ({acc['view']['purchases']:,} purchases), 25 newest entries (s)",
                acc["view"]["seconds"],
                "≤ 0.5",
                f"median of 5 {acc['view']['median_seconds']:.2f} s",
            ),
            (
                "Data directory per million touchpoints, SQLite (MB)",
                disk["history_mb"] * 1e6 / disk["history_touchpoints"],
                "linear",
                f"the dealer alone: {disk['account_mb'] * 1e6 / disk['account_touchpoints']:,.0f} MB per million "
                f"({disk['account_mb']:,.1f} MB for {disk['account_touchpoints']:,})",
            ),
        ]
    for name, workers, relay in STREAMING:
        st = r.get(name)
        if not st:
            continue
        who = f"{workers} worker{'s' if workers > 1 else ''}" + (" + relay process" if relay else ", leader relays")
        rows += [
            (
                f"Streaming, {who}: {st['touchpoints']:,} registrations to the Redis stream (touchpoints/s)",
                st["rate"],
                "≥ 10,000 (one worker)",
                "",
            ),
            (
                f"Streaming, {who}: produce → stage change on the Redis stream at {st['probe_rate']}/s, p99 (ms)",
                st["p99_ms"],
                "≤ 250",
                f"p50 {st['p50_ms']:.0f} ms",
            ),
        ]
    rows.append(
        (
            "Peak RSS: ingest, 1 process / rebuild (MB)",
            one["peak_mb"],
            "rebuild of 10M < 1 GiB",
            f"rebuild {reb['peak_mb']:,.0f} MB; 2 processes: {two['peak_mb']:,.0f} MB each at most",
        )
    )
    if "rebuild_10m" in r:
        big = r["rebuild_10m"]
        rows.append(
            (
                f"Rebuild of {big['events']:,} events ({big['customers']:,} customers): peak RSS (MB)",
                big["peak_mb"],
                "< 1,024",
                f"{big['rate']:,.0f} events/s; bare fold {big['raw_rate']:,.0f}/s",
            )
        )
    lines = ["| measure | result | target | baseline, same run |", "|---|---:|---|---|"]
    lines += [
        f"| {m} | {v:,.2f} | {t} | {b} |" if v < 100 else f"| {m} | {v:,.0f} | {t} | {b} |" for m, v, t, b in rows
    ]
    return "\n".join(lines)


def write_doc(results: dict) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else ""
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d}"
    )
    block = (
        f"{start}\nScale `{results['scale']}`: {results['customers']:,} simulated customers, "
        f"{results['ingest_sqlite']['touchpoints']:,} touchpoints ({machine}).\n\n{table(results)}\n{end}"
    )
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text += "\n" + block + "\n"
    doc.write_text(text)
    (ROOT / "docs" / "benchmarks.json").write_text(json.dumps(results, indent=1))


def big_rebuild(events: int, work: Path) -> dict:
    """A store of about `events` events (ingested with two processes), then the rebuild fold of it:
    memory must stay bounded by what the projections keep, not by the size of the log."""
    customers = round(events / 30.4)  # the simulator gives ~30.4 stored events a customer
    history = str(history_file(customers, work))
    (work / "big").mkdir(exist_ok=True)
    ingest = measure(
        "ingest", history=history, customers=customers, data=str(work / "big"), backend="sqlite", workers=2
    )
    return {**measure("rebuild", data=str(work / "big")), "customers": customers, "ingest": ingest}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scale", choices=SCALES, default="medium")
    p.add_argument("--postgres", action="store_true", help="also ingest into PostgreSQL (PG* env or 127.0.0.1:5432)")
    p.add_argument(
        "--rebuild-events",
        type=int,
        default=0,
        metavar="N",
        help="also build a store of ~N events and measure its rebuild (10000000: the 1 GiB check)",
    )
    p.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    p.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.measure:
        print(json.dumps(MEASURES[a.measure[0]](json.loads(a.measure[1]))))
        return
    with tempfile.TemporaryDirectory(prefix="journey-bench-") as tmp:
        results = run(a.scale, Path(tmp), a.postgres)
        if a.rebuild_events:
            results["rebuild_10m"] = big_rebuild(a.rebuild_events, Path(tmp))
    print(table(results))
    if not a.no_write:
        write_doc(results)


if __name__ == "__main__":
    main()
