"""The only wiring: the network thread turns messages into chunks, one worker thread per sink writes them,
and a message is acknowledged once every sink has stored the chunk that holds its readings.

    network thread (source.py)            sink workers                     network thread
    message -> Ingestor.process -> chunk -> [influx] write, retry ...  \\
                                         -> [sqlite] write, retry ...  -> AckTracker -> release -> PUBACK

Threads rather than asyncio: paho, urllib3 and sqlite3 are blocking libraries, and all three release the GIL
while they wait on sockets or disks, which is where a sink worker spends its time.
"""

from __future__ import annotations

import logging
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
from gateway.metrics import Stats, StatsCollector
from gateway.model import RawMessage, Reading
from gateway.retry import Backoff
from gateway.sinks import Sink
from gateway.source import AckToken, MqttSource

log = logging.getLogger(__name__)


class Chunk(NamedTuple):
    seq: int
    readings: list[Reading]
    tokens: list[AckToken | None]  # one per message, rejected and duplicate ones included


class AckTracker:
    """Chunks in arrival order; releases a chunk's tokens once every sink has stored it (and all before it)."""

    def __init__(self, sinks: Sequence[str], release: Callable[[list[AckToken | None]], None]) -> None:
        self._release = release
        self._lock = threading.Lock()
        self._chunks: deque[Chunk] = deque()
        self._stored_upto = dict.fromkeys(sinks, -1)
        self.pending_messages = 0

    def add(self, chunk: Chunk) -> None:
        with self._lock:
            self._chunks.append(chunk)
            self.pending_messages += len(chunk.tokens)

    def stored(self, sink: str, upto_seq: int) -> None:
        released: list[AckToken | None] = []
        with self._lock:
            self._stored_upto[sink] = upto_seq
            floor = min(self._stored_upto.values())
            while self._chunks and self._chunks[0].seq <= floor:
                chunk = self._chunks.popleft()
                released.extend(chunk.tokens)
            self.pending_messages -= len(released)
        if released:
            self._release(released)


class SinkWorker:
    """Writes chunks to one sink in order: batches by size and linger time, retries with backoff."""

    def __init__(
        self,
        sink: Sink,
        batching: BatchingConfig,
        early_flush_messages: int,
        tracker: AckTracker,
        stats: Stats,
        deadletter_sink: Callable[[str, list[Reading]], None],
    ) -> None:
        self.sink = sink
        self._batch_size = batching.batch_size
        self._linger_s = batching.flush_interval_ms / 1000
        self._early_flush_messages = early_flush_messages
        self._tracker = tracker
        self._stats = stats
        self._deadletter = deadletter_sink
        self._queue: deque[tuple[float, Chunk]] = deque()
        self._queued_messages = 0
        self._cond = threading.Condition()
        self._closing = False
        self._stop_retrying = threading.Event()
        self.healthy = True
        self._thread = threading.Thread(target=self._run, name=f"sink-{sink.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, chunk: Chunk) -> None:
        with self._cond:
            self._queue.append((time.monotonic(), chunk))
            self._queued_messages += len(chunk.tokens)
            # Always wake the worker: an idle one starts its linger clock, a lingering one re-checks the size.
            self._cond.notify()

    def close(self, timeout_s: float) -> None:
        """Write what is queued, waiting at most `timeout_s`, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout_s)
        self._stop_retrying.set()
        self._thread.join(5)

    def _next_batch(self) -> list[Chunk] | None:
        with self._cond:
            while True:
                if self._queue:
                    age = time.monotonic() - self._queue[0][0]
                    readings = sum(len(c.readings) for _, c in self._queue)
                    if (
                        self._closing
                        or age >= self._linger_s
                        or readings >= self._batch_size
                        or self._queued_messages >= self._early_flush_messages
                    ):
                        break
                    self._cond.wait(self._linger_s - age)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()
            batch: list[Chunk] = []
            count = 0
            while self._queue and (not batch or count + len(self._queue[0][1].readings) <= self._batch_size):
                _, chunk = self._queue.popleft()
                batch.append(chunk)
                count += len(chunk.readings)
                self._queued_messages -= len(chunk.tokens)
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            readings = [r for chunk in batch for r in chunk.readings]
            for start in range(0, len(readings), self._batch_size):
                if not self._write(readings[start : start + self._batch_size]):
                    return  # shutting down with this batch unstored: it stays unacknowledged
            self._tracker.stored(self.sink.name, batch[-1].seq)

    def _write(self, readings: list[Reading]) -> bool:
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
                log.error("sink %s refused %d readings: %s; dead-lettered", name, len(readings), exc)
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
        self._chunk_seq = 0
        self._readings: list[Reading] = []
        self._tokens: list[AckToken | None] = []
        self._stopping = threading.Event()
        self.source = MqttSource(
            config.mqtt, self.ingestor.topic_filters, self._on_message, self._seal_chunk, self._can_read
        )
        self.tracker = AckTracker([s.name for s in sinks], self.source.release)
        window = config.mqtt.receive_maximum if config.mqtt.protocol == "5" else 20
        # Flush before the broker's in-flight window is used up, or nothing more would arrive to fill a batch.
        self._early_flush = max(1, window // 2)
        self._max_pending = max(4 * window, 10_000)
        self.workers = [
            SinkWorker(
                sink,
                _batching(config, sink.name),
                self._early_flush,
                self.tracker,
                self.stats,
                self._deadletter_readings,
            )
            for sink in sinks
        ]
        self.registry = CollectorRegistry()
        self.registry.register(
            StatsCollector(
                self.stats,
                lambda: self.source.acknowledged,
                lambda: self.tracker.pending_messages,
                lambda: self.source.connected,
            )
        )
        self.http: StatusServer | None = None
        if config.http.port:
            self.http = StatusServer(config.http.host, config.http.port, self.registry, self.readiness)

    # -- network thread ---------------------------------------------------------------------------

    def _on_message(self, raw: RawMessage) -> None:
        stats = self.stats
        stats.messages_received += 1
        outcome = self.ingestor.process(raw)
        if outcome.rejection is not None:
            rejection = outcome.rejection
            stats.messages_rejected[rejection.reason] += 1
            log.info("rejected message on %s: %s: %s", rejection.topic[:200], rejection.reason, rejection.detail)
            self.source.publish(
                deadletter.topic_for(self.config.mqtt.deadletter_topic, rejection),
                deadletter.record(rejection),
            )
            stats.deadletters_published += 1
        else:
            stats.readings_accepted += len(outcome.readings)
            stats.readings_duplicate += outcome.duplicates
            stats.readings_receive_timestamped += outcome.receive_timestamped
            self._readings.extend(outcome.readings)
        self._tokens.append(raw.ack_token)

    def _seal_chunk(self) -> None:
        if not self._tokens:
            return
        chunk = Chunk(self._chunk_seq, self._readings, self._tokens)
        self._chunk_seq += 1
        self._readings, self._tokens = [], []
        self.tracker.add(chunk)
        for worker in self.workers:
            worker.put(chunk)

    def _can_read(self) -> bool:
        return not self._stopping.is_set() and self.tracker.pending_messages < self._max_pending

    def _deadletter_readings(self, reason: str, readings: list[Reading]) -> None:
        log.error(
            "dropping %d readings the store refused (%s), first id %s",
            len(readings),
            reason,
            readings[0].reading_id if readings else "-",
        )

    # -- lifecycle --------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        if not self.source.connected:
            return False, "broker not connected"
        unhealthy = [w.sink.name for w in self.workers if not w.healthy]
        if unhealthy:
            return False, f"sinks failing: {', '.join(unhealthy)}"
        return True, "ready"

    def run(self, stop: threading.Event, shutdown_timeout_s: float = 30.0) -> None:
        """Run until `stop` is set; then stop reading, store what was read (bounded), acknowledge, exit."""
        if self.http:
            self.http.start()
            log.info("metrics on http://%s:%d/metrics", self.config.http.host, self.http.port)
        for worker in self.workers:
            worker.start()
        source_stop = threading.Event()
        network = threading.Thread(target=self.source.run, args=(source_stop,), name="mqtt", daemon=True)
        network.start()
        stop.wait()
        log.info("stopping: no new messages; storing %d pending", self.tracker.pending_messages)
        self._stopping.set()
        deadline = time.monotonic() + shutdown_timeout_s
        while self.tracker.pending_messages and time.monotonic() < deadline and network.is_alive():
            time.sleep(0.05)
        for worker in self.workers:
            worker.close(max(0.1, deadline - time.monotonic()))
        source_stop.set()
        network.join(10)
        for worker in self.workers:
            worker.sink.close()
        if self.http:
            self.http.close()
        log.info(
            "stopped: received %d, stored %s, duplicates %d, rejected %d, unacknowledged %d",
            self.stats.messages_received,
            dict(self.stats.readings_stored),
            self.stats.readings_duplicate,
            self.stats.rejected_total(),
            self.tracker.pending_messages,
        )


def _batching(config: GatewayConfig, sink_name: str) -> BatchingConfig:
    section = getattr(config, sink_name)
    assert isinstance(section, BatchingConfig)
    return section
