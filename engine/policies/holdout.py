"""Control groups: which persons a promotional policy holds out, so that its effect can be measured
against them (docs/policies.md, "Control groups").

Assignment is a pure function of (the person, the policy or "global", a salt in config): the same
persons are held out however often, in whatever order and in whichever process their decisions
are taken, so a redelivery, a restart, a rebuild and a what-if assign the same persons.
"""

from __future__ import annotations

import hashlib

from .model import ContactRules, PolicySpec

GLOBAL = "global"


def share(person: str, group: str, salt: str) -> float:
    """Where a person falls in [0, 1) for a group: the first 8 bytes of a SHA-256 of the salt, the
    group and the person, as a fraction of 2^64 (uniform, independent between groups)."""
    digest = hashlib.sha256(f"{salt}\x1f{group}\x1f{person}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def held_out(person: str, spec: PolicySpec, rules: ContactRules) -> tuple[str, float] | None:
    """(the control group, its size) a person is held out of a policy's actions by, or None. Only
    promotional actions have control groups: the global one first ([contact] global_holdout),
    then the policy's own (holdout)."""
    if spec.purpose != "promotional":
        return None
    for group, fraction in ((GLOBAL, rules.global_holdout), (spec.name, spec.holdout)):
        if fraction > 0 and share(person, group, rules.holdout_salt) < fraction:
            return group, fraction
    return None
