"""PII stays apart: personal fields are split off a touchpoint and sealed with the customer's key.

AES-GCM with the customer and event ids as associated data, so a sealed blob cannot be
moved to another customer's event. Without the key (after `journey forget`) the blob is noise.
"""
from __future__ import annotations

import base64
import os
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .catalog import Catalog

ERASED = "[erased]"


def split(catalog: Catalog, kind: str, properties: dict[str, Any], traits: dict[str, Any] | None
          ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """(public properties, public traits, personal fields) of a touchpoint."""
    pii: dict[str, Any] = {}
    props = {}
    for k, v in properties.items():
        if catalog.is_pii_property(kind, k):
            pii.setdefault("properties", {})[k] = v
        else:
            props[k] = v
    public_traits = None
    if traits is not None:
        public_traits = {}
        for k, v in traits.items():
            if k in catalog.pii_fields:
                pii.setdefault("traits", {})[k] = v
            else:
                public_traits[k] = v
    return props, public_traits, pii


def seal(key: bytes, pii: dict[str, Any], aad: str) -> str:
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, orjson.dumps(pii), aad.encode())).decode()


def unseal(key: bytes | None, sealed: str, aad: str) -> dict[str, Any] | None:
    if not key:   # no key, or its tombstone (engine.keys.ERASED_KEY)
        return None
    blob = base64.b64decode(sealed)
    try:
        return orjson.loads(AESGCM(key).decrypt(blob[:12], blob[12:], aad.encode()))
    except InvalidTag:
        return None
