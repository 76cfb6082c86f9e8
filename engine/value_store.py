"""The value models recorded in the store (journey_models, engine.value.model): which one is in
force at a time. A model is in force from when it was recorded until the next one is; views, lists
and policy decisions as of a time (or as known at it) use the one in force then, so a replay at the
live write's time uses the model the live write used. (One race is left: a write that reads the
models in the instant between a fit taking its time and committing its model goes without it,
where a replay would use it; fit when few writes run, as a nightly job does.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from .persistence.journal import JourneyRecorder, ModelRow

if TYPE_CHECKING:
    from .value.model import Model


class RecordedModels:
    def __init__(self, journal: JourneyRecorder):
        self.journal = journal
        self._parsed: dict[tuple[str, str], Model] = {}  # (recorded_at, model_id) -> the model
        self._rows: list[ModelRow] = []

    def in_force(self, known: str | None = None) -> Model | None:
        """The last model recorded (before `known`, a stored time, when given); None before any.
        Strictly before: a write recorded at the same instant as the model (a fixed or event-time
        clock) was decided without it live, and is the same in a replay. One small query: a
        policy asks only when a value condition is checked."""
        from .value.model import Model

        if self.journal.model_count() != len(self._rows):  # a count is cheap; rows are read when new
            self._rows = self.journal.models()
        rows = self._rows
        if known is not None:
            rows = [r for r in rows if r[1] < known]
        if not rows:
            return None
        model_id, at, body = rows[-1]
        if (at, model_id) not in self._parsed:
            self._parsed[at, model_id] = Model.from_dict(orjson.loads(body))
        return self._parsed[at, model_id]

    def holdout(self, model: Model) -> dict[str, Any] | None:
        """The holdout comparison recorded with a model (`journey value fit --holdout-end`), if any."""
        for model_id, _, body in reversed(self.journal.models()):
            if model_id == model.model_id:
                holdout: dict[str, Any] | None = orjson.loads(body).get("holdout")
                return holdout
        return None
