"""The Kafka sink (`[http] sink = "kafka"`): what the API accepted goes to
`<kafka.topic_prefix>.touchpoints`, keyed by customer id, and the answer waits until every in-sync
replica has it (acks=all): a 200 means durable. `journey worker`s ingest it from there, exactly
once: a redelivered record is a duplicate, and a Segment message (marked with KAFKA_DEDUP_HEADER) is a
duplicate by its id alone, as over the store sink."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from engine.settings import KAFKA_DEDUP_HEADER, KafkaSettings


class SinkUnavailable(Exception):
    """Kafka did not take the records (unreachable, or slower than the timeout): nothing may be
    answered as accepted; the client sends again."""


class KafkaSink:
    def __init__(self, kafka: KafkaSettings, timeout: float):
        self.topic = f"{kafka.topic_prefix}.touchpoints"
        self.servers = kafka.bootstrap_servers
        self.timeout = timeout
        self.producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            acks="all",
            request_timeout_ms=int(timeout * 1000),
            linger_ms=2,  # concurrent requests' records share produce requests
            max_request_size=4 * 1024 * 1024,
        )

    async def start(self) -> None:
        try:
            await self.producer.start()
        except KafkaError as e:
            await self.producer.stop()
            raise SinkUnavailable(f"no Kafka broker answers at {self.servers} ({type(e).__name__})") from e

    async def stop(self) -> None:
        await self.producer.stop()

    async def ready(self) -> bool:
        """Whether the broker answers for the topic now (its metadata within 2 seconds)."""
        try:
            async with asyncio.timeout(2):
                return bool(await self.producer.partitions_for(self.topic))
        except (KafkaError, TimeoutError):
            return False

    async def send(self, records: list[tuple[str, Any]], by_id: bool) -> None:
        """Send (customer id, record) pairs; returns once all are acknowledged."""
        headers = [(KAFKA_DEDUP_HEADER, b"id")] if by_id else None
        try:
            async with asyncio.timeout(self.timeout):
                sent = [
                    await self.producer.send(
                        self.topic,
                        record if isinstance(record, bytes) else orjson.dumps(record),
                        key=customer.encode(),
                        headers=headers,
                    )
                    for customer, record in records
                ]
                await asyncio.gather(*sent)
        except (KafkaError, TimeoutError) as e:
            raise SinkUnavailable(f"Kafka did not acknowledge the records: {type(e).__name__}: {e}") from e
