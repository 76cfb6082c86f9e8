"""HTTP ingest benchmark: `journey serve` against `journey ingest` of the same touchpoints, in one run.

    .venv/bin/python bench/serve.py --customers 1000 --clients 4

1. `journey ingest FILE` (the baseline) into an empty store;
2. the same touchpoints as Segment `track` messages, POSTed to `/v1/batch` in batches of 100 by
   concurrent clients into an empty store behind `journey serve`: touchpoints/s, and its ratio to 1;
3. single messages (`/v1/track`) at a fixed rate: latency p50 and p99;
4. with --kafka, 2 with `[http] sink = "kafka"` on a throwaway Tansu broker: touchpoints/s accepted
   (acknowledged by the broker; no worker runs).
Prints a markdown table (docs/benchmarks.md keeps the figures with the machine they ran on).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import quantiles

import httpx

ROOT = Path(__file__).resolve().parents[1]
JOURNEY = str(Path(sys.executable).parent / "journey")
KEY = "bench-key"


def segment(record: dict) -> dict:
    """A touchpoint record as the Segment track message a service would send for it."""
    return {
        "type": "track",
        "messageId": record["event_id"],
        "userId": record["customer_id"],
        "event": record["kind"],
        "timestamp": record["occurred_at"],
        "properties": record.get("properties") or {},
        "traits": record.get("traits"),
        "context": {"channel": record["channel"], "library": {"name": record["source"]}},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data: Path, kafka: str | None = None):
        """`kafka`: the broker's address, for the Kafka sink (else the embedded store)."""
        self.port = free_port()
        env = {**os.environ, "JOURNEY_DATA_DIR": str(data), "JOURNEY_WRITE_KEYS": KEY}
        command = [JOURNEY, "serve", "--port", str(self.port)]
        if kafka:
            data.mkdir(parents=True, exist_ok=True)
            config = data / "config.toml"
            config.write_text(f'[http]\nsink = "kafka"\n[kafka]\nbootstrap_servers = "{kafka}"\n')
            command += ["--config", str(config)]
            env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        self.proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("journey serve did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def baseline(history: Path, data: Path) -> dict:
    started = time.perf_counter()
    out = subprocess.run(
        [JOURNEY, "ingest", str(history), "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "JOURNEY_DATA_DIR": str(data)},
    )
    seconds = time.perf_counter() - started
    summary = json.loads(out.stdout)
    return {"seconds": round(seconds, 2), "accepted": summary["accepted"], "rate": round(summary["accepted"] / seconds)}


def http_ingest(records: list[dict], data: Path, clients: int, batch: int, kafka: str | None = None) -> dict:
    server = Server(data, kafka)
    batches = [[segment(r) for r in records[i : i + batch]] for i in range(0, len(records), batch)]
    accepted = [0] * clients
    try:
        started = time.perf_counter()

        def post(k: int) -> None:
            with httpx.Client(base_url=server.url, auth=(KEY, ""), timeout=120) as client:
                for body in batches[k::clients]:
                    r = client.post("/v1/batch", json={"batch": body, "sentAt": None})
                    r.raise_for_status()
                    accepted[k] += r.json()["accepted"]

        threads = [threading.Thread(target=post, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
    finally:
        server.stop()
    return {"seconds": round(seconds, 2), "accepted": sum(accepted), "rate": round(sum(accepted) / seconds)}


def latency(records: list[dict], data: Path, rate: float, seconds: float) -> dict:
    """Single messages at a fixed rate, each on its own thread when due: p50 and p99 in ms."""
    server = Server(data)
    took: list[float] = []
    try:
        client = httpx.Client(base_url=server.url, auth=(KEY, ""), timeout=30, limits=httpx.Limits(max_connections=64))
        n = int(rate * seconds)
        started = time.perf_counter()

        def one(message: dict) -> None:
            t0 = time.perf_counter()
            client.post("/v1/track", json=message).raise_for_status()
            took.append(time.perf_counter() - t0)

        threads = []
        for i in range(n):
            due = started + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            t = threading.Thread(target=one, args=(segment(records[i % len(records)]),))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        client.close()
    finally:
        server.stop()
    cuts = quantiles(took, n=100)
    return {
        "requests": len(took),
        "rate": rate,
        "p50_ms": round(cuts[49] * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--kafka", action="store_true", help="Also the Kafka sink, on a throwaway Tansu broker.")
    a = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from engine.simulator import simulate

    with tempfile.TemporaryDirectory(prefix="journey-bench-http-") as tmp:
        work = Path(tmp)
        # Not a backfill: both paths record with the real clock, as a live server does.
        records = list(simulate(a.customers, 7, datetime.now(UTC)))
        history = work / "history.jsonl"
        history.write_text("".join(json.dumps(r) + "\n" for r in records))
        base = baseline(history, work / "cli")
        served = http_ingest(records, work / "http", a.clients, a.batch)
        late = latency(records, work / "latency", a.rate, a.seconds)
        sunk = None
        if a.kafka:
            from streams.local import tansu_broker

            with tansu_broker() as bootstrap:
                sunk = http_ingest(records, work / "kafka", a.clients, a.batch, bootstrap)
    result = {
        "records": len(records),
        "ingest": base,
        "http": served,
        "ratio": round(served["rate"] / base["rate"], 2),
        "latency": late,
        "kafka": sunk,
        "clients": a.clients,
        "batch": a.batch,
    }
    print(json.dumps(result))
    print(f"| journey ingest (baseline) | {base['rate']:,} touchpoints/s | {base['accepted']:,} accepted |")
    print(
        f"| journey serve, /v1/batch of {a.batch}, {a.clients} clients | {served['rate']:,} touchpoints/s "
        f"| {result['ratio']:.2f} of the baseline |"
    )
    print(
        f"| journey serve, /v1/track at {a.rate:g}/s | p50 {late['p50_ms']} ms, p99 {late['p99_ms']} ms | "
        f"{late['requests']:,} requests |"
    )
    if sunk:
        print(
            f"| journey serve, sink kafka, /v1/batch of {a.batch}, {a.clients} clients | {sunk['rate']:,} "
            f"touchpoints/s accepted | {sunk['rate'] / base['rate']:.2f} of the baseline |"
        )


if __name__ == "__main__":
    main()
