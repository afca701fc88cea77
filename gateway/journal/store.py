"""The durable local state: readings not yet stored by every sink, the dedup window's keys, dead-letter records
not yet confirmed by the broker, rejected messages kept for replay. SQLite in WAL mode, one group commit a chunk
of messages.

A message is acknowledged to the broker once the chunk holding what it produced is committed here; from then
on the journal, not the broker, owns it. Sinks read the outbox from their own cursor, so one slow or failing
sink delays no other. Rows every sink has stored are deleted.

The tables, and opening (and salvaging) the file: gateway/journal/schema.py; the sinks' read side:
gateway/journal/outbox.py.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from gateway.errors import JournalError
from gateway.journal.lock import JournalLock
from gateway.journal.outbox import OutboxReader, encode
from gateway.journal.salvage import decode_readings
from gateway.journal.schema import add_dedup_keys, dedup_keys_since, open_database
from gateway.model import OutgoingMessage, Reading, Rejection
from gateway.reasons import Reason

log = logging.getLogger(__name__)

DEFAULT_MAX_REJECTED = 100_000
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
# What is kept of a payload too large to replay: enough to recognise it in `gateway deadletter list`.
TRUNCATED_PAYLOAD_BYTES = 1024
_INSERT_REJECTED = (
    "INSERT INTO rejected (received_ns, reason, detail, topic, device, measurement, payload, payload_bytes, truncated)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


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
        outgoing: Sequence[OutgoingMessage],
        rejected: Sequence[Rejection] = (),
        alert_state: bytes | None = None,
        delivery_keys: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, list[OutgoingMessage], int]:
        """One transaction: the chunk's readings, their dedup keys, the messages to publish (dead-letter records,
        notifications), its rejected messages. Returns the chunk's outbox seq (or the last one when there were no
        readings), the messages to publish with their ids, and how many rejected messages were dropped to keep
        `max_rejected`."""
        conn = self._conn
        blob = encode(readings) if readings else b""
        pending = [m._replace(id=self._next_deadletter + i) for i, m in enumerate(outgoing)]
        rows, dropped, data_version = self.rejected_rows, 0, self._data_version
        try:
            conn.execute("BEGIN IMMEDIATE")
            seq = self.last_seq
            if readings:
                seq += 1
                conn.execute("INSERT INTO outbox VALUES (?, ?, ?)", (seq, blob, len(blob)))
                conn.execute("INSERT INTO outbox_sizes VALUES (?, ?)", (seq, len(readings)))
                add_dedup_keys(conn, readings, time.time_ns(), delivery_keys)
            if pending:
                rows_out = [(m.id, m.topic, m.payload, m.retain) for m in pending]
                conn.executemany("INSERT INTO deadletters VALUES (?, ?, ?, ?)", rows_out)
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

    def pending_outgoing(self) -> list[OutgoingMessage]:
        """Messages committed for publishing that the broker has not confirmed (re-sent at start-up)."""
        rows = self._conn.execute("SELECT seq, topic, payload, retain FROM deadletters ORDER BY seq").fetchall()
        return [OutgoingMessage(topic, payload, bool(retain), seq) for seq, topic, payload, retain in rows]

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
