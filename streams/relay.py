"""Relays (outbox): follow the store's lifecycle-change and action feeds from a tracked
position and publish them to Kafka and to Redis Streams.

Redis: the entries and the new position are written in one MULTI/EXEC guarded by WATCH, so
a crash or a second relay can neither lose nor repeat an entry.
Kafka has no transactions here, so the relay writes each fact to a partition it computes
itself, one batch at a time, and records its position in the store after the batch is
acknowledged. After a crash it reads the last message of every partition and resumes each
partition after the last position found there: no gap and no duplicate id.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from redis.asyncio import Redis
from redis.exceptions import WatchError
from redis.typing import EncodableT, FieldT

from engine.queries import facts_page
from engine.service import Engine

from .topology import FEEDS, Topology, fact_id

BATCH = 2000  # facts per relay round: one position write and one round trip each


def entry(position: int, feed: str, fact: dict[str, Any]) -> dict[FieldT, EncodableT]:
    return {
        "position": position,
        "feed": feed,
        "id": fact_id(feed, fact),
        "customer_id": fact["customer_id"],
        "fact": orjson.dumps(fact),
    }


async def relay_redis(engine: Engine, redis: Redis, topo: Topology, batch: int = BATCH) -> int:
    """Publish the next batch of facts to the Redis streams; returns how many were published."""
    position_key = topo.key("relay", "redis", "position")
    async with redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(position_key)
            position = int(await pipe.get(position_key) or 0)
            facts = await asyncio.to_thread(facts_page, engine, position, batch)
            if not facts:
                return 0
            pipe.multi()
            for pos, feed, fact in facts:
                pipe.xadd(topo.stream(feed), entry(pos, feed, fact), maxlen=topo.stream_maxlen, approximate=True)
            pipe.set(position_key, facts[-1][0])
            await pipe.execute()
        except WatchError:
            return 0  # another relay moved first; it published these
    return len(facts)


async def ensure_topics(bootstrap: str, topo: Topology) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [topo.touchpoints, topo.dead_letter, *(topo.topic(f) for f in FEEDS)]
        missing = [NewTopic(t, topo.partitions, 1) for t in wanted if t not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another worker created them first
    finally:
        await admin.close()


class KafkaRelay:
    NAME = "relay:kafka"

    def __init__(self, engine: Engine, bootstrap: str, topo: Topology):
        self.engine, self.bootstrap, self.topo = engine, bootstrap, topo
        self.producer: AIOKafkaProducer | None = None
        self.published: dict[tuple[str, int], int] = {}  # (feed, partition) -> last position there
        self.position = 0

    async def start(self) -> None:
        await ensure_topics(self.bootstrap, self.topo)
        # acks=all and one batch in flight per partition keep each partition in position order.
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await self.producer.start()
        # Everything up to the stored position was acknowledged; beyond it, a crashed batch may
        # have reached some partitions, and those facts are skipped per partition.
        self.position = await asyncio.to_thread(self.engine.store.journal.get_position, self.NAME)
        self.published = await self._last_published()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def _last_published(self) -> dict[tuple[str, int], int]:
        """The position header of the last message in every partition of the output topics."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            parts = [TopicPartition(self.topo.topic(f), p) for f in FEEDS for p in range(self.topo.partitions)]
            consumer.assign(parts)
            ends = await consumer.end_offsets(parts)
            last: dict[tuple[str, int], int] = {}
            for tp in parts:
                feed = tp.topic[len(self.topo.topic_prefix) + 1 :]
                last[(feed, tp.partition)] = 0
                if ends[tp] == 0:
                    continue
                consumer.seek(tp, ends[tp] - 1)
                records = (await consumer.getmany(tp, timeout_ms=5000)).get(tp, [])
                if records:
                    last[(feed, tp.partition)] = int(dict(records[-1].headers)["position"])
            return last
        finally:
            await consumer.stop()

    async def run_once(self, batch: int = BATCH) -> int:
        assert self.producer is not None, "start() the relay first"
        facts = await asyncio.to_thread(facts_page, self.engine, self.position, batch)
        if not facts:
            return 0
        sent = []
        for pos, feed, fact in facts:
            partition = self.topo.partition(fact["customer_id"])
            if pos <= self.published.get((feed, partition), 0):
                continue  # already there before a crash
            headers = [("position", str(pos).encode()), ("fact_id", fact_id(feed, fact).encode())]
            sent.append(
                await self.producer.send(
                    self.topo.topic(feed),
                    orjson.dumps(fact),
                    key=fact["customer_id"].encode(),
                    partition=partition,
                    headers=headers,
                )
            )
            self.published[(feed, partition)] = pos
        await asyncio.gather(*sent)
        self.position = facts[-1][0]
        await asyncio.to_thread(self.engine.store.journal.set_position, self.NAME, self.position)
        return len(sent)
