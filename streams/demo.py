"""`journey demo --streaming`: the whole pipeline on throwaway local servers — a Tansu broker,
a redis-server and a `journey worker` process — fed with a simulated history, showing the
stage changes as they arrive on the Kafka topic and on the Redis stream."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from engine.config import Config, KafkaSettings, RedisSettings, StoreSettings, dump_toml
from engine.demo import today
from engine.simulator import simulate

from .local import redis_server, tansu_broker
from .relay import ensure_topics
from .topology import Topology


async def _produce(bootstrap: str, topic: str, records: list[dict]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for r in records:
            await producer.send(topic, orjson.dumps(r), key=r["customer_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _watch(config: Config, expected: int, seconds: float, say: Callable[[str], None]) -> dict[str, Any]:
    topo = Topology.of(config)
    redis = Redis.from_url(config.redis.url)
    consumer = AIOKafkaConsumer(
        topo.topic("stage-changed"),
        bootstrap_servers=config.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    on_kafka: list[dict] = []
    started = time.monotonic()
    quiet = 0
    try:
        while time.monotonic() - started < seconds:
            batch = await consumer.getmany(timeout_ms=500)
            on_kafka += [orjson.loads(m.value) for msgs in batch.values() for m in msgs]
            on_redis = await redis.xlen(topo.stream("stage-changed"))
            say(
                f"{time.monotonic() - started:5.1f}s  stage changes: {len(on_kafka):>6,} on Kafka "
                f"{topo.topic('stage-changed')}, {on_redis:>6,} on Redis {topo.stream('stage-changed')}"
            )
            # Done when both feeds agree, cover every customer, and have stopped growing for ~2 s.
            settled = len(on_kafka) >= expected and on_redis == len(on_kafka) and not batch
            quiet = quiet + 1 if settled else 0
            if quiet >= 4:
                break
        sample = [
            f"{c['customer_id']} {c['dimension']} {c['from']} → {c['to']} ({c['effective_at'][:10]})"
            for c in on_kafka[-5:]
        ]
        return {
            "kafka": len(on_kafka),
            "redis": await redis.xlen(topo.stream("stage-changed")),
            "actions_on_redis": await redis.xlen(topo.stream("actions")),
            "sample": sample,
            "seconds": round(time.monotonic() - started, 1),
        }
    finally:
        await consumer.stop()
        await redis.aclose()


def run_streaming_demo(base: Config, customers: int, seed: int, say: Callable[[str], None]) -> dict[str, Any]:
    data = base.data_path / "demo-streaming"
    data.mkdir(parents=True, exist_ok=True)
    for old in data.glob("*.db*"):
        old.unlink()
    records = list(simulate(customers, seed, today()))
    with ExitStack() as stack:
        bootstrap = stack.enter_context(tansu_broker())
        redis_url = stack.enter_context(redis_server())
        say(f"throwaway Tansu broker at {bootstrap}, redis-server at {redis_url}")
        config = Config(
            data_dir=str(data),
            store=StoreSettings(backend="sqlite"),
            kafka=KafkaSettings(bootstrap_servers=bootstrap),
            redis=RedisSettings(url=redis_url),
        )
        path = data / "journey.toml"
        path.write_text(dump_toml(config))
        asyncio.run(ensure_topics(bootstrap, Topology.of(config)))
        journey = str(Path(sys.executable).parent / "journey")
        worker = subprocess.Popen(
            [journey, "worker", "--config", str(path)],
            start_new_session=True,
            stdout=(data / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
        )

        def stop_worker() -> None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)

        stack.callback(stop_worker)
        say(
            f"journey worker started (pid {worker.pid}); producing {len(records):,} touchpoints "
            f"of {customers:,} customers to {Topology.of(config).touchpoints}"
        )
        asyncio.run(_produce(bootstrap, Topology.of(config).touchpoints, records))
        # Every customer appears (None → prospect) at least once: wait for that many changes.
        result = asyncio.run(_watch(config, customers, 180, say))
    return {"customers": customers, "touchpoints": len(records), **result, "data_dir": str(data)}
