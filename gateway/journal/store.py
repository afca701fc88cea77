"""The durable local state: readings not yet stored by every sink, the dedup window's keys, dead-letter records
not yet confirmed by the broker, rejected messages kept for replay. SQLite in WAL mode, one group commit a chunk
of messages.

A message is acknowledged to the broker once the chunk holding what it produced is committed here; from then
on the journal, not the broker, owns it. Sinks read the outbox from their own cursor, so one slow or failing
sink delays no other. Rows every sink has stored are deleted.

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
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import orjson

from gateway.errors import JournalError
from gateway.journal import salvage as journal_salvage
from gateway.journal.chunks import decode_readings
from gateway.journal.lock import JournalLock
from gateway.journal.salvage import SalvageReport
from gateway.model import Reading, Rejection
from gateway.reasons import Reason
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

DEFAULT_MAX_REJECTED = 100_000
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
# What is kept of a payload too large to replay: enough to recognise it in `gateway deadletter list`.
TRUNCATED_PAYLOAD_BYTES = 1024
_INSERT_REJECTED = (
    "INSERT INTO rejected (received_ns, reason, detail, topic, device, measurement, payload, payload_bytes, truncated)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class OutboxChunk(NamedTuple):
    seq: int
    readings: list[Reading]


class PendingDeadLetter(NamedTuple):
    """An MQTT message the journal holds until the broker acknowledges it: a dead letter or a notification."""

    seq: int
    topic: str
    payload: bytes
    retain: bool = False


def _encode(readings: Sequence[Reading]) -> bytes:
    return orjson.dumps([list(r) for r in readings])


def _decode(blob: bytes) -> list[Reading]:
    return [Reading(*row) for row in orjson.loads(blob)]


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


class Journal:
    """Owned by one writer thread (the pipeline's journal thread); sinks read through `reader()`."""

    def __init__(
        self,
        path: Path,
        sinks: Iterable[str],
        max_rejected: int = DEFAULT_MAX_REJECTED,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.path = path
        self.max_rejected = max_rejected
        self._max_payload_bytes = max_payload_bytes
        self._lock = JournalLock(path)  # before anything reads the file: a second gateway must not even salvage
        try:
            self._conn, self.salvage = open_database(path)
        except BaseException:
            self._lock.release()
            raise
        try:
            self._load(sinks)
        except BaseException:
            self.close()
            raise
        # What journal damage cost, by table: readings for the outbox, rows for the others. Counted by the salvage
        # at start, and by the sink threads when a chunk turns out damaged while running (once a chunk).
        self.damage_lost: Counter[str] = Counter(self.salvage.lost if self.salvage else {})
        self._damaged_chunks: set[int] = set()
        self._damage_lock = threading.Lock()

    def _load(self, sinks: Iterable[str]) -> None:
        self._set_cursors(list(sinks))
        row = self._conn.execute("SELECT coalesce(max(seq), 0), coalesce(sum(bytes), 0) FROM outbox").fetchone()
        self.last_seq: int = max(row[0], self._max_cursor())
        self.outbox_bytes: int = row[1]
        self._next_deadletter = (self._conn.execute("SELECT coalesce(max(seq), 0) FROM deadletters").fetchone()[0]) + 1
        # Rows in `rejected`, counted once here and then kept up to date, so that keeping the bound costs no
        # count(*) a commit. Only `gateway deadletter replay` (another connection) deletes rows behind our back:
        # data_version tells when, and the count is then taken again.
        self.rejected_rows: int = self._conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
        self._data_version = self._read_data_version()

    def _set_cursors(self, configured: list[str]) -> None:
        """One cursor a configured sink (a new one starts at 0), and none for a sink no longer configured: its
        cursor would stay where it stopped, the outbox is trimmed only up to the lowest cursor, and the journal
        would fill until acknowledgements stop for good. What such a sink had not stored is said once."""
        conn = self._conn
        marks = ",".join("?" * len(configured))
        stale = conn.execute(f"SELECT sink, upto FROM cursors WHERE sink NOT IN ({marks})", configured).fetchall()
        for sink, upto in stale:
            chunks = conn.execute("SELECT readings FROM outbox WHERE seq > ?", (upto,)).fetchall()
            readings = sum(len(decode_readings(blob)[0]) for (blob,) in chunks)  # damaged ones too
            log.warning(
                "sink %r is no longer configured: dropped its journal cursor; it will never get the %d readings "
                "(%d chunks) it had not stored",
                sink,
                readings,
                len(chunks),
                extra={"sink": sink, "readings": readings},
            )
            conn.execute("DELETE FROM cursors WHERE sink = ?", (sink,))
        for sink in configured:
            conn.execute("INSERT OR IGNORE INTO cursors VALUES (?, 0)", (sink,))
        if stale:  # what every configured sink has stored can go now (a new sink's cursor is 0: nothing)
            floor = conn.execute("SELECT min(upto) FROM cursors").fetchone()[0]
            conn.execute("DELETE FROM outbox WHERE seq <= ?", (floor,))
            conn.execute("DELETE FROM outbox_sizes WHERE seq <= ?", (floor,))

    def _read_data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _max_cursor(self) -> int:
        return int(self._conn.execute("SELECT coalesce(max(upto), 0) FROM cursors").fetchone()[0])

    def cursor(self, sink: str) -> int:
        return int(self._conn.execute("SELECT upto FROM cursors WHERE sink = ?", (sink,)).fetchone()[0])

    def commit(
        self,
        readings: Sequence[Reading],
        deadletters: Sequence[tuple[str, bytes]],
        rejected: Sequence[Rejection] = (),
        notifications: Sequence[tuple[str, bytes, bool]] = (),
        alert_state: bytes | None = None,
        delivery_keys: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, list[PendingDeadLetter], int]:
        """One transaction: the chunk's readings, their dedup keys, its dead-letter records, its rejected
        messages. Returns the chunk's outbox seq (or the last one when there were no readings), the dead letters
        with ids, and how many rejected messages were dropped to keep `max_rejected`."""
        conn = self._conn
        blob = _encode(readings) if readings else b""
        pending: list[PendingDeadLetter] = []
        rows, dropped, data_version = self.rejected_rows, 0, self._data_version
        try:
            conn.execute("BEGIN IMMEDIATE")
            seq = self.last_seq
            if readings:
                seq += 1
                conn.execute("INSERT INTO outbox VALUES (?, ?, ?)", (seq, blob, len(blob)))
                conn.execute("INSERT INTO outbox_sizes VALUES (?, ?)", (seq, len(readings)))
                add_dedup_keys(conn, readings, time.time_ns(), delivery_keys)
            for topic, payload in deadletters:
                pending.append(PendingDeadLetter(self._next_deadletter + len(pending), topic, payload))
            for topic, payload, retain in notifications:
                pending.append(PendingDeadLetter(self._next_deadletter + len(pending), topic, payload, retain))
            if pending:
                conn.executemany("INSERT INTO deadletters VALUES (?, ?, ?, ?)", pending)
            if alert_state is not None:
                conn.execute("INSERT OR REPLACE INTO alert_state VALUES (1, ?)", (alert_state,))
            if rejected:
                rows, dropped, data_version = self._keep_rejected(rejected)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise JournalError(f"journal commit failed: {exc}") from exc
        self.last_seq = seq
        self.outbox_bytes += len(blob)
        self._next_deadletter += len(pending)
        self.rejected_rows, self._data_version = rows, data_version
        return seq, pending, dropped

    def _keep_rejected(self, rejected: Sequence[Rejection]) -> tuple[int, int, int]:
        """Inside the commit's transaction: insert, then drop the oldest beyond `max_rejected`. Returns the rows
        now in the table, how many were dropped (or never kept), and the data_version the count is valid for."""
        conn = self._conn
        kept = rejected[-self.max_rejected :] if self.max_rejected else []
        if kept:
            conn.executemany(_INSERT_REJECTED, [self._rejected_row(r) for r in kept])
        rows = self.rejected_rows + len(kept)
        data_version = self._data_version
        dropped = len(rejected) - len(kept)
        if rows > self.max_rejected:
            # Under the write lock nobody else can commit, so a count taken now stays right until we commit.
            current = self._read_data_version()
            if current != data_version:
                rows = conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
                data_version = current
            excess = rows - self.max_rejected
            if excess > 0:
                cursor = conn.execute(
                    "DELETE FROM rejected WHERE seq IN (SELECT seq FROM rejected ORDER BY seq LIMIT ?)", (excess,)
                )
                rows -= cursor.rowcount
                dropped += cursor.rowcount
        return rows, dropped, data_version

    def _rejected_row(self, r: Rejection) -> tuple[object, ...]:
        payload = r.payload
        truncated = len(payload) > self._max_payload_bytes
        kept = payload[:TRUNCATED_PAYLOAD_BYTES] if truncated else payload
        return (r.received_at_ns, r.reason, r.detail, r.topic, r.device, r.measurement, kept, len(payload), truncated)

    def stored(self, sink: str, upto: int) -> None:
        """`sink` has stored every chunk up to `upto`; chunks every sink has stored are deleted."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE cursors SET upto = ? WHERE sink = ? AND upto < ?", (upto, sink, upto))
        floor = conn.execute("SELECT min(upto) FROM cursors").fetchone()[0]
        freed = conn.execute("SELECT coalesce(sum(bytes), 0) FROM outbox WHERE seq <= ?", (floor,)).fetchone()[0]
        if freed:
            conn.execute("DELETE FROM outbox WHERE seq <= ?", (floor,))
            conn.execute("DELETE FROM outbox_sizes WHERE seq <= ?", (floor,))
        conn.execute("COMMIT")
        self.outbox_bytes -= freed

    def deadletter_confirmed(self, seqs: Sequence[int]) -> None:
        self._conn.executemany("DELETE FROM deadletters WHERE seq = ?", [(s,) for s in seqs])

    def deadletter_failed(self, failures: Sequence[tuple[int, str]]) -> None:
        """MQTT messages that cannot be published (their topic or size is not MQTT's) leave the queue for the
        `rejected` table, reason `publish_failed`, where `gateway deadletter list` shows them."""
        conn = self._conn
        now = time.time_ns()
        conn.execute("BEGIN IMMEDIATE")
        try:
            moved = []
            for seq, why in failures:
                row = conn.execute("SELECT topic, payload FROM deadletters WHERE seq = ?", (seq,)).fetchone()
                if row is not None:
                    moved.append(Rejection(Reason.PUBLISH_FAILED, why, row[0], bytes(row[1]), now))
                    conn.execute("DELETE FROM deadletters WHERE seq = ?", (seq,))
            rows, _dropped, data_version = self._keep_rejected(moved)
            conn.execute("COMMIT")
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            raise
        self.rejected_rows, self._data_version = rows, data_version

    def pending_deadletters(self) -> list[PendingDeadLetter]:
        rows = self._conn.execute("SELECT seq, topic, payload, retain FROM deadletters ORDER BY seq").fetchall()
        return [PendingDeadLetter(seq, topic, payload, bool(retain)) for seq, topic, payload, retain in rows]

    def alert_state(self) -> bytes | None:
        row = self._conn.execute("SELECT snapshot FROM alert_state WHERE id = 1").fetchone()
        return None if row is None else bytes(row[0])

    def recent_dedup_keys(self, since_ns: int) -> Iterator[tuple[tuple[str, str], int]]:
        """Keys seen since `since_ns`, oldest first, to refill the in-memory window (which keeps its bound)."""
        return dedup_keys_since(self._conn, since_ns)

    def trim_dedup(self, before_ns: int, keep: int) -> None:
        """Forget keys older than the window, and beyond the newest `keep` (the window's size bound)."""
        conn = self._conn
        conn.execute("DELETE FROM dedup WHERE seen_ns < ?", (before_ns,))
        total = 0
        for seq, n in conn.execute("SELECT seq, n FROM dedup ORDER BY seq DESC").fetchall():
            total += n
            if total > keep:
                conn.execute("DELETE FROM dedup WHERE seq <= ?", (seq,))
                break

    def reader(self) -> OutboxReader:
        return OutboxReader(self.path, self._chunk_damaged)

    def _chunk_damaged(self, seq: int, size: int | None, salvaged: int) -> None:
        """A sink thread found chunk `seq` damaged (bytes changed inside its blob, which SQLite cannot see): every
        sink stores the readings that could be read of it; the rest is counted, once, however many sinks read it."""
        with self._damage_lock:
            if seq in self._damaged_chunks:
                return
            self._damaged_chunks.add(seq)
            lost = max(0, size - salvaged) if size is not None else 1
            self.damage_lost["outbox"] += lost
        log.error(
            "journal: outbox chunk %d is damaged; %d of its readings can be read and are stored, %s lost",
            seq,
            salvaged,
            lost if size is not None else "an unknown number (at least 1) of the others are",
        )

    def close(self) -> None:
        self._conn.close()
        self._lock.release()


class OutboxReader:
    """A sink's own read connection: WAL lets it read while the journal thread writes."""

    def __init__(self, path: Path, on_damaged: Callable[[int, int | None, int], None] = lambda *_: None) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._on_damaged = on_damaged

    def chunks_after(self, seq: int, max_readings: int) -> list[OutboxChunk]:
        """Chunks after `seq`, in order, until about `max_readings` readings (at least one chunk)."""
        chunks: list[OutboxChunk] = []
        count = 0
        for chunk_seq, blob in self._conn.execute(
            "SELECT seq, readings FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, max_readings)
        ):
            try:
                readings = _decode(blob)
            except (orjson.JSONDecodeError, TypeError, ValueError):
                readings = self._salvage(chunk_seq, blob)
            if chunks and count + len(readings) > max_readings:
                break
            chunks.append(OutboxChunk(chunk_seq, readings))
            count += len(readings)
        return chunks

    def _salvage(self, seq: int, blob: bytes) -> list[Reading]:
        readings, _whole = decode_readings(blob)
        row = self._conn.execute("SELECT readings FROM outbox_sizes WHERE seq = ?", (seq,)).fetchone()
        self._on_damaged(seq, None if row is None else int(row[0]), len(readings))
        return readings

    def close(self) -> None:
        self._conn.close()
