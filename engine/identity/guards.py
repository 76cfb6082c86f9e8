"""Values that are never identifiers. Every tool that resolves identities has been hurt by them: a
QA user id or a placeholder such as "guest" or "undefined" that every anonymous visitor shares
joins hundreds of strangers into one person. Such a value is refused as an identifier, with the
reason, before any link is made on it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# Compared after trimming and in lower case. The placeholders JavaScript, Python and SQL write for
# "no value", and the ones SDKs and templates are known to send (PostHog's list, Segment's docs).
BLOCKED_VALUES = frozenset(
    {
        "anonymous",
        "guest",
        "null",
        "none",
        "undefined",
        "nan",
        "0",
        "-1",
        "true",
        "false",
        "[object object]",
        "distinctid",
        "distinct_id",
        "id",
        "email",
        "not_authenticated",
    }
)


@dataclass(frozen=True)
class Guards:
    """The configured guards: further blocked values (exact, any case) and regular expressions an
    identifier must not match in full."""

    values: frozenset[str] = BLOCKED_VALUES
    patterns: tuple[re.Pattern[str], ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, extra_values: Iterable[str] = (), patterns: Iterable[str] = ()) -> Guards:
        """Guards from configuration; a pattern that does not compile raises ValueError naming it."""
        compiled = []
        for p in patterns:
            try:
                compiled.append(re.compile(p, re.IGNORECASE))  # as the values: any case
            except re.error as e:
                raise ValueError(f"blocked pattern {p!r} is not a regular expression: {e}") from None
        return cls(BLOCKED_VALUES | {v.strip().lower() for v in extra_values}, tuple(compiled))

    def refusal(self, value: str) -> str | None:
        """Why this value cannot be an identifier, or None when it can."""
        trimmed = value.strip()
        if not trimmed:
            return "is empty or whitespace"
        if trimmed.lower() in self.values:
            return "is a placeholder value shared by many (identity blocked values), never an identifier"
        for pattern in self.patterns:
            if pattern.fullmatch(trimmed):
                return f"matches the blocked pattern '{pattern.pattern}' (identity.blocked_patterns)"
        return None
