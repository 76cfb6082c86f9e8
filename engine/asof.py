"""What was true as of a time, and what was known then: the one definition every reader uses.

Times are compared in their stored form (ISO 8601 in UTC with microseconds, which sort as
times). A touchpoint or a change is *visible as of T* when it happened (took effect) by T; *as
known at T* it must also have been recorded by T, so a late touchpoint recorded after T is left
out and the answer is the one the engine could have given at T.
"""

from __future__ import annotations


def known(recorded_at: str, t: str | None) -> bool:
    """Whether something recorded at `recorded_at` was known at t (None: known now)."""
    return t is None or recorded_at <= t


def visible(at: str, recorded_at: str, t: str, as_known: bool) -> bool:
    """Whether something that happened at `at` (and was recorded at `recorded_at`) is part of
    the picture as of t: as of T, or with `as_known`, as known at T."""
    return at <= t and (not as_known or known(recorded_at, t))
