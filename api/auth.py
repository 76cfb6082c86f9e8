"""Who may write and who may read: write keys (Segment's clients send theirs as the HTTP Basic
user name) and bearer tokens of the read API. Compared in constant time; never an open endpoint."""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
from pathlib import Path

from engine.config import Config
from engine.persistence.files import private_dir


def write_keys(config: Config) -> tuple[tuple[str, ...], Path | None]:
    """The keys a client may write with: http.write_keys, else JOURNEY_WRITE_KEYS (comma-separated),
    else one made at random in the data directory on first start (its path is returned, to print)."""
    return _secrets(config, config.http.write_keys, "JOURNEY_WRITE_KEYS", "http-write-key")


def read_tokens(config: Config) -> tuple[tuple[str, ...], Path | None]:
    """The bearer tokens of the read API: http.read_tokens, else JOURNEY_READ_TOKENS, else one made
    like the write key."""
    return _secrets(config, config.http.read_tokens, "JOURNEY_READ_TOKENS", "http-read-token")


def _secrets(
    config: Config, configured: tuple[str, ...], variable: str, file: str
) -> tuple[tuple[str, ...], Path | None]:
    from_env = tuple(k.strip() for k in os.environ.get(variable, "").split(",") if k.strip())
    keys = configured or from_env
    if keys:
        return keys, None
    path = private_dir(config.data_path) / file
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
    except FileExistsError:  # made on an earlier start (or by another server starting now)
        pass
    return (path.read_text().strip(),), path


def basic_user(header: str | None) -> str | None:
    """The user name of an HTTP Basic Authorization header (Segment's clients send the write key
    there, with an empty password), or None."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0]


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header, or None."""
    if not header or not header[:7].lower() == "bearer ":
        return None
    return header[7:].strip() or None


def allowed(given: str | None, keys: tuple[str, ...]) -> str | None:
    """The key among them that was given, or None, in time that does not depend on how much of it
    matched (every key is compared)."""
    if not given:
        return None
    found = None
    for key in keys:
        if hmac.compare_digest(given.encode(), key.encode()):
            found = key
    return found
