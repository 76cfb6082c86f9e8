"""Subscriber helpers for marketing automation: consume stage changes or actions from a Redis
consumer group or from Kafka, with acknowledgement, crash recovery and a dead-letter.

A handler is `async def handle(fact: dict) -> None`; raising means "not done". Delivery is at
least once, so handlers drop facts whose `id` they have already seen (a relay restarted after a
crash never republishes to Redis, but a Kafka consumer may see a fact again after a rebalance).

    sub = RedisSubscriber(redis, "journey:stage-changed", group="crm", consumer="crm-1")
    await sub.run(handle, stop=stop_event)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class RedisSubscriber:
    def __init__(
        self,
        redis: Redis,
        stream: str,
        group: str,
        consumer: str,
        *,
        max_deliveries: int = 5,
        claim_idle_ms: int = 30_000,
        block_ms: int = 500,
    ):
        self.redis, self.stream, self.group, self.consumer = redis, stream, group, consumer
        self.max_deliveries, self.claim_idle_ms, self.block_ms = max_deliveries, claim_idle_ms, block_ms
        self.dead_letter = f"{stream}:dead-letter:{group}"

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def run(self, handle: Handler, stop: asyncio.Event | None = None, max_messages: int | None = None) -> int:
        """Process messages until `stop` is set or `max_messages` were handled; returns that count."""
        await self.ensure_group()
        handled = 0
        while not (stop and stop.is_set()) and (max_messages is None or handled < max_messages):
            batch = await self._claim() or await self._read()
            for message_id, fields in batch:
                if await self._handle(message_id, fields, handle):
                    handled += 1
        return handled

    async def _claim(self) -> list[tuple[bytes, dict]]:
        """Messages a crashed consumer took and never acknowledged, once they have idled long enough."""
        _, messages, *_ = await self.redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_time=self.claim_idle_ms, start_id="0-0", count=100
        )
        return [(mid, fields) for mid, fields in messages if fields is not None]

    async def _read(self) -> list[tuple[bytes, dict]]:
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=100, block=self.block_ms
        )
        # redis-py's legacy (RESP2-shaped) replies, its default: [[stream, messages], ...]; typed
        # as either shape, since the shape is a client setting.
        assert isinstance(reply, list)
        return [m for _, messages in reply for m in messages]

    async def _handle(self, message_id: bytes, fields: dict, handle: Handler) -> bool:
        pending = await self.redis.xpending_range(self.stream, self.group, min=message_id, max=message_id, count=1)
        deliveries = pending[0]["times_delivered"] if pending else 1
        assert isinstance(deliveries, int)  # XPENDING's delivery count (typed with its ids and names)
        if deliveries > self.max_deliveries:
            await self.redis.xadd(self.dead_letter, {**fields, "deliveries": deliveries, "original_id": message_id})
            await self.redis.xack(self.stream, self.group, message_id)
            return False
        try:
            await handle(
                {**orjson.loads(fields[b"fact"]), "id": fields[b"id"].decode(), "position": int(fields[b"position"])}
            )
        except Exception:  # noqa: BLE001 - left pending: retried after claim_idle_ms, then dead-lettered
            return False
        await self.redis.xack(self.stream, self.group, message_id)
        return True


class KafkaSubscriber:
    """Consume `journey.stage-changed` or `journey.actions` in a consumer group; offsets are
    committed after the handler succeeds; after `max_attempts` failures the message goes to
    `<topic>.dead-letter.<group>` and is committed."""

    def __init__(self, bootstrap: str, topic: str, group: str, *, max_attempts: int = 3):
        self.bootstrap, self.topic, self.group, self.max_attempts = bootstrap, topic, group, max_attempts
        self.dead_letter = f"{topic}.dead-letter.{group}"

    async def run(
        self,
        handle: Handler,
        stop: asyncio.Event | None = None,
        max_messages: int | None = None,
        idle_timeout: float | None = None,
    ) -> int:
        """Consume until `stop`, `max_messages` consumed, or `idle_timeout` s without a message;
        returns how many were handled (the rest went to the dead-letter topic)."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await consumer.start()
        await producer.start()
        handled = consumed = 0
        try:
            while not (stop and stop.is_set()) and (max_messages is None or consumed < max_messages):
                try:
                    msg = await asyncio.wait_for(consumer.getone(), timeout=idle_timeout)
                except TimeoutError:
                    break
                consumed += 1
                fact = {
                    **orjson.loads(msg.value),
                    "id": dict(msg.headers)["fact_id"].decode(),
                    "position": int(dict(msg.headers)["position"]),
                }
                for attempt in range(self.max_attempts):
                    try:
                        await handle(fact)
                        handled += 1
                        break
                    except Exception:  # noqa: BLE001 - retried, then dead-lettered below
                        if attempt == self.max_attempts - 1:
                            await producer.send_and_wait(
                                self.dead_letter, msg.value, key=msg.key, headers=list(msg.headers)
                            )
                await consumer.commit()
        finally:
            await consumer.stop()
            await producer.stop()
        return handled
