"""The journal's only writer thread: group-commits chunks of messages, then releases their acknowledgements."""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from gateway.errors import JournalError
from gateway.ingest.dedup import DedupKey
from gateway.journal.store import Journal, OutboxChunk, OutboxReader
from gateway.model import Reading, Rejection
from gateway.retry import Backoff
from gateway.runtime import Spawn, plain_thread
from gateway.sources.mqtt import AckToken, MqttSource
from gateway.telemetry.metrics import Stats

log = logging.getLogger(__name__)

MAX_CHUNKS_AWAITING_COMMIT = 64
_DEDUP_TRIM_INTERVAL_S = 30.0


class Chunk(NamedTuple):
    """What one read burst produced, committed to the journal in one transaction."""

    readings: list[Reading]
    deadletters: list[tuple[str, bytes]]  # (topic, record)
    tokens: list[AckToken | None]  # one per message, rejected and duplicate ones included
    rejected: list[Rejection]  # kept in the journal for `gateway deadletter replay`
    notifications: list[tuple[str, bytes, bool]]  # alert messages to publish: (topic, payload, retain)
    alert_state: bytes | None = None  # the alert engine's state after this chunk, when it changed
    delivery_keys: Sequence[DedupKey] = ()  # of messages whose readings have no device time (gateway/ingest/dedup.py)


class JournalWriter:
    """The journal's only writer: commits chunks (several at once under load), then releases their acks."""

    def __init__(
        self,
        journal: Journal,
        source: MqttSource,
        stats: Stats,
        dedup_window_s: float,
        dedup_entries: int,
        max_bytes: int,
        spawn: Spawn = plain_thread,
    ) -> None:
        self.journal = journal
        self._max_bytes = max_bytes
        self.backpressure = False
        self.backpressure_since = 0.0  # time.monotonic() when the journal filled, while it is full
        self.committed_messages = 0
        self._source = source
        self._stats = stats
        self._dedup_window_ns = int(dedup_window_s * 1e9)
        self._dedup_entries = dedup_entries
        self._chunks: queue.Queue[Chunk | None] = queue.Queue()
        self._ops: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
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
        self.call(functools.partial(self.journal.stored, sink, upto))

    @property
    def backlog(self) -> int:
        return self._chunks.qsize()

    def put(self, chunk: Chunk) -> None:
        self._chunks.put(chunk)

    def call(self, op: Callable[[], None]) -> None:
        """Run `op` on the journal thread (cursor moves, confirmed dead letters)."""
        self._ops.put(op)
        self._chunks.put(None)  # wakes the thread; None is no chunk

    def close(self) -> None:
        self._closing = True
        self._chunks.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        last_trim = time.monotonic()
        while True:
            first = self._chunks.get()
            self._run_ops()
            batch = [first] if first is not None else []
            while len(batch) < MAX_CHUNKS_AWAITING_COMMIT:
                try:
                    more = self._chunks.get_nowait()
                except queue.Empty:
                    break
                if more is not None:
                    batch.append(more)
            if batch:
                self._commit(batch)
            if time.monotonic() - last_trim > _DEDUP_TRIM_INTERVAL_S:
                last_trim = time.monotonic()
                self.journal.trim_dedup(time.time_ns() - self._dedup_window_ns, self._dedup_entries)
            if self._closing and self._chunks.empty():
                self._run_ops()
                return

    def _run_ops(self) -> None:
        while True:
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                return
            op()

    def _wait_for_room(self) -> None:
        """Journal full: commit (and so acknowledge) nothing until the sinks have freed space. The broker stops
        sending once receive_maximum messages are unacknowledged, and keeps the rest in the session."""
        if self.journal.outbox_bytes < self._max_bytes:
            return
        self.backpressure_since = time.monotonic()
        self.backpressure = True
        log.warning(
            "journal holds %d bytes of unstored readings (journal.max_bytes=%d): not acknowledging until the "
            "sinks catch up; the broker keeps the messages",
            self.journal.outbox_bytes,
            self._max_bytes,
        )
        while self.journal.outbox_bytes >= self._max_bytes and not self._closing:
            self._run_ops()  # the sinks' cursor moves are what frees space
            time.sleep(0.05)
        self.backpressure = False
        log.info("journal below journal.max_bytes again: acknowledging resumes")

    def _commit(self, batch: list[Chunk]) -> None:
        self._wait_for_room()
        readings = [r for chunk in batch for r in chunk.readings]
        records = [d for chunk in batch for d in chunk.deadletters]
        rejected = [r for chunk in batch for r in chunk.rejected]
        notifications = [n for chunk in batch for n in chunk.notifications]
        alert_state = next((c.alert_state for c in reversed(batch) if c.alert_state is not None), None)
        delivery_keys = [k for chunk in batch for k in chunk.delivery_keys]
        backoff = Backoff(0.1, 5.0)
        started = time.perf_counter()
        while True:
            try:
                seq, pending, dropped = self.journal.commit(
                    readings, records, rejected, notifications, alert_state, delivery_keys
                )
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
        self._stats.commit_messages.observe(sum(len(chunk.tokens) for chunk in batch))
        if dropped:
            self._stats.rejected_dropped += dropped
        self.committed_messages += sum(len(chunk.tokens) for chunk in batch)
        self._source.release([t for chunk in batch for t in chunk.tokens])
        if readings:
            chunk = OutboxChunk(seq, readings)
            for listener in self._listeners:
                listener(chunk)
        if pending:
            self._source.send(pending)
        with self.committed:
            self.committed.notify_all()
