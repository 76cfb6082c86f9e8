"""Clocks: the engine never reads the time itself, so tests and replays can set it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FixedClock:
    """A clock that stands still until moved: for tests, simulations and replays."""

    def __init__(self, at: datetime):
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


class EventTimeClock:
    """For backfills of history: time is the latest event time seen so far, so changes are
    recorded as a live engine would have recorded them, and timers fire along the way."""

    def __init__(self, start: datetime | None = None):
        self.at = start or datetime(1970, 1, 1, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self.at

    def observe(self, t: datetime) -> None:
        if t > self.at:
            self.at = t


def iso(t: datetime) -> str:
    """The one stored form of a time: UTC, microseconds always written, so strings sort as times."""
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    """A user-given time: ISO 8601, a date meaning its end (23:59:59.999999 UTC) as of that day."""
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(hour=23, minute=59, second=59, microsecond=999999,
                                                    tzinfo=timezone.utc)
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; write e.g. {text}+00:00")
    return t.astimezone(timezone.utc)
