"""Clocks: the engine never reads the time itself, so tests and replays can set it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from .limits import parse_time as iso_time


class Clock(Protocol):
    """What the engine reads the time from: any of the clocks below."""

    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


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
        self.at = start or datetime(1970, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def observe(self, t: datetime) -> None:
        if t > self.at:
            self.at = t


def iso(t: datetime) -> str:
    """The one stored form of a time: UTC, microseconds always written, so strings sort as times."""
    return t.astimezone(UTC).isoformat(timespec="microseconds")


# Times asked about (--as-of, periods) lie in this range: windows and periods computed from them
# stay far from datetime's year 9999, and nothing is stored before 1900 (engine.limits).
ASKABLE = (datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))


def parse_time(text: str, start: bool = False) -> datetime:
    """A user-given time: ISO 8601 with an offset, or a date meaning its end (23:59:59.999999
    UTC), or with `start` its beginning (the --from of a period); ValueError says what is wrong,
    or that it lies outside 1900-01-01 to 8999-12-31."""
    if len(text) == 10:
        try:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            t = day if start else day.replace(hour=23, minute=59, second=59, microsecond=999999)
        except ValueError as e:
            raise ValueError(f"{text!r} is not a date: {e}") from None
    else:
        t = iso_time(text, earliest=ASKABLE[0])
    if not ASKABLE[0] <= t < ASKABLE[1]:
        raise ValueError(f"{text} lies outside the times one can ask about (1900-01-01 to 8999-12-31)")
    return t
