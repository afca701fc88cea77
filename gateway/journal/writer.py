"""The journal's only writer thread: group-commits chunks of messages, then releases their acknowledgements.

Its queue is bounded (MAX_QUEUED_CHUNKS): the ingest stage, the one producer that can outrun the journal, stops
reading before it would fill it (`has_room`). The others never wait for room: self-metrics put one chunk an
interval, and a sink worker puts one chunk of refused readings a batch it wrote, so they are bounded by their own
pace, and a sink worker blocked here could not move the cursor that frees a full journal. Cursor moves from the
sinks are kept as one value a sink, so they take no room however often they come.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

from gateway.errors import JournalError
from gateway.ingest.dedup import DedupKey
from gateway.journal.outbox import OutboxChunk, OutboxReader
from gateway.journal.store import Journal
from gateway.model import AckToken, OutgoingMessage, Reading, Rejection
from gateway.retry import Backoff
from gateway.runtime import Spawn, plain_thread
from gateway.sources.base import Source
from gateway.telemetry.metrics import Stats

log = logging.getLogger(__name__)

MAX_CHUNKS_AWAITING_COMMIT = 64  # committed in one transaction at most
# Chunks waiting for the journal thread. A chunk holds at least one message or one reading, and the ingest
# stage stops reading at mqtt.max_messages_in_memory uncommitted messages, so this is seldom what binds.
MAX_QUEUED_CHUNKS = 4096
_DEDUP_TRIM_INTERVAL_S = 30.0


class Chunk(NamedTuple):
    """What one read burst produced, committed to the journal in one transaction."""

    readings: list[Reading]
    outgoing: list[OutgoingMessage]  # dead-letter records and alert notifications, published once committed
    tokens: list[AckToken | None]  # one per message, rejected and duplicate ones included
    rejected: list[Rejection]  # kept in the journal for `gateway deadletter replay`
    alert_state: bytes | None = None  # the alert engine's state after this chunk, when it changed
    delivery_keys: Sequence[DedupKey] = ()  # of messages whose readings have no device time (gateway/ingest/dedup.py)


class JournalWriter:
    """The journal's only writer: commits chunks (several at once under load), then releases their acks."""

    def __init__(
        self,
        journal: Journal,
        source: Source,
        stats: Stats,
        dedup_window_s: float,
        dedup_entries: int,
        max_bytes: int,
        spawn: Spawn = plain_thread,
    ) -> None:
        self.journal = journal
        self._max_bytes = max_bytes
        self.full_since: float | None = None  # time.monotonic() when the journal filled, while it is full
        self.committed_messages = 0
        self._source = source
        self._stats = stats
        self._dedup_window_ns = int(dedup_window_s * 1e9)
        self._dedup_entries = dedup_entries
        self._wake = threading.Condition()  # guards the three below
        self._chunks: deque[Chunk] = deque()
        self._ops: deque[Callable[[], None]] = deque()
        self._stored_upto: dict[str, int] = {}  # sink -> newest cursor it asked for, not yet written
        self.committed = threading.Condition()
        self.failed: str | None = None
        self._listeners: list[Callable[[OutboxChunk], None]] = []  # told of each chunk of readings committed
        self._closing = False
        self._thread = spawn("journal", self._run)

    def start(self) -> None:
        self._thread.start()

    def add_listener(self, listener: Callable[[OutboxChunk], None]) -> None:
        """`listener` is told of every chunk of readings committed, on the journal thread (before start)."""
        self._listeners.append(listener)

    # -- the outbox, as a sink worker sees it (gateway/sinks/worker.py's Outbox) -------------------------

    @property
    def last_seq(self) -> int:
        return self.journal.last_seq

    def reader(self) -> OutboxReader:
        return self.journal.reader()

    def cursor(self, sink: str) -> int:
        return self.journal.cursor(sink)

    def stored(self, sink: str, upto: int) -> None:
        """`sink` has stored everything up to `upto`: its cursor moves on the journal thread."""
        with self._wake:
            self._stored_upto[sink] = max(upto, self._stored_upto.get(sink, 0))
            self._wake.notify()

    @property
    def backpressure(self) -> bool:
        """The journal is full (journal.max_bytes): nothing is committed, so nothing acknowledged."""
        return self.full_since is not None

    def has_room(self) -> bool:
        return len(self._chunks) < MAX_QUEUED_CHUNKS

    def put(self, chunk: Chunk) -> None:
        """Queue `chunk` for the next commit (never waits: see the module's docstring for what bounds the queue)."""
        with self._wake:
            self._chunks.append(chunk)
            self._wake.notify()

    def published(self, confirmed: list[int], failed: list[tuple[int, str]]) -> None:
        """The source confirmed these outgoing messages (they leave the journal), and can never publish those
        (they move to the rejected table, reason publish_failed)."""
        if confirmed:
            self.call(functools.partial(self.journal.deadletter_confirmed, confirmed))
        if failed:
            self.call(functools.partial(self.journal.deadletter_failed, failed))

    def call(self, op: Callable[[], None]) -> None:
        """Run `op` on the journal thread (confirmed and failed publishes)."""
        with self._wake:
            self._ops.append(op)
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        self._thread.join(30)

    def _run(self) -> None:
        last_trim = time.monotonic()
        while True:
            with self._wake:
                while not (self._chunks or self._ops or self._stored_upto or self._closing):
                    self._wake.wait()
                batch = [self._chunks.popleft() for _ in range(min(len(self._chunks), MAX_CHUNKS_AWAITING_COMMIT))]
                closing = self._closing and not self._chunks
            self._run_ops()
            if batch:
                self._commit(batch)
            if time.monotonic() - last_trim > _DEDUP_TRIM_INTERVAL_S:
                last_trim = time.monotonic()
                self.journal.trim_dedup(time.time_ns() - self._dedup_window_ns, self._dedup_entries)
            if closing:
                self._run_ops()
                return

    def _run_ops(self) -> None:
        with self._wake:
            ops, self._ops = self._ops, deque()
            stored, self._stored_upto = self._stored_upto, {}
        for sink, upto in stored.items():
            self.journal.stored(sink, upto)
        for op in ops:
            op()

    def _wait_for_room(self) -> None:
        """Journal full: commit (and so acknowledge) nothing until the sinks have freed space. The broker stops
        sending once receive_maximum messages are unacknowledged, and keeps the rest in the session."""
        if self.journal.outbox_bytes < self._max_bytes:
            return
        self.full_since = time.monotonic()
        log.warning(
            "journal holds %d bytes of unstored readings (journal.max_bytes=%d): not acknowledging until the "
            "sinks catch up; the broker keeps the messages",
            self.journal.outbox_bytes,
            self._max_bytes,
        )
        while self.journal.outbox_bytes >= self._max_bytes and not self._closing:
            self._run_ops()  # the sinks' cursor moves are what frees space
            with self._wake:
                if not (self._stored_upto or self._ops or self._closing):
                    self._wake.wait(0.5)
        self.full_since = None
        log.info("journal below journal.max_bytes again: acknowledging resumes")

    def _commit(self, batch: list[Chunk]) -> None:
        self._wait_for_room()
        readings = [r for chunk in batch for r in chunk.readings]
        outgoing = [m for chunk in batch for m in chunk.outgoing]
        rejected = [r for chunk in batch for r in chunk.rejected]
        alert_state = next((c.alert_state for c in reversed(batch) if c.alert_state is not None), None)
        delivery_keys = [k for chunk in batch for k in chunk.delivery_keys]
        backoff = Backoff(0.1, 5.0)
        started = time.perf_counter()
        while True:
            try:
                seq, pending, dropped = self.journal.commit(readings, outgoing, rejected, alert_state, delivery_keys)
                break
            except JournalError as exc:
                # Nothing of this batch is acknowledged; the broker keeps it. Disk full usually passes.
                self.failed = str(exc)
                delay = backoff.next_delay()
                log.error("%s; retrying in %.1f s", exc, delay)
                time.sleep(delay)
        self.failed = None
        self._stats.journal_commits += 1
        self._stats.commit_seconds.observe(time.perf_counter() - started)
        messages = sum(len(chunk.tokens) for chunk in batch)
        self._stats.commit_messages.observe(messages)
        if dropped:
            self._stats.rejected_dropped += dropped
        self.committed_messages += messages
        self._source.release([t for chunk in batch for t in chunk.tokens])
        if readings:
            chunk = OutboxChunk(seq, readings)
            for listener in self._listeners:
                listener(chunk)
        if pending:
            self._source.send(pending)
        with self.committed:
            self.committed.notify_all()
