"""The streaming edge on real servers: a Tansu Kafka-protocol broker and a redis-server."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from engine.clock import FixedClock
from engine.queries import facts_page
from engine.service import Engine
from engine.value_view import fit
from streams import readmodel
from streams.relay import KafkaRelay, relay_redis
from streams.subscribe import KafkaSubscriber, RedisSubscriber
from streams.topology import FEEDS, Topology, fact_id

from ..conftest import NOW
from ..helpers import order, tp

ago = lambda d: NOW - timedelta(days=d)  # noqa: E731


def history(customers: int = 6, start: int = 0) -> list[dict]:
    out = []
    for c in range(start, start + customers):
        out += [
            tp(f"r{c}", "customer.registered", ago(50), customer=f"c{c}"),
            *(order(f"o{c}-{i}", ago(40 - i * 5), customer=f"c{c}") for i in range(c % 5)),
        ]
    return out


async def eventually(condition, what: str, seconds: float = 60) -> None:
    """Wait for an async condition, polling; a generous limit, only so a broken build ends."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"waited {seconds:g} s for {what}")
        await asyncio.sleep(0.05)


async def idle_at_least(redis, stream: str, group: str, ms: int) -> bool:
    pending = await redis.xpending_range(stream, group, min="-", max="+", count=10_000)
    return bool(pending) and all(p["time_since_delivered"] >= ms for p in pending)


async def kafka_facts(bootstrap: str, topo: Topology) -> list[tuple[int, str]]:
    consumer = AIOKafkaConsumer(
        *(topo.topic(f) for f in FEEDS),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out = []
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            out += [
                (int(dict(m.headers)["position"]), dict(m.headers)["fact_id"].decode())
                for msgs in batch.values()
                for m in msgs
            ]
    finally:
        await consumer.stop()
    return sorted(out)


async def drain(*steps) -> None:
    for step in steps:
        while await step():
            pass


async def test_relays_publish_both_feeds_and_a_killed_relay_resumes_without_gap_or_duplicate(stream_config):
    topo = Topology.of(stream_config)
    redis = Redis.from_url(stream_config.redis.url)
    with Engine(stream_config, FixedClock(NOW)) as engine:
        engine.ingest(history())
        relay = KafkaRelay(engine, stream_config.kafka.bootstrap_servers, topo)
        await relay.start()
        await drain(lambda: relay.run_once(batch=7), lambda: relay_redis(engine, redis, topo, batch=7))
        await relay.stop()
        crash_point = engine.store.journal.get_position(KafkaRelay.NAME)

        engine.ingest(history(start=6))  # more facts arrive...
        killed = KafkaRelay(engine, stream_config.kafka.bootstrap_servers, topo)
        await killed.start()
        await killed.run_once(batch=9)  # ...a batch goes out...
        engine.store.journal.set_position(KafkaRelay.NAME, crash_point)  # ...and the process dies before saving
        await killed.stop()
        again = KafkaRelay(engine, stream_config.kafka.bootstrap_servers, topo)
        await again.start()
        await drain(again.run_once, lambda: relay_redis(engine, redis, topo))
        await again.stop()

        facts = facts_page(engine, 0, 100_000)
        assert {feed for _, feed, _ in facts} == set(FEEDS)
        expected = sorted((p, fact_id(feed, f)) for p, feed, f in facts)
    assert len(expected) > 40
    assert await kafka_facts(stream_config.kafka.bootstrap_servers, topo) == expected
    in_redis = []
    for feed in FEEDS:
        for _, fields in await redis.xrange(topo.stream(feed)):
            in_redis.append((int(fields[b"position"]), fields[b"id"].decode()))
            fact = orjson.loads(fields[b"fact"])
            assert fields[b"customer_id"].decode() == fact["customer_id"]
            if feed == "stage-changed" and fact["dimension"] != "value_segment":  # each change names its ladder
                assert (fact["ladder"], len(fact["ladder_version"])) == ("customer", 12)
    assert sorted(in_redis) == expected
    await redis.aclose()


async def test_read_model_equals_the_store_and_rebuilds_to_the_same(stream_config):
    topo = Topology.of(stream_config)
    redis = Redis.from_url(stream_config.redis.url)
    with Engine(stream_config, FixedClock(NOW)) as engine:
        engine.ingest(
            history(8)
            + [
                tp("k", "complaint.filed", ago(1), customer="c3", complaint_id="k", severity="low"),
                tp("inv", "invoice.overdue", ago(2), customer="c4", invoice_id="i1", amount=5, currency="EUR"),
                tp("ref", "order.refunded", ago(3), customer="c4", order_id="o4-0", amount=4.5),
                {
                    **tp("ok", "consent.changed", ago(4), customer="c2"),
                    "properties": {"channel": "email", "purpose": "promotional", "granted": True},
                },
            ]
        )
        assert await readmodel.catch_up(engine, redis, topo) == 8
        first = {f"c{c}": await readmodel.lookup(redis, topo, f"c{c}") for c in range(8)}
        for c in range(8):
            view = engine.customer(f"c{c}")
            row = first[f"c{c}"]
            assert (row["stage"], row["health"], row["purchases"], row["revenue"], row["last_purchase"]) == (
                view["stage"],
                view["health"],
                view["purchases"],
                view["revenue"],
                view["last_purchase"],
            )
            assert row["open_complaint"] is bool(view["open_complaints"])
            assert row["overdue_invoice"] is bool(view["overdue_invoices"])
            assert (row["consent"], row["erased"]) == (view["consent"], view["erased"])
            assert (row["net_revenue"], row["value_segment"]) == (view["value"]["net_revenue"], None)  # no model
        fit(engine, NOW)  # a value model: the next purchase records c0's value segment
        engine.clock.advance(seconds=1)
        engine.ingest([order("late", ago(2), customer="c0")])
        await readmodel.catch_up(engine, redis, topo)
        c0 = await readmodel.lookup(redis, topo, "c0")
        predicted = engine.view("c0", engine.clock.now())["value"]["predicted"]
        assert c0["purchases"] == 1 and c0["value_segment"] == predicted["value_segment"]
        assert (c0["p_alive"], c0["clv"], c0["model_id"]) == (
            predicted["p_alive"],
            predicted["clv"],
            predicted["model_id"],
        )
        await redis.hset(topo.key("customer", "c1"), "stage", "corrupted")
        assert await readmodel.rebuild(engine, redis, topo) == 8
        rebuilt = {f"c{c}": await readmodel.lookup(redis, topo, f"c{c}") for c in range(8)}
    scores = ("p_alive", "clv", "model_id")  # as of each row's update: the rebuild scored c1 with the model
    assert {k: v for k, v in rebuilt["c1"].items() if k not in scores} == {
        k: v for k, v in first["c1"].items() if k not in scores
    }
    assert rebuilt["c1"]["model_id"] == predicted["model_id"] and rebuilt["c0"]["purchases"] == 1
    assert await readmodel.lookup(redis, topo, "nobody") is None
    await redis.aclose()


async def test_a_crashed_subscriber_is_taken_over_by_xautoclaim_then_dead_lettered(stream_config):
    topo = Topology.of(stream_config)
    redis = Redis.from_url(stream_config.redis.url)
    with Engine(stream_config, FixedClock(NOW)) as engine:
        engine.ingest(history(3))
        await drain(lambda: relay_redis(engine, redis, topo))
    stream = topo.stream("stage-changed")
    total = await redis.xlen(stream)
    crashed = RedisSubscriber(redis, stream, "crm", "crm-1", claim_idle_ms=200, block_ms=100)

    async def dies(fact):
        raise RuntimeError("the process died here")

    await crashed.run(dies, max_messages=0)  # joins the group
    await crashed._read()  # takes messages, then "crashes"
    assert (await redis.xpending(stream, "crm"))["pending"] == total
    # Taken over only once they idled past claim_idle_ms, as the server measures it.
    await eventually(lambda: idle_at_least(redis, stream, "crm", 200), "the crashed messages to idle")
    seen = []

    async def works(fact):
        seen.append(fact["id"])

    survivor = RedisSubscriber(redis, stream, "crm", "crm-2", claim_idle_ms=200, block_ms=100)
    assert await survivor.run(works, max_messages=total) == total
    assert len(set(seen)) == total and (await redis.xpending(stream, "crm"))["pending"] == 0

    poison = RedisSubscriber(redis, stream, "poison", "p-1", claim_idle_ms=0, block_ms=50, max_deliveries=2)
    stop = asyncio.Event()
    running = asyncio.create_task(poison.run(dies, stop=stop))

    async def all_dead() -> bool:
        return await redis.xlen(poison.dead_letter) >= total

    await eventually(all_dead, "every message to be dead-lettered")
    stop.set()
    assert await running == 0
    assert await redis.xlen(poison.dead_letter) == total  # every message, after 2 failed deliveries
    assert (await redis.xpending(stream, "poison"))["pending"] == 0
    await redis.aclose()


async def test_kafka_subscriber_acknowledges_and_dead_letters(stream_config):
    topo = Topology.of(stream_config)
    with Engine(stream_config, FixedClock(NOW)) as engine:
        engine.ingest(history(3))
        relay = KafkaRelay(engine, stream_config.kafka.bootstrap_servers, topo)
        await relay.start()
        await drain(relay.run_once)
        await relay.stop()
        expected = len([1 for _, feed, _ in facts_page(engine, 0, 10_000) if feed == "stage-changed"])
    seen = []

    async def handle(fact):
        if fact["to"] == "first_buyer":
            raise ValueError("cannot handle first buyers")
        seen.append(fact["id"])

    sub = KafkaSubscriber(stream_config.kafka.bootstrap_servers, topo.topic("stage-changed"), "crm", max_attempts=2)
    await sub.run(handle, max_messages=expected, idle_timeout=8)
    failed = expected - len(seen)
    assert failed > 0 and len(set(seen)) == len(seen)
    # All committed: a new member of the group gets only what is published after (a probe), not
    # what the first one handled or dead-lettered (an idle run returning 0 would also pass if
    # the consumer never joined).
    producer = AIOKafkaProducer(bootstrap_servers=stream_config.kafka.bootstrap_servers, acks="all")
    await producer.start()
    await producer.send_and_wait(
        topo.topic("stage-changed"),
        orjson.dumps({"to": "repeat"}),
        key=b"probe",
        headers=[("fact_id", b"probe"), ("position", b"999999")],
    )
    await producer.stop()
    handled_before = list(seen)
    again = KafkaSubscriber(stream_config.kafka.bootstrap_servers, topo.topic("stage-changed"), "crm")
    assert await again.run(handle, max_messages=1, idle_timeout=60) == 1
    assert seen == handled_before + ["probe"]
    dead = AIOKafkaConsumer(
        sub.dead_letter,
        bootstrap_servers=stream_config.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await dead.start()
    got = 0

    async def all_read() -> bool:
        nonlocal got
        got += sum(len(v) for v in (await dead.getmany(timeout_ms=500)).values())
        return got >= failed

    await eventually(all_read, "the dead letters")
    await dead.stop()
    assert got == failed


def test_relay_readmodel_and_from_redis_commands(stream_config, tmp_path):
    import json

    from click.testing import CliRunner

    from engine.cli import main
    from engine.config import dump_toml

    cfg = tmp_path / "j.toml"
    cfg.write_text(dump_toml(stream_config))
    with Engine(stream_config, FixedClock(NOW)) as engine:
        engine.ingest(history(4))
    run = lambda *a: CliRunner().invoke(main, [*a, "--config", str(cfg), "--json"], catch_exceptions=False)  # noqa: E731
    relayed = run("relay", "--once")
    assert relayed.exit_code == 0 and json.loads(relayed.output)["published"] > 0
    assert json.loads(run("readmodel", "--rebuild").output) == {"customers": 4}
    row = json.loads(run("customer", "c3", "--from-redis").output)
    assert (row["customer_id"], row["purchases"]) == ("c3", 3)
    assert json.loads(run("customer", "c3").output)["purchases"] == 3  # the store, as before
    assert run("customer", "nobody", "--from-redis").exit_code != 0
    text = CliRunner().invoke(main, ["customer", "c3", "--from-redis", "--config", str(cfg)]).output
    assert "stage repeat" in text and "revenue 30.00 EUR" in text and "open complaint no" in text
    # words, not Python or JSON: it printed open_complaint False, ladders {} and the consent's JSON
    assert not any(w in text for w in ("{", "None", "False", "True")), text


async def test_a_held_out_action_goes_out_on_both_feeds_only_as_held_out(stream_config):
    """Subscribers send what is issued: a control group's decisions reach Redis and Kafka with
    status held_out, never issued, and the persons are the held-out ones."""
    from engine.policies.holdout import share

    from ..helpers import open_contact, welcome_email

    rules = open_contact()
    cfg = stream_config.model_copy(update={"policies": (welcome_email(holdout=0.5),), "contact": rules})
    topo = Topology.of(cfg)
    redis = Redis.from_url(cfg.redis.url)
    with Engine(cfg, FixedClock(NOW)) as engine:
        engine.ingest([tp(f"h{c}", "customer.registered", ago(5), customer=f"h{c}") for c in range(40)])
        relay = KafkaRelay(engine, cfg.kafka.bootstrap_servers, topo)
        await relay.start()
        await drain(relay.run_once, lambda: relay_redis(engine, redis, topo))
        await relay.stop()
    held = {f"h{c}" for c in range(40) if share(f"h{c}", "hello", rules.holdout_salt) < 0.5}
    on_redis = [orjson.loads(f[b"fact"]) for _, f in await redis.xrange(topo.stream("actions"))]
    consumer = AIOKafkaConsumer(
        topo.topic("actions"),
        bootstrap_servers=cfg.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    on_kafka = []
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            on_kafka += [orjson.loads(m.value) for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    await redis.aclose()
    for feed in (on_redis, on_kafka):
        hello_facts = [a for a in feed if a["policy"] == "hello"]
        assert {a["customer_id"] for a in hello_facts if a["status"] == "held_out"} == held and held
        assert not [a for a in hello_facts if a["status"] == "issued" and a["customer_id"] in held]
