"""Rate limits per write key and read token (`[http] rate_limit`, `rate_burst`): a token bucket
each. A write costs its messages, a read one unit. A request larger than the bucket passes when
the bucket is full and leaves it in debt, so a big batch is slowed, never refused forever."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, burst: float, now: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.now = rate, burst or max(rate, 1.0), now
        self.buckets: dict[str, tuple[float, float]] = {}  # credential -> (level, when)

    def take(self, who: str, cost: int) -> float:
        """Take `cost` units for this credential: 0 when it may go on, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = self.now()
        level, then = self.buckets.get(who, (self.burst, now))
        level = min(self.burst, level + (now - then) * self.rate)
        need = min(cost, self.burst)
        if level < need:
            self.buckets[who] = (level, now)
            return (need - level) / self.rate
        self.buckets[who] = (level - cost, now)
        return 0.0
