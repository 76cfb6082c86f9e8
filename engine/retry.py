"""The one retry loop of the engine: run an action again when it fails in a way that another
attempt can cure (a lock another process holds, a connection the server dropped, a write that
collided with another writer's). No imports from the rest of the engine."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def jittered(attempt: int) -> float:
    """50-150 ms, at random: processes that collided once do not collide again in step."""
    return 0.05 + random.random() * 0.1


def at_once(attempt: int) -> float:
    return 0.0


def retry(
    action: Callable[[int], T],
    errors: type[BaseException] | tuple[type[BaseException], ...],
    attempts: int,
    pause: Callable[[int], float] = jittered,
    curable: Callable[[BaseException], bool] = lambda e: True,
) -> T:
    """`action(attempt)` (attempts count from 0) until it returns; an error among `errors` that is
    `curable` is tried again after `pause(attempt)` seconds, up to `attempts` in all, and the last
    one is raised. Any other error is raised at once."""
    for attempt in range(attempts):
        try:
            return action(attempt)
        except errors as e:
            if attempt == attempts - 1 or not curable(e):
                raise
        wait = pause(attempt)
        if wait:
            time.sleep(wait)
    raise ValueError("retry needs at least one attempt")
