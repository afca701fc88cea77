"""The only wiring: messages become chunks, chunks are committed to the journal and then acknowledged, and one
worker thread per sink drains the journal's outbox from its own cursor.

    network thread (source.py)        journal thread                 sink workers
    message -> Ingestor -> chunk  ->  group commit  -> PUBACKs       [influx] read outbox, write, retry
                                      (readings, dedup keys,         [sqlite] read outbox, write, retry
                                       dead letters)                  -> cursor -> journal deletes stored rows

Threads rather than asyncio: paho, urllib3 and sqlite3 are blocking libraries, and all three release the GIL
while they wait on sockets or disks, which is where the journal and the sink workers spend their time.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

from prometheus_client import CollectorRegistry

from gateway import deadletter
from gateway.config import BatchingConfig, GatewayConfig
from gateway.errors import PermanentSinkError, RetryableSinkError
from gateway.http import StatusServer
from gateway.ingest import Ingestor
from gateway.journal import Journal, JournalError, OutboxChunk
from gateway.metrics import Stats, StatsCollector
from gateway.model import RawMessage, Reading, Rejection
from gateway.retry import Backoff
from gateway.sinks import Sink
from gateway.source import AckToken, MqttSource

log = logging.getLogger(__name__)

_MAX_CHUNKS_AWAITING_COMMIT = 64
_DEDUP_TRIM_INTERVAL_S = 30.0


class Chunk(NamedTuple):
    """What one read burst produced, committed to the journal in one transaction."""

    readings: list[Reading]
    deadletters: list[tuple[str, bytes]]  # (topic, record)
    tokens: list[AckToken | None]  # one per message, rejected and duplicate ones included


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
    ) -> None:
        self.journal = journal
        self._max_bytes = max_bytes
        self.backpressure = False
        self.committed_messages = 0
        self._source = source
        self._stats = stats
        self._dedup_window_ns = int(dedup_window_s * 1e9)
        self._dedup_entries = dedup_entries
        self._chunks: queue.Queue[Chunk | None] = queue.Queue()
        self._ops: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.committed = threading.Condition()
        self.failed: str | None = None
        self.workers: list[SinkWorker] = []
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="journal", daemon=True)

    def start(self) -> None:
        self._thread.start()

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
            while len(batch) < _MAX_CHUNKS_AWAITING_COMMIT:
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
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                seq, pending = self.journal.commit(readings, records)
                break
            except JournalError as exc:
                # Nothing of this batch is acknowledged; the broker keeps it. Disk full usually passes.
                self.failed = str(exc)
                delay = backoff.next_delay()
                log.error("%s; retrying in %.1f s", exc, delay)
                time.sleep(delay)
        self.failed = None
        self._stats.journal_commits += 1
        self.committed_messages += sum(len(chunk.tokens) for chunk in batch)
        self._source.release([t for chunk in batch for t in chunk.tokens])
        if readings:
            for worker in self.workers:
                worker.offer(OutboxChunk(seq, readings))
        if pending:
            self._source.send(pending)
        with self.committed:
            self.committed.notify_all()


class SinkWorker:
    """Drains the journal's outbox into one sink, in order: batches by size and linger time, retries."""

    def __init__(
        self,
        sink: Sink,
        batching: BatchingConfig,
        writer: JournalWriter,
        stats: Stats,
        deadletter_readings: Callable[[str, list[Reading]], None],
    ) -> None:
        self.sink = sink
        self._batch_size = batching.batch_size
        self._linger_s = batching.flush_interval_ms / 1000
        self._writer = writer
        self._reader = writer.journal.reader()
        self.cursor = writer.journal.cursor(sink.name)
        self._stats = stats
        self._deadletter = deadletter_readings
        # Chunks just committed, so a worker that keeps up need not read back and decode what was written.
        self._recent: deque[OutboxChunk] = deque()
        self._recent_readings = 0
        self._recent_limit = max(4 * self._batch_size, 20_000)
        self._recent_lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_retrying = threading.Event()
        self.healthy = True
        self._thread = threading.Thread(target=self._run, name=f"sink-{sink.name}", daemon=True)

    @property
    def pending_chunks(self) -> int:
        return max(0, self._writer.journal.last_seq - self.cursor)

    def start(self) -> None:
        self._thread.start()

    def offer(self, chunk: OutboxChunk) -> None:
        """A chunk the journal thread just committed; kept only while the worker keeps up."""
        with self._recent_lock:
            if self._recent_readings + len(chunk.readings) <= self._recent_limit:
                self._recent.append(chunk)
                self._recent_readings += len(chunk.readings)

    def _next_chunks(self) -> list[OutboxChunk]:
        """The chunks after the cursor, up to a batch: from memory while they are there in order, else from
        the journal (after a restart, or when this sink fell behind)."""
        with self._recent_lock:
            chunks = self._take_recent()
        return chunks if chunks else self._reader.chunks_after(self.cursor, self._batch_size)

    def _take_recent(self) -> list[OutboxChunk]:
        recent = self._recent
        while recent and recent[0].seq <= self.cursor:
            self._recent_readings -= len(recent.popleft().readings)
        if not recent or recent[0].seq != self.cursor + 1:
            return []
        chunks: list[OutboxChunk] = []
        count = 0
        expected = self.cursor + 1
        while (
            recent and recent[0].seq == expected and (not chunks or count + len(recent[0].readings) <= self._batch_size)
        ):
            chunk = recent.popleft()
            self._recent_readings -= len(chunk.readings)
            chunks.append(chunk)
            count += len(chunk.readings)
            expected += 1
        return chunks

    def close(self, timeout_s: float, retry_grace_s: float = 5.0) -> None:
        """Store what is committed, waiting at most `timeout_s`, then stop; the rest stays in the journal."""
        self._stop.set()
        with self._writer.committed:
            self._writer.committed.notify_all()
        self._thread.join(timeout_s)
        self._stop_retrying.set()
        self._thread.join(retry_grace_s)
        self._reader.close()

    def _wait_for_work(self) -> bool:
        """Block until there is something to write (or a partial batch has waited long enough)."""
        committed = self._writer.committed
        first_seen: float | None = None
        while True:
            pending = self.pending_chunks
            lingered = first_seen is not None and time.monotonic() - first_seen >= self._linger_s
            if pending and (self._stop.is_set() or lingered):
                return True
            if pending and pending * 500 >= self._batch_size:  # chunks hold hundreds of readings under load
                return True
            if not pending and self._stop.is_set():
                return False
            if pending and first_seen is None:
                first_seen = time.monotonic()
            with committed:
                committed.wait(self._linger_s if pending else 0.5)

    def _run(self) -> None:
        while self._wait_for_work():
            chunks = self._next_chunks()
            if not chunks:
                continue
            readings = [r for chunk in chunks for r in chunk.readings]
            if not self._write(readings):
                return  # shutting down with this batch unstored: it stays in the journal
            self.cursor = chunks[-1].seq
            self._writer.call(functools.partial(self._writer.journal.stored, self.sink.name, self.cursor))

    def _write(self, readings: list[Reading]) -> bool:
        for start in range(0, len(readings), self._batch_size):
            if not self._write_batch(readings[start : start + self._batch_size]):
                return False
        return True

    def _write_batch(self, readings: list[Reading]) -> bool:
        name = self.sink.name
        backoff = Backoff(0.2, 30.0)
        while True:
            try:
                self.sink.write(readings)
            except RetryableSinkError as exc:
                self.healthy = False
                self._stats.sink_retries[name] += 1
                self._stats.sink_errors[(name, "retryable")] += 1
                delay = backoff.next_delay(at_least=exc.retry_after)
                log.warning("sink %s: %s; retrying %d readings in %.1f s", name, exc, len(readings), delay)
                if self._stop_retrying.wait(delay):
                    return False
                continue
            except PermanentSinkError as exc:
                self._stats.sink_errors[(name, "permanent")] += 1
                if len(readings) > 1:
                    # Find the readings the store refuses: halve until each part is stored or a single reading.
                    middle = len(readings) // 2
                    return self._write_batch(readings[:middle]) and self._write_batch(readings[middle:])
                log.error("sink %s refused reading %s: %s", name, readings[0].reading_id, exc)
                self._deadletter(f"{name}: {exc}", readings)
            else:
                self._stats.readings_stored[name] += len(readings)
                self._stats.sink_writes[name] += 1
            self.healthy = True
            return True


class Pipeline:
    def __init__(self, config: GatewayConfig, sinks: Sequence[Sink]) -> None:
        self.config = config
        self.stats = Stats()
        self.ingestor = Ingestor(config)
        self._chunk = Chunk([], [], [])
        self._stopping = threading.Event()
        self.journal = Journal(config.journal.path, [s.name for s in sinks])
        self._refill_dedup_window()
        self.source = MqttSource(
            config.mqtt,
            self.ingestor.topic_filters,
            self._on_message,
            self._seal_chunk,
            self._can_read,
            self._on_deadletters_published,
        )
        self.writer = JournalWriter(
            self.journal,
            self.source,
            self.stats,
            config.dedup.window_s,
            config.dedup.max_entries,
            config.journal.max_bytes,
        )
        self.workers = [
            SinkWorker(sink, _batching(config, sink.name), self.writer, self.stats, self._deadletter_readings)
            for sink in sinks
        ]
        self.writer.workers = self.workers
        self.registry = CollectorRegistry()
        self.registry.register(
            StatsCollector(
                self.stats,
                acknowledged=lambda: self.source.acknowledged,
                pending=lambda: self._sealed_messages - self.writer.committed_messages,
                connected=lambda: self.source.connected,
                journal_bytes=lambda: self.journal.outbox_bytes,
                backpressure=lambda: self.writer.backpressure,
                sink_pending_chunks=lambda: {w.sink.name: w.pending_chunks for w in self.workers},
            )
        )
        self.http: StatusServer | None = None
        if config.http.port:
            self.http = StatusServer(config.http.host, config.http.port, self.registry, self.readiness)
        self._sealed_messages = 0

    def _refill_dedup_window(self) -> None:
        window = self.ingestor.dedup_window
        if window is None:
            return
        since = time.time_ns() - window.window_ns
        restored = 0
        for key, seen_ns in self.journal.recent_dedup_keys(since):
            window.check_and_add(key, seen_ns)
            restored += 1
        if restored:
            log.info("restored %d dedup keys from the journal", restored)

    # -- network thread ---------------------------------------------------------------------------

    def _on_message(self, raw: RawMessage) -> None:
        stats = self.stats
        stats.messages_received += 1
        outcome = self.ingestor.process(raw)
        chunk = self._chunk
        if outcome.rejection is not None:
            rejection = outcome.rejection
            stats.messages_rejected[rejection.reason] += 1
            log.info("rejected message on %s: %s: %s", rejection.topic[:200], rejection.reason, rejection.detail)
            chunk.deadletters.append(self._deadletter_record(rejection))
        else:
            stats.readings_accepted += len(outcome.readings)
            stats.readings_duplicate += outcome.duplicates
            stats.readings_receive_timestamped += outcome.receive_timestamped
            chunk.readings.extend(outcome.readings)
        chunk.tokens.append(raw.ack_token)

    def _deadletter_record(self, rejection: Rejection) -> tuple[str, bytes]:
        return deadletter.topic_for(self.config.mqtt.deadletter_topic, rejection), deadletter.record(rejection)

    def _seal_chunk(self) -> None:
        chunk = self._chunk
        if not chunk.tokens:
            return
        self._chunk = Chunk([], [], [])
        self._sealed_messages += len(chunk.tokens)
        self.writer.put(chunk)

    def _can_read(self) -> bool:
        # With QoS 1 the broker's in-flight window (receive_maximum) bounds what can pile up unacknowledged,
        # so the socket is always read: keepalive answers keep flowing even while the journal is full.
        # QoS 0 has no window; there the only brake is to stop reading.
        if self._stopping.is_set():
            return False
        return self.config.mqtt.qos == 1 or self.writer.backlog < _MAX_CHUNKS_AWAITING_COMMIT

    def _on_deadletters_published(self, ids: list[int]) -> None:
        self.stats.deadletters_published += len(ids)
        self.writer.call(functools.partial(self.journal.deadletter_confirmed, ids))

    # -- sink worker threads ----------------------------------------------------------------------

    def _deadletter_readings(self, reason: str, readings: list[Reading]) -> None:
        """Readings a store refused become dead-letter records, committed like any other."""
        self.stats.messages_rejected["store_refused"] += len(readings)
        records = []
        for r in readings:
            payload = deadletter.reading_payload(r)
            topic = f"(refused by the store: reading {r.reading_id})"
            rejection = Rejection("store_refused", reason, topic, payload, time.time_ns(), r.device)
            records.append(self._deadletter_record(rejection))

        def commit() -> None:
            _, pending = self.journal.commit([], records)
            self.source.send(pending)

        self.writer.call(commit)

    # -- lifecycle --------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        if not self.source.connected:
            return False, "broker not connected"
        if self.writer.failed:
            return False, f"journal not writable: {self.writer.failed}"
        unhealthy = [w.sink.name for w in self.workers if not w.healthy]
        if unhealthy:
            return False, f"sinks failing: {', '.join(unhealthy)}"
        return True, "ready"

    def run(self, stop: threading.Event, shutdown_timeout_s: float = 30.0) -> None:
        """Run until `stop` is set; then stop reading, commit and acknowledge what was read, give the sinks
        at most `shutdown_timeout_s` to store it, and keep the rest in the journal."""
        if self.http:
            self.http.start()
            log.info("metrics on http://%s:%d/metrics", self.config.http.host, self.http.port)
        self.writer.start()
        pending_deadletters = self.journal.pending_deadletters()
        if pending_deadletters:
            log.info("re-publishing %d dead-letter records from the journal", len(pending_deadletters))
            self.source.send(pending_deadletters)
        for worker in self.workers:
            worker.start()
        source_stop = threading.Event()
        network = threading.Thread(target=self.source.run, args=(source_stop,), name="mqtt", daemon=True)
        network.start()
        stop.wait()
        log.info("stopping: no new messages")
        self._stopping.set()
        # What follows the sinks (last commit, acknowledgements, disconnect) needs a moment of the budget too.
        deadline = time.monotonic() + max(1.0, shutdown_timeout_s - 3.0)
        time.sleep(0.6)  # the network thread seals the last partial chunk within its 0.5 s housekeeping turn
        for worker in self.workers:
            worker.close(max(0.1, deadline - time.monotonic()), retry_grace_s=1.0)
        self.writer.close()
        time.sleep(0.2)  # the network thread sends the acknowledgements released by the last commit
        source_stop.set()
        network.join(10)
        for worker in self.workers:
            worker.sink.close()
        if self.http:
            self.http.close()
        left = {w.sink.name: w.pending_chunks for w in self.workers}
        self.journal.close()
        log.info(
            "stopped: received %d, stored %s, duplicates %d, rejected %d; chunks left in the journal %s",
            self.stats.messages_received,
            dict(self.stats.readings_stored),
            self.stats.readings_duplicate,
            self.stats.rejected_total(),
            left,
        )


def _batching(config: GatewayConfig, sink_name: str) -> BatchingConfig:
    section = getattr(config, sink_name)
    assert isinstance(section, BatchingConfig)
    return section
