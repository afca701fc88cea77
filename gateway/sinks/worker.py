"""One thread per sink: drains the journal's outbox from the sink's own cursor, batches, retries, bisects."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.config.schema import RESERVED_MEASUREMENTS, BatchingConfig
from gateway.errors import PermanentSinkError, RetryableSinkError
from gateway.journal.outbox import OutboxChunk, OutboxReader
from gateway.model import Reading
from gateway.runtime import Spawn, plain_thread
from gateway.sinks import Sink
from gateway.sinks.delivery import Delivery
from gateway.telemetry.metrics import Stats

log = logging.getLogger(__name__)


class Outbox(Protocol):
    """What a sink worker needs of the journal (JournalWriter is one): its chunks, its cursor, word of each
    commit, and a way to record what it stored. New chunks also arrive through `SinkWorker.offer`."""

    committed: threading.Condition  # notified after every commit

    @property
    def last_seq(self) -> int: ...

    def reader(self) -> OutboxReader: ...

    def cursor(self, sink: str) -> int: ...

    def stored(self, sink: str, upto: int) -> None:
        """`sink` has stored every chunk up to `upto` (recorded on the journal thread, later)."""
        ...


class SinkWorker:
    """Drains the journal's outbox into one sink, in order: batches by size and linger time, retries."""

    def __init__(
        self,
        sink: Sink,
        batching: BatchingConfig,
        outbox: Outbox,
        stats: Stats,
        deadletter_readings: Callable[[str, list[Reading]], None],
        spawn: Spawn = plain_thread,
    ) -> None:
        self.sink = sink
        self._batch_size = batching.batch_size
        self._linger_s = batching.flush_interval_ms / 1000
        self._outbox = outbox
        self._reader = outbox.reader()
        self.cursor = outbox.cursor(sink.name)
        # Chunks just committed, so a worker that keeps up need not read back and decode what was written.
        self._recent: deque[OutboxChunk] = deque()
        self._arrivals: deque[float] = deque()  # when each of _recent was committed (monotonic)
        self._recent_readings = 0
        self._recent_limit = max(4 * self._batch_size, 20_000)
        self._recent_lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_retrying = threading.Event()
        self._delivery = _WorkerDelivery(sink, stats, deadletter_readings, self._stop_retrying)
        self._thread = spawn(f"sink-{sink.name}", self._run)

    @property
    def healthy(self) -> bool:
        """False from a failed write until a write succeeds (or a refused reading is dead-lettered)."""
        return self._delivery.healthy

    @property
    def pending_chunks(self) -> int:
        return max(0, self._outbox.last_seq - self.cursor)

    def start(self) -> None:
        self._thread.start()

    def offer(self, chunk: OutboxChunk) -> None:
        """A chunk the journal thread just committed; kept only while the worker keeps up."""
        with self._recent_lock:
            if self._recent_readings + len(chunk.readings) <= self._recent_limit:
                self._recent.append(chunk)
                self._arrivals.append(time.monotonic())
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
            self._arrivals.popleft()
        if not recent or recent[0].seq != self.cursor + 1:
            return []
        chunks: list[OutboxChunk] = []
        count = 0
        expected = self.cursor + 1
        while (
            recent and recent[0].seq == expected and (not chunks or count + len(recent[0].readings) <= self._batch_size)
        ):
            chunk = recent.popleft()
            self._arrivals.popleft()
            self._recent_readings -= len(chunk.readings)
            chunks.append(chunk)
            count += len(chunk.readings)
            expected += 1
        return chunks

    def _oldest_arrival(self) -> float | None:
        """When the first chunk after the cursor was committed, if this worker holds it in memory."""
        with self._recent_lock:
            for chunk, arrived in zip(self._recent, self._arrivals, strict=True):
                if chunk.seq > self.cursor:
                    return arrived if chunk.seq == self.cursor + 1 else None
        return None

    def close(self, timeout_s: float, retry_grace_s: float = 5.0) -> None:
        """Store what is committed, waiting at most `timeout_s`, then stop; the rest stays in the journal."""
        self._stop.set()
        with self._outbox.committed:
            self._outbox.committed.notify_all()
        self._thread.join(timeout_s)
        self._stop_retrying.set()
        self._thread.join(retry_grace_s)
        self._reader.close()

    def _wait_for_work(self) -> bool:
        """Block until there is something to write (or a partial batch has waited long enough)."""
        committed = self._outbox.committed
        first_seen: float | None = None
        while True:
            pending = self.pending_chunks
            if pending and first_seen is None:
                # The linger runs from the oldest waiting chunk's commit, not from when this worker came to look:
                # chunks committed during the previous write have waited that long already. (Timed from here it
                # added a whole linger to every write, and under load the sink fell behind the source.)
                arrived = self._oldest_arrival()
                first_seen = time.monotonic() if arrived is None else arrived
            waited = 0.0 if first_seen is None else time.monotonic() - first_seen
            if pending and (self._stop.is_set() or waited >= self._linger_s):
                return True
            if pending and pending * 500 >= self._batch_size:  # chunks hold hundreds of readings under load
                return True
            if not pending and self._stop.is_set():
                return False
            with committed:
                committed.wait(self._linger_s - waited if pending else 0.5)

    def _run(self) -> None:
        while self._wait_for_work():
            chunks = self._next_chunks()
            if not chunks:
                continue
            readings = [r for chunk in chunks for r in chunk.readings]
            if not self._write(readings):
                return  # shutting down with this batch unstored: it stays in the journal
            self.cursor = chunks[-1].seq
            self._outbox.stored(self.sink.name, self.cursor)

    def _write(self, readings: list[Reading]) -> bool:
        for start in range(0, len(readings), self._batch_size):
            if not self._delivery.write(readings[start : start + self._batch_size]):
                return False
        return True


class _WorkerDelivery(Delivery):
    """A sink worker's writes: retried until they succeed or the worker stops; counted; a refused reading is
    dead-lettered."""

    def __init__(
        self,
        sink: Sink,
        stats: Stats,
        deadletter_readings: Callable[[str, list[Reading]], None],
        stop_retrying: threading.Event,
    ) -> None:
        super().__init__(sink, max_retry_delay_s=30.0)
        self.healthy = True
        self._stats = stats
        self._write_seconds, self._batch_readings = stats.sink_histograms(sink.name)
        self._deadletter = deadletter_readings
        self._stop_retrying = stop_retrying

    def wait_to_retry(self, error: RetryableSinkError, delay_s: float, readings: int, first_try: float) -> bool:
        name = self.sink.name
        self.healthy = False
        self._stats.sink_retries[name] += 1
        self._stats.sink_errors[(name, "retryable")] += 1
        log.warning("sink %s: %s; retrying %d readings in %.1f s", name, error, readings, delay_s)
        return not self._stop_retrying.wait(delay_s)

    def on_refusal(self, error: PermanentSinkError) -> None:
        self._stats.sink_errors[(self.sink.name, "permanent")] += 1

    def refused(self, position: int, reading: Reading, error: PermanentSinkError) -> None:
        name = self.sink.name
        log.error(
            "sink %s refused reading %s: %s",
            name,
            reading.reading_id,
            error,
            extra={"correlation_id": reading.reading_id, "rate_key": f"refused:{name}"},
        )
        if getattr(self.sink, "counts_readings", True):
            self._stats.readings_refused[name] += _device_readings([reading])
        self._deadletter(f"{name}: {error}", [reading])
        self.healthy = True

    def stored(self, readings: Sequence[Reading], seconds: float) -> None:
        name = self.sink.name
        # Device readings only: the gateway's own points (its metrics, alerts) are not what it received, and a
        # sink that stores none of them (the webhook) does not count at all.
        if getattr(self.sink, "counts_readings", True):
            self._stats.readings_stored[name] += _device_readings(readings)
        self._stats.sink_writes[name] += 1
        self._write_seconds.observe(seconds)
        self._batch_readings.observe(len(readings))
        self.healthy = True


def _device_readings(readings: Sequence[Reading]) -> int:
    """How many of these are device readings, not the gateway's own points (its metrics, alerts)."""
    return len(readings) - sum(1 for r in readings if r.measurement in RESERVED_MEASUREMENTS)
