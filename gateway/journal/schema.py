"""The journal's tables, and opening its file: created if missing, migrated, salvaged when damaged.

Schema:
    outbox(seq INTEGER PRIMARY KEY, readings BLOB, bytes INTEGER)   -- one row a chunk; readings as JSON arrays
    cursors(sink TEXT PRIMARY KEY, upto INTEGER)                    -- highest seq the sink has stored
    dedup(seq INTEGER PRIMARY KEY, seen_ns INTEGER, n INTEGER, keys BLOB)  -- a chunk's (device, reading id)s
                  and delivery keys (gateway/ingest/dedup.py)
    deadletters(seq INTEGER PRIMARY KEY, topic TEXT, payload BLOB, retain INTEGER)  -- MQTT messages to
                  publish (dead letters, alert notifications) until the broker acknowledged them
    alert_state(id INTEGER PRIMARY KEY CHECK (id = 1), snapshot BLOB)  -- the alert engine's state
    rejected(seq INTEGER PRIMARY KEY, received_ns INTEGER, reason TEXT, detail TEXT, topic TEXT, device TEXT,
             measurement TEXT, payload BLOB, payload_bytes INTEGER, truncated INTEGER)
    outbox_sizes(seq INTEGER PRIMARY KEY, readings INTEGER)         -- how many readings each outbox chunk holds

`rejected` keeps every rejected message (and every reading a store refused) for `gateway deadletter list` and
`replay` (gateway/tools/replay.py), written in the same commit as the rest of its chunk. At most `max_rejected` rows:
the oldest are dropped first and counted. `payload` is the original payload, or only its first bytes when it was
larger than validation.max_payload_bytes (`truncated` = 1: such a message cannot be replayed). `measurement` is
set only for a reading a store refused (its payload is then that reading, deadletter.reading_payload).
`dedup.seq` is its own sequence (not the outbox's), so `gateway deadletter replay` can add keys while the
gateway runs. `alert_state` is replaced in the commit that carries the notifications that changed it.

`outbox_sizes` repeats each chunk's reading count in rows small enough that one page holds hundreds: when a damaged
page takes an outbox row (or the end of its blob, which spans many pages), the salvage still knows how many
acknowledged readings were lost (gateway/journal/salvage.py). One process at a time owns the journal
(gateway/journal/lock.py); a journal SQLite finds damaged at start is salvaged into a new one, never fatal.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson

from gateway.errors import JournalError
from gateway.journal import salvage as journal_salvage
from gateway.journal.salvage import SalvageReport
from gateway.model import Reading
from gateway.sqlitedb import open_wal

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, readings BLOB NOT NULL, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, upto INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dedup (
    seq INTEGER PRIMARY KEY, seen_ns INTEGER NOT NULL, n INTEGER NOT NULL, keys BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS deadletters (
    seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, retain INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS alert_state (id INTEGER PRIMARY KEY CHECK (id = 1), snapshot BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY, received_ns INTEGER NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
    topic TEXT NOT NULL, device TEXT, measurement TEXT,
    payload BLOB NOT NULL, payload_bytes INTEGER NOT NULL, truncated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_sizes (seq INTEGER PRIMARY KEY, readings INTEGER NOT NULL);
"""


def open_database(path: Path) -> tuple[sqlite3.Connection, SalvageReport | None]:
    """Open (or create) the journal. One SQLite finds damaged is salvaged: what can be read goes into a new
    journal, the damaged file is kept beside it, and the gateway starts (a damaged journal never crash-loops)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    journal_salvage.finish_interrupted_salvage(path)
    damage = find_damage(path)
    if damage is None:
        try:
            return _open(path), None
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            damage = str(exc)  # damage the check did not see
    log.error("journal %s is damaged (%s); salvaging what can be read into a new journal", path, damage[:300])
    try:
        report = journal_salvage.salvage(path, damage, SCHEMA, _open)
    except (OSError, sqlite3.Error) as exc:  # the new journal cannot be written: the damaged one stays as it is
        raise JournalError(f"journal {path} is damaged and cannot be salvaged: {exc}") from exc
    (log.error if sum(report.lost.values()) else log.warning)(
        "journal %s: %s; the damaged file is kept as %s", path, report.summary(), report.kept_as
    )
    return _open(path), report


def find_damage(path: Path) -> str | None:
    """None when the journal is absent or SQLite finds it sound, else what `PRAGMA quick_check` (which checks
    every page of every table) found."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            answer = [str(row[0]) for row in conn.execute("PRAGMA quick_check(20)")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if not _is_damage(exc):
            raise  # a file that cannot be opened or read (permissions, I/O) is not salvaged: nothing is moved
        return str(exc)
    return None if answer == ["ok"] else " ".join(" ".join(answer).split())


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """SQLite's own words for a damaged file: "database disk image is malformed", "file is not a database"."""
    return (exc.sqlite_errorname or "").startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def _open(path: Path) -> sqlite3.Connection:
    conn = open_wal(path, SCHEMA)
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(deadletters)")}
        if "retain" not in columns:  # a journal written before alert notifications existed
            conn.execute("ALTER TABLE deadletters ADD COLUMN retain INTEGER NOT NULL DEFAULT 0")
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


def dedup_keys_since(conn: sqlite3.Connection, since_ns: int) -> Iterator[tuple[tuple[str, str], int]]:
    """Keys seen since `since_ns`, oldest first, with when they were seen. A row damaged in a way SQLite cannot
    see (bytes changed inside a value) is skipped: it costs duplicate detection for its keys, not the start."""
    rows = conn.execute("SELECT seq, seen_ns, keys FROM dedup WHERE seen_ns >= ? ORDER BY seq", (since_ns,))
    for seq, seen_ns, blob in rows:
        try:
            keys = [(device, reading_id) for device, reading_id in orjson.loads(blob)]
        except (orjson.JSONDecodeError, TypeError, ValueError):
            log.error("journal: dedup row %d is damaged; its keys are skipped", seq)
            continue
        for key in keys:
            yield key, seen_ns


def add_dedup_keys(
    conn: sqlite3.Connection, readings: Sequence[Reading], seen_ns: int, extra: Sequence[tuple[str, str]] = ()
) -> None:
    """One row a chunk, not a row a reading: a B-tree insert per reading halved the throughput. `extra`: keys
    that are not a reading's (the delivery keys of gateway/ingest/dedup.py)."""
    keys = [(r.device, r.reading_id) for r in readings]
    keys.extend(extra)
    conn.execute("INSERT INTO dedup (seen_ns, n, keys) VALUES (?, ?, ?)", (seen_ns, len(keys), orjson.dumps(keys)))
