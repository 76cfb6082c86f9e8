"""Identifiers, and the facts that link or unlink them.

An identifier is a known customer id, an anonymous id (a browser's or an app's), or the keyed hash
of an identifying trait (an e-mail address: never stored in clear). A link says two identifiers
belong to one person, with its evidence (the touchpoint that showed it) and the rule that made it;
an unlink revokes the links between two identifiers, with a reason. Both are facts: recorded once,
never changed, and replayed in any order to the same persons (engine.identity.persons)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

Kind = Literal["customer", "anonymous", "trait"]


@dataclass(frozen=True, order=True)
class Identifier:
    kind: Kind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def trait_identifier(name: str, value: str, secret: bytes) -> Identifier:
    """An identifying trait (`email`...) as an identifier: an HMAC-SHA256 of the trait's name and its
    trimmed, lower-case value under a secret kept beside the personal-data keys, so equal addresses
    link while no address is stored, and one cannot be guessed without the secret."""
    digest = hmac.new(secret, f"{name}\0{value.strip().lower()}".encode(), hashlib.sha256).hexdigest()
    return Identifier("trait", f"{name}:{digest}")


@dataclass(frozen=True)
class Link:
    """Evidence that two identifiers are one person. `at`: when what proves it happened (the
    touchpoint's time, ISO 8601 UTC); `recorded_at`: when the engine learned it (for "as known");
    `evidence`: the touchpoint's event id; `rule`: which rule made the link."""

    a: Identifier
    b: Identifier
    at: str
    recorded_at: str
    evidence: str
    rule: str

    @property
    def pair(self) -> tuple[Identifier, Identifier]:
        return ordered(self.a, self.b)

    @property
    def id(self) -> str:
        """The same link whatever the order of its ends, and the same when it is recorded again."""
        a, b = self.pair
        return hashlib.sha256(f"{a}\0{b}\0{self.evidence}\0{self.rule}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Unlink:
    """Two identifiers are not one person: every link between them is refused from then on (as
    known at `recorded_at`), whatever its evidence, before or after."""

    a: Identifier
    b: Identifier
    recorded_at: str
    reason: str

    @property
    def pair(self) -> tuple[Identifier, Identifier]:
        return ordered(self.a, self.b)


def ordered(a: Identifier, b: Identifier) -> tuple[Identifier, Identifier]:
    """Two identifiers in a fixed order, however a fact names them: a pair is the same both ways."""
    return (a, b) if a <= b else (b, a)
