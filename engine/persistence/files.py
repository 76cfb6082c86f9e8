"""Files of the SQLite stores: created private (the data directory holds the key store), in WAL mode."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def private_dir(path: Path) -> Path:
    """The data directory, created readable by its owner only (it holds the key store); writers
    starting together may both create it."""
    path.mkdir(parents=True, mode=0o700, exist_ok=True)
    return path


def private_file(path: str) -> None:
    """Create a file readable by its owner only, before SQLite opens it (its journal, WAL and
    shared-memory files take the same permissions)."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


def sqlite_wal(path: str) -> None:
    private_file(path)
    db = sqlite3.connect(path, timeout=30)
    try:
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
