"""Names of the topics, streams and keys the streaming edge uses, and how facts are partitioned."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from engine.config import Config

FEEDS = ("stage-changed", "actions")


@dataclass(frozen=True)
class Topology:
    topic_prefix: str
    partitions: int
    redis_prefix: str
    stream_maxlen: int

    @classmethod
    def of(cls, config: Config) -> Topology:
        return cls(config.kafka.topic_prefix, config.kafka.partitions, config.redis.prefix, config.redis.stream_maxlen)

    @property
    def touchpoints(self) -> str:
        return f"{self.topic_prefix}.touchpoints"

    @property
    def dead_letter(self) -> str:
        return f"{self.topic_prefix}.dead-letter"

    def topic(self, feed: str) -> str:
        return f"{self.topic_prefix}.{feed}"

    def stream(self, feed: str) -> str:
        return f"{self.redis_prefix}:{feed}"

    def key(self, *parts: str) -> str:
        return ":".join((self.redis_prefix, *parts))

    def partition(self, customer_id: str) -> int:
        """Our own stable partitioner for the output feeds: a relay restarting after a crash
        must know which partition each fact went to, to resume each one where it stopped."""
        return zlib.crc32(customer_id.encode()) % self.partitions


def fact_id(feed: str, fact: dict) -> str:
    return fact["change_id"] if feed == "stage-changed" else f"{fact['action_id']}/{fact['status']}/{fact['at']}"
