"""What a touchpoint may contain: explicit limits, each with a reason a user can act on.

Everything accepted must be storable (orjson, SQLite and PostgreSQL), snapshottable and
replayable, and must mean exactly what was sent. So the limits below are checked before a
record reaches the store, and a record that breaks one is rejected with the field and why:
  ids           (event_id, customer_id, source) 1-200 printable characters (str.isprintable:
                no control, format, separator, private-use or unassigned characters but the
                ASCII space), no leading or trailing whitespace;
  occurred_at   ISO 8601 with a UTC offset, from 1900-01-01T00:00:00Z to now plus
                ingest.future_tolerance_hours;
  content       properties and traits nest at most ingest.max_depth levels (the properties
                object itself is level 1); names 1-200 characters; strings at most
                ingest.max_string_chars characters; no NUL character (PostgreSQL text cannot
                hold it) and no lone surrogate; integers within +-(2**53 - 1), which every JSON
                consumer reads exactly; numbers finite; no key twice in one object;
  amounts       at most 1e15 (so no sum of them can overflow).
"""

from __future__ import annotations

import calendar
import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

MAX_ID_CHARS = 200
MAX_NAME_CHARS = 200
MAX_SAFE_INTEGER = 2**53 - 1
MAX_AMOUNT = 1e15
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
# A backstop for settings: spans added to an accepted time stay far from datetime's year 9999.
MAX_SPAN_DAYS = 36_600

EXAMPLE_TIME = "2026-03-01T12:00:00+01:00"


def id_ok(value: str) -> bool:
    """What id_problem checks, fast: most ids pass."""
    return 0 < len(value) <= MAX_ID_CHARS and value.isprintable() and not value[0].isspace() and not value[-1].isspace()


def id_problem(value: str) -> str | None:
    """Why a string cannot be an id (event_id, customer_id, source), or None."""
    if not value.strip():
        return "must not be blank"
    if len(value) > MAX_ID_CHARS:
        return f"is {len(value):,} characters; ids have at most {MAX_ID_CHARS}"
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        return (
            f"contains {_codepoint(bad)}; ids are printable characters only "
            "(no control, format or line-separator characters)"
        )
    if value != value.strip():
        return "must not start or end with whitespace"
    return None


def _codepoint(c: str) -> str:
    return f"U+{ord(c):04X} ({c.encode('unicode_escape').decode()})"


# -- times ------------------------------------------------------------------------------------

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?",
    re.ASCII,
)  # ASCII digits only
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def parse_time(text: str, earliest: datetime = EARLIEST) -> datetime:
    """An ISO 8601 date-time with a UTC offset, in UTC; ValueError says what is wrong with it.
    Fractions of a second beyond microseconds are cut off (times are stored in microseconds)."""
    m = _ISO.fullmatch(text)
    utc: datetime | None  # None: the time lies before the year 1 in UTC (below)
    if m is not None and (m.group(8) or m.group(9)):
        # The common case, in C; anything it refuses or that lies out of range is worded below.
        try:
            utc = datetime.fromisoformat(text).astimezone(UTC)
            if utc >= earliest:
                return utc
        except (ValueError, OverflowError):
            pass
    if m is None:
        if _DATE.fullmatch(text):
            raise ValueError("is a date without a time; add one, e.g. T00:00:00Z")
        if re.fullmatch(r"[+-]?\d+(\.\d*)?", text):
            raise ValueError(f"is a number; write an ISO 8601 time with an offset, e.g. {EXAMPLE_TIME}")
        # Values are not repeated in errors: they may be personal data (an API answers with them).
        raise ValueError(f"is not an ISO 8601 date-time; write e.g. {EXAMPLE_TIME}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = m.groups()
    if zulu is None and sign is None:
        raise ValueError("needs a UTC offset (e.g. +00:00 or Z); naive times are ambiguous")
    y, mo, d, h, mi, s = int(year), int(month), int(day), int(hour), int(minute), int(second or 0)
    if not 1 <= mo <= 12:
        raise ValueError(f"month {mo} is out of range (1-12)")
    if y == 0:
        raise ValueError("year 0 does not exist")
    if not 1 <= d <= calendar.monthrange(y, mo)[1]:
        raise ValueError(f"day {d} is out of range for {y:04d}-{mo:02d}")
    if h > 23:
        raise ValueError(f"hour {h} is out of range (0-23; midnight at the end of a day is 00:00 of the next)")
    if mi > 59:
        raise ValueError(f"minute {mi} is out of range (0-59)")
    if s == 60:
        raise ValueError("second 60 (a leap second) is not supported; use :59.999999 or the next second")
    if s > 59:
        raise ValueError(f"second {s} is out of range (0-59)")
    offset = timedelta(0)
    if sign is not None:
        oh, om = int(off_h), int(off_m or 0)
        if oh > 23 or om > 59:
            raise ValueError(
                f"offset {sign}{off_h}:{off_m or '00'} is out of range (UTC offsets lie within -23:59 and +23:59)"
            )
        offset = timedelta(hours=oh, minutes=om) * (-1 if sign == "-" else 1)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    local = datetime(y, mo, d, h, mi, s, micro)
    try:
        utc = (local - offset).replace(tzinfo=UTC)
    except OverflowError:
        if y > 1:
            raise ValueError(f"{text} lies beyond the year 9999 in UTC") from None
        utc = None
    if utc is None or utc < earliest:
        raise ValueError(f"{text} is before {earliest:%Y-%m-%dT%H:%M:%SZ}, the earliest time accepted")
    return utc


# -- content of properties and traits ---------------------------------------------------------


class Problem(ValueError):
    """A limit broken at a path inside a record."""

    def __init__(self, path: tuple[Any, ...], reason: str):
        super().__init__(reason)
        self.path, self.reason = path, reason

    @property
    def field(self) -> str:
        return ".".join(str(p) for p in self.path)


WIDENED = 2.0**63  # orjson reads an integer literal beyond 64 bits as a float: at least this big


def check_content(value: Any, path: tuple[Any, ...], max_depth: int, max_chars: int) -> tuple[int, bool]:
    """Check a properties or traits object against the limits; returns how many object keys it
    holds (at any depth), and whether a float is big enough to be a widened integer literal (then
    the record is parsed again exactly); raises Problem."""
    keys = _fits(value, 1, max_depth, max_chars)
    return (keys, False) if keys >= 0 else _explain(value, path, max_depth, max_chars)


def _fits(node: Any, depth: int, max_depth: int, max_chars: int) -> int:
    """The fast check (most records pass it): the key count, or -1 if anything is off or worth a
    second look, which _explain then does. Recursion stops at max_depth (at most 64)."""
    if depth > max_depth:
        return -1
    keys = 0
    values: Any = node
    if type(node) is dict:
        keys = len(node)
        for k in node:
            if (
                type(k) is not str
                or not 0 < len(k) <= MAX_NAME_CHARS
                or "\x00" in k
                or not (k.isascii() or _encodable(k))
            ):
                return -1
        values = node.values()
    for v in values:
        t = type(v)
        if t is str:
            if len(v) > max_chars or "\x00" in v or not (v.isascii() or _encodable(v)):
                return -1
        elif t is int:
            if v > MAX_SAFE_INTEGER or v < -MAX_SAFE_INTEGER:
                return -1
        elif t is float:
            if not -WIDENED < v < WIDENED:
                return -1
        elif t is dict or t is list:
            inner = _fits(v, depth + 1, max_depth, max_chars)
            if inner < 0:
                return -1
            keys += inner
        elif v is not None and t is not bool:
            return -1
    return keys


def _explain(value: Any, path: tuple[Any, ...], max_depth: int, max_chars: int) -> tuple[int, bool]:
    """check_content's slow half: the first limit broken, with its path, or the key count and
    whether a float may be a widened integer. Iterative: no recursion however deep the input is."""
    keys, widened = 0, False
    stack = [(value, path, 1)]
    while stack:
        node, where, depth = stack.pop()
        if depth > max_depth:
            raise Problem(where, f"is nested deeper than {max_depth} levels (ingest.max_depth)")
        items: Iterable[tuple[Any, Any]]
        if isinstance(node, dict):
            keys += len(node)
            items = node.items()
        else:
            items = enumerate(node)
        for k, v in items:
            if type(k) is str:
                if not k or len(k) > MAX_NAME_CHARS or "\x00" in k or not _encodable(k):
                    raise Problem(
                        where,
                        f"has a property name {k[:40]!r} that is empty, longer than "
                        f"{MAX_NAME_CHARS} characters, or holds a NUL or a lone surrogate",
                    )
            elif type(k) is not int:
                raise Problem(where, f"has a key {k!r} that is not a string")
            t = type(v)
            if t is str:
                if len(v) > max_chars:
                    raise Problem(
                        where + (k,),
                        f"is {len(v):,} characters; strings have at most {max_chars:,} (ingest.max_string_chars)",
                    )
                if "\x00" in v:
                    raise Problem(where + (k,), "contains a NUL character (\\u0000), which cannot be stored")
                if not _encodable(v):
                    raise Problem(where + (k,), "contains a lone surrogate: not valid Unicode text")
            elif t is int:
                if not -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
                    raise Problem(
                        where + (k,),
                        # The value is not repeated: errors never echo what may be personal data.
                        f"is an integer of {len(str(abs(v)))} digits, beyond +-(2**53 - 1), which JSON "
                        "consumers cannot read exactly; send it as a string",
                    )
            elif t is float:
                if not math.isfinite(v):
                    raise Problem(where + (k,), f"{v} is not a finite number")
                widened = widened or abs(v) >= WIDENED
            elif t is dict or t is list:
                stack.append((v, where + (k,), depth + 1))
            elif v is not None and t is not bool:
                raise Problem(where + (k,), f"is a {t.__name__}, not a JSON value")
    return keys, widened


def _encodable(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


# A JSON string, and whether a colon follows it (then it is an object key). Valid JSON has no
# quote outside strings, so matching strings from left to right finds every key exactly once.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?', re.S)  # unrolled: 3x faster
_PLAIN_STRING = re.compile(rb'"[^"]*"(\s*:)?')  # when nothing is escaped


def raw_keys(raw: bytes) -> int:
    """How many object keys a JSON text holds (duplicates counted), or more: never fewer."""
    if b"\\" not in raw and b'" ' not in raw and b'"\t' not in raw and b'"\n' not in raw and b'"\r' not in raw:
        # Nothing escaped and no quote before a space: every key ends with `":`, and `":` is
        # otherwise only a string that starts with a colon (one more: the exact parse then runs).
        return raw.count(b'":')
    found = (_STRING if b"\\" in raw else _PLAIN_STRING).findall(raw)  # the colon after each string, or b""
    return len(found) - found.count(b"")


class DuplicateKey(ValueError):
    pass


def exact_parse(raw: bytes) -> Any:
    """Parse with exact integers, refusing a key given twice in one object."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise DuplicateKey(f"key {k!r} appears twice in one object; which one is meant is ambiguous")
            out[k] = v
        return out

    return json.loads(raw, object_pairs_hook=pairs)


def utf8_problem(raw: bytes) -> str | None:
    """Where a byte string stops being UTF-8, in words, or None."""
    try:
        raw.decode("utf-8")
        return None
    except UnicodeDecodeError as e:
        return f"is not valid UTF-8: byte {e.start} (0x{raw[e.start]:02x}) {e.reason}"
