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
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCALES = {  # customers, naive sample, streaming touchpoints
    "smoke": (300, 500, 0),      # no streaming in the smoke run: CI tests cover the worker
    "medium": (5_000, 5_000, 5_000),
    "full": (100_000, 20_000, 50_000),
}
UNTIL = datetime(2026, 11, 1, tzinfo=timezone.utc)


def history_file(customers: int, work: Path) -> Path:
    path = work / f"history-{customers}.jsonl"
    if not path.exists():
        import orjson
        from engine.simulator import simulate
        with path.open("wb") as f:
            for r in simulate(customers, 1, UNTIL):
                f.write(orjson.dumps(r) + b"\n")
    return path


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the measurements, each run in a subprocess -------------------------------------------------

def m_ingest(args: dict) -> dict:
    from engine.clock import EventTimeClock
    from engine.config import Config, PostgresSettings, StoreSettings
    from engine.service import Engine
    lines = Path(args["history"]).read_bytes().splitlines()
    store = StoreSettings()
    if args["backend"] == "postgres":
        store = StoreSettings(backend="postgres", postgres=PostgresSettings(
            dbname=os.environ.get("PGDATABASE", "test"), user=os.environ.get("PGUSER", "postgres"),
            host=os.environ.get("PGHOST", "127.0.0.1"), schema=f"bench_{os.getpid()}"))
    config = Config(data_dir=args["data"], store=store)
    chunks, marks = 10, []
    with Engine(config, EventTimeClock()) as engine:
        started = time.perf_counter()
        step = max(len(lines) // chunks, 1)
        for i in range(0, len(lines), step):
            t = time.perf_counter()
            engine.ingest(lines[i:i + step])
            marks.append(len(lines[i:i + step]) / (time.perf_counter() - t))
        seconds = time.perf_counter() - started
    if args["backend"] == "postgres":
        from engine.store import pg_connect
        with pg_connect(config, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{store.postgres.schema_}" CASCADE')
    return {"touchpoints": len(lines), "seconds": seconds, "rate": len(lines) / seconds,
            "first_tenth_rate": marks[0], "last_tenth_rate": marks[-1], "peak_mb": peak_mb()}


def m_naive(args: dict) -> dict:
    """What the eventsourcing docs suggest: one load -> record -> save per touchpoint."""
    import orjson
    from eventsourcing.application import AggregateNotFoundError, Application
    from eventsourcing.domain import Aggregate, event
    from uuid import NAMESPACE_URL, uuid5

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

    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                           "SQLITE_DBNAME": str(Path(args["data"]) / "naive.db")})
    lines = Path(args["history"]).read_bytes().splitlines()[:args["sample"]]
    started = time.perf_counter()
    for line in lines:
        tp = orjson.loads(line)
        cid = uuid5(NAMESPACE_URL, tp["customer_id"])
        try:
            shopper = app.repository.get(cid)
        except AggregateNotFoundError:
            shopper = Shopper(tp["customer_id"])
        if tp["event_id"] not in shopper.seen:
            shopper.touch(tp)
            app.save(shopper)
    seconds = time.perf_counter() - started
    return {"touchpoints": len(lines), "seconds": seconds, "rate": len(lines) / seconds, "peak_mb": peak_mb()}


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
        for line in lines[i:i + 500]:
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
    """Fold the whole history into stages and health (replay.history + lifecycle), vs a bare scan + decode + dict fold."""
    import orjson
    from engine.config import Config
    from engine.projections.lifecycle import evaluate
    from engine.service import Engine
    from replay.history import gc_paused, load
    with Engine(Config(data_dir=args["data"])) as engine:
        started = time.perf_counter()
        h = load(engine, feeds=False)
        stages: dict[str, int] = {}
        for _, facts in h.customers():
            s = evaluate(facts, UNTIL, engine.rules).stage
            stages[s] = stages.get(s, 0) + 1
        seconds = time.perf_counter() - started
        events = h.events
    db = sqlite3.connect(str(Path(args["data"]) / "journey.db"))
    started = time.perf_counter()
    fold: dict[str, int] = {}
    with gc_paused():
        for originator, state in db.execute("SELECT originator_id, state FROM stored_events ORDER BY rowid"):
            body = orjson.loads(state)
            fold[originator] = fold.get(originator, 0) + len(body)
    raw_seconds = time.perf_counter() - started
    return {"events": events, "seconds": seconds, "rate": events / seconds, "raw_rate": events / raw_seconds,
            "peak_mb": peak_mb()}


def m_time_travel(args: dict) -> dict:
    from engine.config import Config
    from engine.service import Engine
    from engine import queries
    from replay.history import load
    with Engine(Config(data_dir=args["data"])) as engine:
        ids = sorted(load(engine).names.values())
        pick = random.Random(1).sample(ids, min(200, len(ids)))
        lat = []
        for cid in pick:
            t = time.perf_counter()
            queries.customer_view(engine, cid, UNTIL)
            lat.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        engine.funnel(UNTIL)
        funnel_s = time.perf_counter() - t
        events = engine.store.recorder.max_notification_id()
    q = statistics.quantiles(lat, n=100)
    return {"customer_p50_ms": q[49], "customer_p99_ms": q[98], "funnel_seconds": funnel_s, "events": events,
            "peak_mb": peak_mb()}


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
            batch = [{"event_id": f"h{i}", "customer_id": "heavy", "kind": "page.viewed", "channel": "web",
                      "source": "bench", "properties": {},
                      "occurred_at": (UNTIL - timedelta(minutes=n - i)).isoformat()} for i in range(start, start + 500)]
            t = time.perf_counter()
            engine.ingest(batch)
            rates.append(500 / (time.perf_counter() - t))
    return {"history": n, "first_rate": rates[0], "last_rate": rates[-1], "peak_mb": peak_mb()}


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
        config = Config(data_dir=args["data"], kafka=KafkaSettings(bootstrap_servers=bootstrap),
                        redis=RedisSettings(url=url))
        topo = Topology.of(config)
        path = Path(args["data"]) / "journey.toml"
        path.write_text(dump_toml(config))
        asyncio.run(ensure_topics(bootstrap, topo))
        worker = subprocess.Popen([str(Path(sys.executable).parent / "journey"), "worker", "--config", str(path)],
                                  start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def record(i: str) -> bytes:
            return orjson.dumps({"event_id": i, "customer_id": i, "kind": "customer.registered", "channel": "web",
                                 "source": "bench", "occurred_at": datetime.now(timezone.utc).isoformat()})

        async def go() -> dict:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
            redis = Redis.from_url(url)
            await producer.start()
            stream = topo.stream("stage-changed")
            await producer.send_and_wait(topo.touchpoints, record("warm"), key=b"warm")
            while await redis.xlen(stream) < 1:            # the worker has joined and works
                await asyncio.sleep(0.2)
            t0 = time.perf_counter()
            for i in range(n):
                await producer.send(topo.touchpoints, record(f"t{i}"), key=f"t{i}".encode())
            await producer.flush()
            while await redis.xlen(stream) < n + 1:
                await asyncio.sleep(0.05)
            throughput = n / (time.perf_counter() - t0)
            sent: dict[str, float] = {}
            last = (await redis.xrevrange(stream, count=1))[0][0]
            for i in range(args["probes"]):
                pid = f"p{i}"
                sent[pid] = time.time() * 1000
                await producer.send(topo.touchpoints, record(pid), key=pid.encode())
                await asyncio.sleep(1 / args["probe_rate"])
            await producer.flush()
            lat: list[float] = []
            while len(lat) < len(sent):
                for _, entries in await redis.xread({stream: last}, block=2000, count=1000) or []:
                    for mid, fields in entries:
                        last = mid
                        pid = fields[b"customer_id"].decode()
                        if pid in sent:   # the entry id is the server's clock (ms) when it was added
                            lat.append(int(mid.split(b"-")[0]) - sent[pid])
            await producer.stop()
            await redis.aclose()
            q = statistics.quantiles(lat, n=100)
            return {"touchpoints": n, "rate": throughput, "p50_ms": q[49], "p99_ms": q[98],
                    "probes": len(lat), "probe_rate": args["probe_rate"]}

        try:
            return {**asyncio.run(go()), "peak_mb": peak_mb()}
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)


MEASURES = {f.__name__[2:]: f for f in (m_streaming, m_ingest, m_naive, m_raw_insert, m_rebuild, m_time_travel, m_one_customer)}


def measure(name: str, **args: object) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", name, json.dumps(args)], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {name}: {result}", file=sys.stderr)
    return result


def run(scale: str, work: Path, postgres: bool) -> dict:
    customers, naive_n, streamed = SCALES[scale]
    history = str(history_file(customers, work))
    data = work / "sqlite"
    data.mkdir(exist_ok=True)
    results = {"scale": scale, "customers": customers}
    results["ingest_sqlite"] = measure("ingest", history=history, data=str(data), backend="sqlite")
    if postgres:
        pgdata = work / "pg"
        pgdata.mkdir(exist_ok=True)
        results["ingest_postgres"] = measure("ingest", history=history, data=str(pgdata), backend="postgres")
    naive = work / "naive"
    naive.mkdir(exist_ok=True)
    results["naive"] = measure("naive", history=history, data=str(naive), sample=naive_n)
    raw = work / "raw"
    raw.mkdir(exist_ok=True)
    results["raw_insert"] = measure("raw_insert", history=history, data=str(raw))
    results["rebuild"] = measure("rebuild", data=str(data))
    results["time_travel"] = measure("time_travel", data=str(data))
    heavy = work / "heavy"
    heavy.mkdir(exist_ok=True)
    results["one_customer"] = measure("one_customer", data=str(heavy), n=2_000 if scale == "smoke" else 10_000)
    if streamed:
        stream_dir = work / "streaming"
        stream_dir.mkdir(exist_ok=True)
        results["streaming"] = measure("streaming", data=str(stream_dir), n=streamed, probes=500, probe_rate=100)
    return results


def table(r: dict) -> str:
    ing, naive, raw, reb, tt, one = (r["ingest_sqlite"], r["naive"], r["raw_insert"], r["rebuild"],
                                     r["time_travel"], r["one_customer"])
    rows = [
        ("Ingest, full pipeline, SQLite (touchpoints/s)", ing["rate"], "≥ 20,000",
         f"naive {naive['rate']:,.0f}/s → ×{ing['rate'] / naive['rate']:.1f}; raw limit {raw['rate']:,.0f}/s → "
         f"{ing['rate'] / raw['rate']:.1%} of it"),
    ]
    if "ingest_postgres" in r:
        pg = r["ingest_postgres"]
        rows.append(("Ingest, full pipeline, PostgreSQL (touchpoints/s)", pg["rate"], "—",
                     f"×{pg['rate'] / naive['rate']:.1f} the naive SQLite baseline"))
    rows += [
        ("Ingest growth: first vs last tenth (touchpoints/s)", ing["last_tenth_rate"], "flat",
         f"first tenth {ing['first_tenth_rate']:,.0f}/s"),
        ("Rebuild: fold into stages and health (events/s)", reb["rate"], "≥ 150,000",
         f"bare scan + decode + dict fold {reb['raw_rate']:,.0f}/s → {reb['rate'] / reb['raw_rate']:.1%} of it"),
        ("Customer as-of query p50 / p99 (ms)", tt["customer_p99_ms"], "p99 ≤ 5",
         f"p50 {tt['customer_p50_ms']:.2f} ms"),
        (f"Funnel as-of over {tt['events']:,} events (s)", tt["funnel_seconds"], "≤ 10 s at 1M", ""),
        (f"Appends to one customer with {one['history']:,} touchpoints (touchpoints/s)", one["last_rate"], "flat",
         f"first 500: {one['first_rate']:,.0f}/s"),
    ]
    if "streaming" in r:
        st = r["streaming"]
        rows += [
            (f"One faust worker, {st['touchpoints']:,} registrations (touchpoints/s)", st["rate"], "≥ 10,000",
             f"the embedded SQLite ingest of this run: {ing['rate']:,.0f}/s"),
            (f"Produce → stage change on the Redis stream, p50 / p99 at {st['probe_rate']}/s (ms)", st["p99_ms"],
             "p99 ≤ 250", f"p50 {st['p50_ms']:.0f} ms"),
        ]
    rows += [
        ("Peak RSS: ingest / rebuild (MB)", ing["peak_mb"], "rebuild of 10M < 1 GiB", f"rebuild {reb['peak_mb']:,.0f} MB"),
    ]
    lines = ["| measure | result | target | baseline, same run |", "|---|---:|---|---|"]
    lines += [f"| {m} | {v:,.2f} | {t} | {b} |" if v < 100 else f"| {m} | {v:,.0f} | {t} | {b} |"
              for m, v, t, b in rows]
    return "\n".join(lines)


def write_doc(results: dict) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else ""
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"{datetime.now(timezone.utc):%Y-%m-%d}")
    block = (f"{start}\nScale `{results['scale']}`: {results['customers']:,} simulated customers, "
             f"{results['ingest_sqlite']['touchpoints']:,} touchpoints ({machine}).\n\n{table(results)}\n{end}")
    if start in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text += "\n" + block + "\n"
    doc.write_text(text)
    (ROOT / "docs" / "benchmarks.json").write_text(json.dumps(results, indent=1))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scale", choices=SCALES, default="medium")
    p.add_argument("--postgres", action="store_true", help="also ingest into PostgreSQL (PG* env or 127.0.0.1:5432)")
    p.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    p.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.measure:
        print(json.dumps(MEASURES[a.measure[0]](json.loads(a.measure[1]))))
        return
    with tempfile.TemporaryDirectory(prefix="journey-bench-") as tmp:
        results = run(a.scale, Path(tmp), a.postgres)
    print(table(results))
    if not a.no_write:
        write_doc(results)


if __name__ == "__main__":
    main()
