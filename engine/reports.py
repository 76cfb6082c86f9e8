"""What an ingest and a run of the due timers report: counts that agree with the feeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .ingest import BatchResult
from .touchpoints import Rejection


def blank(record: Any) -> bool:
    """An empty or whitespace-only line of a file: skipped, not rejected."""
    return isinstance(record, (bytes, str)) and not record.strip()


@dataclass
class Recorded:
    """What a run of the due timers appended to the change feed and the action feed."""

    changes: int = 0
    actions: int = 0

    @property
    def total(self) -> int:
        return self.changes + self.actions

    def __add__(self, other: Recorded) -> Recorded:
        return Recorded(self.changes + other.changes, self.actions + other.actions)


@dataclass
class IngestReport:
    """What an ingest did. `changes` and `actions` count what it appended to each feed, those of
    due timers included (`timer_changes`, `timer_actions`: customers it had no touchpoint for
    at that moment); the summary has the same keys."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    changes: int = 0
    actions: int = 0
    timer_changes: int = 0
    timer_actions: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    duplicate_records: list[int] = field(default_factory=list)  # which records were duplicates

    def add(self, batch: BatchResult, invalid: list[Rejection]) -> None:
        self.accepted += batch.accepted
        self.duplicates += batch.duplicates
        self.duplicate_records += batch.duplicate_records
        self.changes += batch.changes + batch.timer_changes
        self.actions += batch.actions + batch.timer_actions
        self.add_timers(Recorded(batch.timer_changes, batch.timer_actions), counted=True)
        self.rejections += invalid + batch.rejected
        self.rejected = len(self.rejections)

    def add_timers(self, run: Recorded, counted: bool = False) -> None:
        if not counted:
            self.changes += run.changes
            self.actions += run.actions
        self.timer_changes += run.changes
        self.timer_actions += run.actions

    def merge(self, other: IngestReport) -> None:
        """Add another report of the same ingest (a batch, or another process's share)."""
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.duplicate_records += other.duplicate_records
        self.changes += other.changes
        self.actions += other.actions
        self.timer_changes += other.timer_changes
        self.timer_actions += other.timer_actions
        self.rejections += other.rejections
        self.rejected = len(self.rejections)

    def summary(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "changes": self.changes,
            "actions": self.actions,
            "timer_changes": self.timer_changes,
            "timer_actions": self.timer_actions,
        }
