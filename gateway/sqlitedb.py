"""Opening the gateway's SQLite files (the SQLite sink and the journal) the same durable way."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_wal(path: Path, schema: str) -> sqlite3.Connection:
    """WAL (readers never block the writer) and synchronous=FULL: a commit that was followed by an
    acknowledgement to the broker survives a power cut as well as a kill -9."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(schema)
    except BaseException:
        conn.close()
        raise
    return conn
