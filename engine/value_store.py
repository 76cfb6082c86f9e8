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
    def __init__(self, journal: JourneyRecorder, base_currency: str):
        self.journal = journal
        # Only models fitted in this currency are in force: cut-offs in dollars say nothing of euros.
        self.base_currency = base_currency
        self._parsed: dict[tuple[str, str], Model] = {}  # (recorded_at, model_id) -> the model
        self._rows: list[ModelRow] = []

    def in_force(self, known: str | None = None) -> Model | None:
        """The last model recorded in the base currency (before `known`, a stored time, when
        given); None before any. Strictly before: a write recorded at the same instant as the
        model (a fixed or event-time clock) was decided without it live, and is the same in a
        replay. One count query; the rows are read again only when there are new ones."""
        from .value.model import Model

        for model_id, at, body in reversed(self._fresh()):
            if known is not None and at >= known:
                continue
            if (at, model_id) not in self._parsed:
                self._parsed[at, model_id] = Model.from_dict(orjson.loads(body))
            if self._parsed[at, model_id].base_currency == self.base_currency:
                return self._parsed[at, model_id]
        return None

    def _fresh(self) -> list[ModelRow]:
        """The recorded rows, read again only when there are new ones (a count is cheap)."""
        if self.journal.model_count() != len(self._rows):
            self._rows = self.journal.models()
        return self._rows

    def holdout(self, model: Model) -> dict[str, Any] | None:
        """The holdout comparison recorded with a model (`journey value fit --holdout-end`), if any."""
        for model_id, _, body in reversed(self._fresh()):
            if model_id == model.model_id:
                holdout: dict[str, Any] | None = orjson.loads(body).get("holdout")
                return holdout
        return None
