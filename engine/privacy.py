"""PII stays apart: personal fields are split off a touchpoint and sealed with the customer's key.

Which fields are personal: the names and glob patterns of `privacy.pii_fields` and
`privacy.free_text_fields` (free text may hold anything a person wrote), matched without regard
to case at any depth of properties and traits (`traits.contact.email`, `items[2].customer_email`),
and the fields of custom kinds marked `pii` or `free_text`. The properties the lifecycle and the
contact rules read (order_id, amount, consent's channel...) and the `timezone` trait are never
personal: a pattern that would match one is a configuration error.

AES-GCM with the customer and event ids as associated data, so a sealed blob cannot be
moved to another customer's event. Without the key (after `journey forget`) the blob is noise.
A sealed blob holds {"fields": [[path, value], ...]}; blobs written before nested sealing hold
{"properties": {...}, "traits": {...}} and are read as well.
"""

from __future__ import annotations

import base64
import fnmatch
import os
import re
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .catalog import BUILTIN_KINDS, Catalog

ERASED = "[erased]"
ENGINE_TRAITS = ("timezone",)  # traits the engine itself reads (quiet hours)
_MEMO_LIMIT = 100_000  # names remembered; hostile input could send unbounded new ones


class PersonalFields:
    def __init__(self, catalog: Catalog, pii_fields: tuple[str, ...], free_text_fields: tuple[str, ...] = ()):
        patterns = [p.lower() for p in (*pii_fields, *free_text_fields)]
        self.pattern = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)) if patterns else None
        self.custom = catalog.personal_properties
        self.memo: dict[str, bool] = {}
        protected = {("properties", name) for schema in BUILTIN_KINDS.values() for name in schema.model_fields}
        protected |= {("traits", name) for name in ENGINE_TRAITS}
        clashes = sorted(f"{where}.{name}" for where, name in protected if self.named(name))
        if clashes:  # so no name the engine reads is ever sealed, and none needs checking per key
            raise ValueError(
                f"privacy.pii_fields / free_text_fields would seal {', '.join(clashes)}, which the "
                "engine reads (lifecycle, contact rules); narrow the pattern"
            )

    def named(self, name: str) -> bool:
        """Whether a field of this name is personal wherever it is."""
        known = self.memo.get(name)
        if known is None:
            known = self.pattern is not None and self.pattern.match(name.lower()) is not None
            if len(self.memo) < _MEMO_LIMIT:
                self.memo[name] = known
        return known

    def split(
        self, kind: str, properties: dict[str, Any], traits: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
        """(public properties, public traits, personal fields to seal) of a touchpoint; the
        public parts are copies only where something was taken out."""
        fields: list[list[Any]] = []
        custom = self.custom.get(kind, ())
        props = self._strip(properties, ["properties"], fields, custom)
        public_traits = self._strip(traits, ["traits"], fields, ()) if traits is not None else None
        return props, public_traits, ({"fields": fields} if fields else {})

    def _strip(self, node: Any, path: list[Any], out: list[list[Any]], custom: Any) -> Any:
        if isinstance(node, dict):
            top = len(path) == 1
            new = None
            for k, v in node.items():
                if (top and k in custom) or self.named(k):
                    out.append([[*path, k], v])
                    new = new if new is not None else dict(node)
                    del new[k]
                elif isinstance(v, (dict, list)):
                    inner = self._strip(v, [*path, k], out, ())
                    if inner is not v:
                        new = new if new is not None else dict(node)
                        new[k] = inner
            return node if new is None else new
        if isinstance(node, list):
            items = [
                self._strip(v, [*path, i], out, ()) if isinstance(v, (dict, list)) else v for i, v in enumerate(node)
            ]
            return node if all(a is b for a, b in zip(items, node)) else items
        return node


def reveal(
    properties: dict[str, Any], traits: dict[str, Any] | None, pii: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Properties and traits with the unsealed personal fields put back where they were."""
    parts = {"properties": _copy(properties), "traits": _copy(traits or {})}
    if "fields" in pii:
        for path, value in pii["fields"]:
            if path[0] not in parts:  # the touchpoint's other identifiers (anonymous_id): not a trait
                continue
            node = parts[path[0]]
            for step in path[1:-1]:
                node = node[step] if isinstance(node, list) else node.setdefault(step, {})
            node[path[-1]] = value
    else:  # the flat form of blobs sealed before nested sealing
        parts["properties"].update(pii.get("properties", {}))
        parts["traits"].update(pii.get("traits", {}))
    return parts["properties"], parts["traits"]


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def seal(key: bytes, pii: dict[str, Any], aad: str) -> str:
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, orjson.dumps(pii), aad.encode())).decode()


def unseal(key: bytes | None, sealed: str, aad: str) -> dict[str, Any] | None:
    if not key:  # no key, or its tombstone (engine.keys.ERASED_KEY)
        return None
    blob = base64.b64decode(sealed)
    try:
        return orjson.loads(AESGCM(key).decrypt(blob[:12], blob[12:], aad.encode()))
    except InvalidTag:
        return None
