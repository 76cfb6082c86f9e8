"""Keys given twice in one JSON object. The decoders behind the API keep the last of two equal
keys silently; the engine refuses such a record as ambiguous (engine.limits.exact_parse), and so
does the API: each message holding one is refused with the key's name, the others are kept.

Cheap when there is none: the body's keys are counted on its bytes (engine.limits.raw_keys, never
too few) and compared with the decoded messages' keys; only a body with more keys than decoded is
parsed again, exactly."""

from __future__ import annotations

import json
from typing import Any

from engine.limits import raw_keys


class Twice(dict[str, Any]):
    """A decoded object in which the key `twice` was given twice."""

    twice: str


def _pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    twice = None
    for k, v in items:
        if k in out and twice is None:
            twice = k
        out[k] = v
    if twice is None:
        return out
    marked = Twice(out)
    marked.twice = twice
    return marked


def count_keys(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_keys(v) for v in value)
    return 0


def first_twice(value: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """Where the first key given twice in this decoded value (parsed by `reparse`) is: the path of
    names down to it, the key last; or None. (Positions in arrays are left out of the path.)"""
    if isinstance(value, Twice):
        return (*path, value.twice)
    if isinstance(value, dict):
        children: Any = ((path + (k,), v) for k, v in value.items())
    elif isinstance(value, list):
        children = ((path, v) for v in value)
    else:
        return None
    for where, child in children:
        if (found := first_twice(child, where)) is not None:
            return found
    return None


def reparse(body: bytes, decoded_keys: int) -> Any | None:
    """The body parsed again with its keys given twice marked, if it may hold some (more keys in
    its bytes than `decoded_keys`); else None."""
    if raw_keys(body) <= decoded_keys:
        return None
    return json.loads(body, object_pairs_hook=_pairs)


def reason(key: str) -> str:
    return f"key {key!r} appears twice in one object; which one is meant is ambiguous"
