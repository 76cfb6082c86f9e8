"""`journey worker` processes on a real broker: end to end, dead letters, and two workers
sharing the load while one of them is killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from engine.clock import SystemClock
from engine.config import dump_toml
from engine.queries import ACTION_TOPIC, CHANGE_TOPIC, TOUCHPOINT_TOPIC, scan
from engine.service import Engine
from streams.relay import ensure_topics
from streams.topology import Topology

from ..helpers import order, tp

JOURNEY = str(Path(sys.executable).parent / "journey")


def start_worker(config_file: Path, group: str, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    return subprocess.Popen(
        [JOURNEY, "worker", "--config", str(config_file), "--id", group, "--loglevel", "info"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


async def produce(bootstrap: str, topic: str, records: list) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for r in records:
            value = r if isinstance(r, bytes) else orjson.dumps(r)
            key = (r.get("customer_id", "") if isinstance(r, dict) else "bad").encode()
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def wait_until(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


async def topic_messages(bootstrap: str, topic: str) -> list:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    out = []
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            out += [m for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    return out


async def prepare(config, tmp_path: Path) -> tuple[Topology, Path]:
    """The topics, and the config file a worker process reads."""
    topo = Topology.of(config)
    cfg = tmp_path / "journey.toml"
    cfg.write_text(dump_toml(config))
    await ensure_topics(config.kafka.bootstrap_servers, topo)
    return topo, cfg


def stored_count(engine: Engine) -> int:
    return sum(1 for _ in scan(engine, TOUCHPOINT_TOPIC))


def now_minus(**kw) -> datetime:
    return datetime.now(UTC) - timedelta(**kw)


async def test_worker_end_to_end_with_a_dead_letter(stream_config, tmp_path):
    topo, cfg = await prepare(stream_config, tmp_path)
    worker = start_worker(cfg, f"g{uuid.uuid4().hex[:8]}", tmp_path / "worker.log")
    redis = Redis.from_url(stream_config.redis.url)
    try:
        good = [
            tp("r1", "customer.registered", now_minus(days=3), customer="w1"),
            order("o1", now_minus(days=2), customer="w1"),
        ]
        await produce(
            stream_config.kafka.bootstrap_servers,
            topo.touchpoints,
            good + [b"{not json at all", order("o2", now_minus(days=1), customer="w1")],
        )
        stream = topo.stream("stage-changed")

        async def repeat_buyer():
            entries = await redis.xrange(stream)
            facts = [orjson.loads(f[b"fact"]) for _, f in entries]
            return facts if [f["to"] for f in facts if f["dimension"] == "stage"][-1:] == ["repeat"] else None

        facts = await wait_until(repeat_buyer, 90, "stage changes on the Redis stream")
        # How the consumer batches the records decides whether the orders come with the
        # registration or after it (then as a correction of the recorded history): either way
        # the feed starts with the registration and ends at repeat.
        assert [(f["from"], f["to"]) for f in facts if f["dimension"] == "stage"] in (
            [(None, "prospect"), ("prospect", "first_buyer"), ("first_buyer", "repeat")],
            [(None, "prospect"), ("prospect", "repeat")],
        )
        assert await wait_until(lambda: redis.xlen(topo.stream("actions")), 30, "actions on Redis")
        on_kafka = await wait_until(
            lambda: topic_messages(stream_config.kafka.bootstrap_servers, topo.topic("stage-changed")),
            30,
            "Kafka stage changes",
        )
        assert {dict(m.headers)["fact_id"].decode() for m in on_kafka} >= {f["change_id"] for f in facts}
        assert all(m.key == b"w1" for m in on_kafka)
        actions = await topic_messages(stream_config.kafka.bootstrap_servers, topo.topic("actions"))
        assert {orjson.loads(m.value)["policy"] for m in actions} >= {"welcome"}
        dead = await wait_until(
            lambda: topic_messages(stream_config.kafka.bootstrap_servers, topo.dead_letter), 30, "the dead letter"
        )
        assert dead[0].value == b"{not json at all"
        assert b"not valid JSON" in dict(dead[0].headers)["reason"]
        row = await wait_until(lambda: redis.hgetall(topo.key("customer", "w1")), 30, "the read model")
        assert row[b"stage"] == b"repeat"
    finally:
        stop(worker)
        await redis.aclose()
    log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in log, log[-3000:]


async def test_two_workers_share_the_load_and_a_sigkill_loses_and_doubles_nothing(stream_config, pg_config, tmp_path):
    config = pg_config.model_copy(
        update={"kafka": stream_config.kafka.model_copy(update={"partitions": 4}), "redis": stream_config.redis}
    )
    topo, cfg = await prepare(config, tmp_path)
    group = f"g{uuid.uuid4().hex[:8]}"
    workers = [start_worker(cfg, group, tmp_path / f"worker{i}.log") for i in range(2)]
    records = []
    for i in range(2400):
        c = f"k{i % 80}"
        record = (
            order(f"e{i}", now_minus(days=400 - i // 8), customer=c)
            if i % 3 == 0
            else tp(f"e{i}", "page.viewed", now_minus(days=400 - i // 8), customer=c)
        )
        # Each customer's device sends visits as a guest (keyed by the device: another partition,
        # often another worker) and signed in (a link): its person's touchpoints cross partitions.
        if i // 80 % 5 == 1:
            record = {**{k: v for k, v in record.items() if k != "customer_id"}, "anonymous_id": f"d{i % 80}"}
        elif i // 80 % 5 == 2:
            record = {**record, "anonymous_id": f"d{i % 80}"}
        records.append(record)
    redis = Redis.from_url(config.redis.url)
    engine = Engine(config, SystemClock())
    try:
        await produce(config.kafka.bootstrap_servers, topo.touchpoints, records[:1200])

        stored = partial(stored_count, engine)

        await wait_until(lambda: asyncio.to_thread(lambda: stored() >= 300), 90, "the first touchpoints")
        stop(workers[0], signal.SIGKILL)  # mid-stream, no goodbye
        await produce(config.kafka.bootstrap_servers, topo.touchpoints, records[1200:] + records[:100])
        await wait_until(lambda: asyncio.to_thread(lambda: stored() >= 2400), 180, "every touchpoint")
        ids = [b["touchpoint"]["event_id"] for _, _, b in scan(engine, TOUCHPOINT_TOPIC)]
        assert len(ids) == len(set(ids)) == 2400
        changes = [b["change"] for _, _, b in scan(engine, CHANGE_TOPIC)]
        assert len({c["change_id"] for c in changes}) == len(changes)
        actions = [b["action"] for _, _, b in scan(engine, ACTION_TOPIC)]
        assert len({(a["action_id"], a["status"], a["at"]) for a in actions}) == len(actions)
        issued = [a["action_id"] for a in actions if a["status"] == "issued"]
        assert len(issued) == len(set(issued))
        for c in range(0, 80, 7):  # the feed ends where the store says, over the person's touchpoints
            view = engine.customer(f"k{c}")
            last = [x["to"] for x in changes if x["customer_id"] == f"k{c}" and x["dimension"] == "stage"][-1]
            assert last == view["stage"]
            assert view["purchases"] == sum(1 for i in range(0, 2400, 3) if i % 80 == c)

        async def relayed():
            entries = await redis.xrange(topo.stream("stage-changed"))
            return entries if len(entries) >= len(changes) else None

        entries = await wait_until(relayed, 60, "the relay to catch up")
        relayed_ids = [f[b"id"].decode() for _, f in entries]
        now_in_store = {b["change"]["change_id"] for _, _, b in scan(engine, CHANGE_TOPIC)}
        assert len(relayed_ids) == len(set(relayed_ids))  # timers may add changes meanwhile, never twice
        assert {c["change_id"] for c in changes} <= set(relayed_ids) <= now_in_store
    finally:
        for w in workers:
            stop(w)
        engine.close()
        await redis.aclose()
    assert "Traceback" not in (tmp_path / "worker1.log").read_text()


def test_streaming_demo_shows_changes_on_both_feeds(tmp_path):
    from click.testing import CliRunner

    from engine.cli import main

    result = CliRunner().invoke(
        main,
        ["demo", "--streaming", "--customers", "40", "--json"],
        env={"JOURNEY_DATA_DIR": str(tmp_path)},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.splitlines()[-1])
    assert summary["kafka"] == summary["redis"] >= 40
    assert summary["actions_on_redis"] > 0


async def test_a_worker_rejects_each_poison_record_to_the_dead_letter_topic_and_moves_on(stream_config, tmp_path):
    # Each of these once crashed the agent, which then consumed nothing more (0 of 40 valid
    # records in 100 s). Now each goes to the dead-letter topic with its reason, under a key
    # naming where it came from, and every valid record around it is ingested.
    from ..poison import POISON, mixed

    lines, expected, n_valid = mixed()  # the poison among 10,000 valid records
    topo, cfg = await prepare(stream_config, tmp_path)
    worker = start_worker(cfg, f"g{uuid.uuid4().hex[:8]}", tmp_path / "worker.log")
    engine = Engine(stream_config, SystemClock())
    try:
        producer = AIOKafkaProducer(bootstrap_servers=stream_config.kafka.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for raw in lines:
                try:
                    key = orjson.loads(raw).get("customer_id", "")
                except orjson.JSONDecodeError:
                    key = "unreadable"
                await producer.send(topo.touchpoints, raw, key=str(key).encode("utf-8", "replace"))
            await producer.flush()
        finally:
            await producer.stop()

        stored = partial(stored_count, engine)

        await wait_until(lambda: asyncio.to_thread(lambda: stored() >= n_valid), 420, "every valid touchpoint")
        dead = await wait_until(
            lambda: _at_least(stream_config.kafka.bootstrap_servers, topo.dead_letter, len(POISON)),
            60,
            "every poison record dead-lettered",
        )
        assert stored() == n_valid
        reasons = {m.value: dict(m.headers) for m in dead}
        assert len(dead) == len(reasons) == len(POISON)
        for raw, field, words in POISON:
            headers = reasons[raw]
            assert headers["field"].decode().startswith(field), (raw, headers)
            assert words in headers["reason"].decode(), (raw, headers)
        keys = [m.key.decode() for m in dead]
        assert len(set(keys)) == len(keys)
        for m in dead:
            h = dict(m.headers)
            assert (
                m.key.decode() == f"{topo.touchpoints}/{h['source_partition'].decode()}/{h['source_offset'].decode()}"
            )
    finally:
        stop(worker)
        engine.close()
    log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in log, log[-3000:]


async def _at_least(bootstrap: str, topic: str, n: int) -> list | None:
    messages = await topic_messages(bootstrap, topic)
    return messages if len(messages) >= n else None


async def test_a_worker_whose_store_fails_retries_and_loses_nothing(stream_config, tmp_path):
    # The machinery failing (here: the SQLite store locked by another program past the 30 s the
    # store waits) must not kill the agent, which would then consume nothing more: the worker
    # retries the batch until the store is back, and every touchpoint arrives once.
    import sqlite3

    topo, cfg = await prepare(stream_config, tmp_path)
    worker = start_worker(cfg, f"g{uuid.uuid4().hex[:8]}", tmp_path / "worker.log")
    engine = Engine(stream_config, SystemClock())
    blocker = None
    try:
        await produce(
            stream_config.kafka.bootstrap_servers,
            topo.touchpoints,
            [tp("b0", "page.viewed", now_minus(days=1), customer="s0")],
        )

        stored = partial(stored_count, engine)

        await wait_until(lambda: asyncio.to_thread(lambda: stored() >= 1), 90, "the first touchpoint")
        blocker = sqlite3.connect(Path(stream_config.data_dir) / stream_config.store.sqlite_file, timeout=30)
        blocker.execute("BEGIN EXCLUSIVE")  # nobody else writes now
        await produce(
            stream_config.kafka.bootstrap_servers,
            topo.touchpoints,
            [tp(f"b{i}", "page.viewed", now_minus(days=1), customer=f"s{i % 7}") for i in range(1, 60)],
        )
        log = tmp_path / "worker.log"
        await wait_until(lambda: asyncio.sleep(0, "failed" in log.read_text()), 90, "the worker to see the failure")
        blocker.rollback()
        blocker.close()
        blocker = None
        await wait_until(lambda: asyncio.to_thread(lambda: stored() >= 60), 120, "every touchpoint after the outage")
        ids = [b["touchpoint"]["event_id"] for _, _, b in scan(engine, TOUCHPOINT_TOPIC)]
        assert len(ids) == len(set(ids)) == 60
    finally:
        if blocker is not None:
            blocker.close()
        stop(worker)
        engine.close()
    text = (tmp_path / "worker.log").read_text()
    assert "ingesting a batch of" in text and "trying again" in text
    assert "Traceback" not in text, text[-3000:]


async def test_a_worker_whose_redis_connections_drop_keeps_going(stream_config, tmp_path):
    """A connection Redis closes (a restart, a proxy, a timeout) is expected: the read model and the
    feeds try again, and the worker never crashes (before, a drop inside the read model's timer
    took the whole worker down)."""
    from streams.worker import REDIS_CLIENT_NAME

    topo, cfg = await prepare(stream_config, tmp_path)
    worker = start_worker(cfg, f"g{uuid.uuid4().hex[:8]}", tmp_path / "worker.log")
    redis = Redis.from_url(stream_config.redis.url)
    try:
        customers = [f"rd{i}" for i in range(40)]
        records = [
            order(f"rd-{i}-{k}", now_minus(days=30 - k), customer=c) for i, c in enumerate(customers) for k in range(3)
        ]
        await produce(stream_config.kafka.bootstrap_servers, topo.touchpoints, records[:60])
        await wait_until(lambda: redis.hgetall(topo.key("customer", customers[0])), 90, "the read model")
        for _ in range(40):  # drop the worker's connections (only those) again and again
            for client in await redis.client_list():
                if client.get("name") == REDIS_CLIENT_NAME:
                    await redis.client_kill_filter(_id=client["id"])
            await asyncio.sleep(0.1)
        await produce(stream_config.kafka.bootstrap_servers, topo.touchpoints, records[60:])
        rows = await wait_until(
            lambda: redis.hgetall(topo.key("customer", customers[-1])), 90, "the read model after the drops"
        )
        assert rows[b"purchases"] == b"3"
        assert worker.poll() is None, "the worker stopped"
    finally:
        stop(worker)
        await redis.aclose()
    log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in log and "crash" not in log, log[-3000:]
