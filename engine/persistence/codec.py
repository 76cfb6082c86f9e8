"""Stored events as orjson: event bodies hold JSON types only, so they are written as they are."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from eventsourcing.persistence import Transcoder

# The only datetimes in stored events are the library's own; our bodies hold ISO strings.
_LIBRARY_TIMES = ("timestamp",)
_SNAPSHOT_TIMES = ("_created_on", "_modified_on")


class OrjsonTranscoder(Transcoder):
    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def decode(self, data: bytes) -> Any:
        obj = orjson.loads(data)
        for key in _LIBRARY_TIMES:
            if key in obj:
                obj[key] = datetime.fromisoformat(obj[key])
        state = obj.get("state")
        if isinstance(state, dict):
            for key in _SNAPSHOT_TIMES:
                if isinstance(state.get(key), str):
                    state[key] = datetime.fromisoformat(state[key])
        return obj
