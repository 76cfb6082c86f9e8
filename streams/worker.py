"""The ingestion worker: a faust app on `journey.touchpoints`, keyed by customer id.

Each worker takes batches from its partitions and hands them to the engine off the event
loop (the store is synchronous); invalid records go to `journey.dead-letter` with their
reason and original bytes before the batch is acknowledged. Kafka delivers at least once;
idempotent appends make the effect exactly once. The leader (one worker of the group, chosen
by faust) also runs the timers, the relays and the Redis read model.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import faust
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import rejects
from engine.clock import iso
from engine.config import Config
from engine.memory import settle
from engine.persistence.files import private_dir
from engine.service import INFRASTRUCTURE, Engine
from engine.settings import KAFKA_DEDUP_HEADER

from . import readmodel
from .relay import KafkaRelay, ensure_topics, relay_redis
from .topology import Topology

log = logging.getLogger("journey.worker")


class Outbox:
    """The leader's duties: due timers and both relays (the feeds), and the read model."""

    def __init__(self, engine: Engine, config: Config, topo: Topology, writing: asyncio.Lock | None = None):
        self.engine, self.topo = engine, topo
        # The engine's writers share its customer cache: one write at a time.
        self.writing = writing or asyncio.Lock()
        # Named, so that an operator (or a test) can tell the workers' connections in CLIENT LIST.
        self.redis = Redis.from_url(config.redis.url, client_name=REDIS_CLIENT_NAME)
        self.kafka = KafkaRelay(engine, config.kafka.bootstrap_servers, topo)
        self.started = False
        self.wake = asyncio.Event()  # set after each ingested batch: the feeds have news
        self.stopping = False

    async def feeds(self) -> int:
        """Run the due timers, then relay both feeds until caught up; returns what moved."""
        if not self.started:
            await self.kafka.start()
            self.started = True
        async with self.writing:
            done = (await asyncio.to_thread(self.engine.run_due)).total
        while moved := await relay_redis(self.engine, self.redis, self.topo) + await self.kafka.run_once():
            done += moved
        return done

    async def read_model(self) -> int:
        """One bounded step of the read model: it never holds up the feeds, which subscribers wait on."""
        return await readmodel.update(self.engine, self.redis, self.topo, batch=READ_MODEL_STEP)

    async def tick(self) -> int:
        return await self.feeds() + await self.read_model()

    async def attempt(self, what: str, step: Callable[[], Awaitable[int]]) -> int:
        """One of the leader's duties; if it fails, 0 after a pause, and the next round resumes (the
        positions are kept). The store or a server away for a while (a dropped connection) is
        expected: logged without a trace. While the worker stops, its producer closes under the
        duty: nothing to say."""
        try:
            return await step()
        except AWAY as e:
            if not self.stopping:
                log.error("%s failed (%r); trying again", what, e)
        except Exception:  # noqa: BLE001 - see above
            if not self.stopping:
                log.exception("%s failed; trying again", what)
        if not self.stopping:
            await asyncio.sleep(1)
        return 0

    async def stop(self) -> None:
        self.stopping = True
        await self.kafka.stop()
        await self.redis.aclose()


REDIS_CLIENT_NAME = "journey-worker"
READ_MODEL_STEP = 2000  # events of the log per read-model step
IDLE = 0.1  # seconds the leader waits for news before looking anyway


def _fetch_wait(ms: int) -> None:
    """Make faust's consumers wait at most `ms` per fetch. faust builds its aiokafka consumer with
    fetch_max_wait_ms=1500 and no setting to change it; a broker that holds a fetch for the whole
    wait even when messages arrive (Tansu does) then delays every touchpoint by ~0.4 s at the median
    (measured: p50 395 ms at 1,500, 4 ms at 50). With Apache Kafka a fetch returns as soon as data
    arrives, and a short wait only adds idle fetches."""
    from faust.transport.drivers import aiokafka as driver

    create = getattr(
        driver.AIOKafkaConsumerThread._create_worker_consumer,
        "__wrapped__",
        driver.AIOKafkaConsumerThread._create_worker_consumer,
    )

    @functools.wraps(create)  # __wrapped__ keeps faust's own, which the next app's patch wraps
    def create_with_wait(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = ms  # read when the consumer starts its fetcher
        return consumer

    # A patch of faust's method, deliberately: mypy rightly flags assigning to a method.
    driver.AIOKafkaConsumerThread._create_worker_consumer = create_with_wait  # type: ignore[method-assign]


def dead_letter_key(message: Any) -> bytes:
    """Where the record came from (topic/partition/offset): the same record dead-lettered again
    after a crash and a redelivery gets the same key, so consumers deduplicate by key (and a
    compacted dead-letter topic keeps one copy)."""
    return f"{message.topic}/{message.partition}/{message.offset}".encode()


RETRY_SECONDS = (0.5, 1, 2, 5, 10, 30)
# A server away for a while (the store, Redis restarting or closing a connection): logged without a
# trace, and tried again.
AWAY: tuple[type[BaseException], ...] = (*INFRASTRUCTURE, RedisConnectionError, RedisTimeoutError)


def dedup_by_id(message: Any) -> bool:
    headers = message.headers or ()
    pairs = headers.items() if isinstance(headers, dict) else headers
    return any(k == KAFKA_DEDUP_HEADER and v == b"id" for k, v in pairs)


async def retry_until_done(work: Any, writing: asyncio.Lock, what: str) -> Any:
    """Run a store call off the loop, holding the writer lock, and retry (with growing pauses)
    while the machinery fails: the batch is not acknowledged until it is done."""
    for attempt in itertools.count():
        async with writing:
            try:
                return await asyncio.to_thread(work)
            except Exception as e:  # noqa: BLE001 - not acknowledged yet: tried again
                pause = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                log.error("%s failed (%r); trying again in %g s", what, e, pause)
        await asyncio.sleep(pause)
    raise AssertionError("unreachable")


async def ingest_until_done(
    engine: Engine, values: list[bytes], writing: asyncio.Lock, by_id: bool = False
) -> tuple[Any, float]:
    """Ingest a batch, retrying (with growing pauses) while the machinery fails: a lost database
    connection or a full disk must not kill the agent, which would then consume nothing more.
    Records themselves never fail a batch: the engine rejects those it cannot process. Returns
    the report and when the write began (after waiting for the writer)."""
    began = 0.0

    def work() -> Any:
        nonlocal began
        began = time.perf_counter()
        return engine.ingest(values, None, by_id)

    return await retry_until_done(work, writing, f"ingesting a batch of {len(values)}"), began


def build_app(config: Config, engine: Engine, app_id: str = "journey", relays: bool = True) -> faust.App:
    topo = Topology.of(config)
    _fetch_wait(config.kafka.fetch_max_wait_ms)
    app = faust.App(
        app_id,
        broker=f"kafka://{config.kafka.bootstrap_servers}",
        value_serializer="raw",
        topic_partitions=config.kafka.partitions,
        store="memory://",
        web_enabled=False,
        # Faust keeps a data directory (default: "<app id>-data" in the working directory): the
        # engine's own data directory holds it, so no run leaves folders where it was started.
        datadir=str(private_dir(config.data_path) / f"faust-{app_id}"),
        # Without these every group join waits 30-60 s on this broker.
        broker_session_timeout=6,
        broker_rebalance_timeout=6,
        broker_heartbeat_interval=1,
        producer_acks=-1,
        topic_allow_declare=True,
    )
    touchpoints = app.topic(topo.touchpoints, value_serializer="raw", partitions=config.kafka.partitions)
    dead_letter = app.topic(topo.dead_letter, value_serializer="raw", partitions=config.kafka.partitions)
    writing = asyncio.Lock()
    outbox = Outbox(engine, config, topo, writing)

    @app.task
    async def topics() -> None:
        await ensure_topics(config.kafka.bootstrap_servers, topo)

    async def ingest_part(events: list[Any], by_id: bool) -> None:
        values = [e.value for e in events]
        asked = time.perf_counter()
        report, began = await ingest_until_done(engine, values, writing, by_id)
        settle()  # the collector's policy, after each batch (engine.memory)
        outbox.wake.set()
        kept = []
        for r in report.rejections:
            original = events[r.record - 1].message
            where = dead_letter_key(original)
            await dead_letter.send(
                key=where,
                value=values[r.record - 1],
                headers={
                    "reason": r.message().encode(),
                    "field": r.field.encode(),
                    "source_key": original.key or b"",
                    "source_partition": str(original.partition).encode(),
                    "source_offset": str(original.offset).encode(),
                },
            )
            value = values[r.record - 1] or b""  # a record with no value (a tombstone) is kept empty
            customer = rejects.sent_by(value, "customer_id", "anonymous_id") or (original.key or b"").decode(
                errors="replace"
            )
            received = iso(datetime.now(UTC))
            kept.append(
                rejects.row(f"kafka/{where.decode()}", received, value, r.field, r.reason, customer, r.event_id)
            )
        if kept:  # before the batch is acknowledged: a crash here redelivers, and each is kept once
            await retry_until_done(lambda: engine.keep_rejects(kept), writing, "keeping the rejects")
        log.info(
            "batch of %d in %.3f s (%.3f s waiting for the writer): %s",
            len(values),
            time.perf_counter() - began,
            began - asked,
            report.summary(),
        )

    @app.agent(touchpoints)
    async def ingest(stream: Any) -> None:
        async for events in stream.take_events(config.kafka.batch_size, within=config.kafka.batch_seconds):
            # Segment messages sent by journey serve are duplicates by their id alone (api.sink):
            # each run of consecutive records of one kind is ingested in turn, in arrival order.
            for by_id, run in itertools.groupby(events, key=lambda e: dedup_by_id(e.message)):
                await ingest_part(list(run), by_id)

    if relays:

        @app.task
        async def feeds() -> None:
            # Woken by this process's ingest (latency: a batch's facts go out at once), else every
            # IDLE seconds (another worker's batches, due timers). Only the leader relays.
            while True:
                outbox.wake.clear()
                if app.is_leader():
                    began = time.perf_counter()
                    if moved := await outbox.attempt("relaying the feeds", outbox.feeds):
                        log.info("relayed %d facts in %.3f s", moved, time.perf_counter() - began)
                try:
                    await asyncio.wait_for(outbox.wake.wait(), IDLE)
                except TimeoutError:
                    pass

        @app.timer(IDLE, on_leader=True)
        async def read_model() -> None:
            # (An exception out of a faust timer would crash the whole worker: attempt keeps it in.)
            while await outbox.attempt("updating the read model", outbox.read_model):
                pass  # until caught up, then wait for the next tick

    @app.on_before_shutdown.connect
    async def _closed(*_: Any, **__: Any) -> None:
        await outbox.stop()

    return app
