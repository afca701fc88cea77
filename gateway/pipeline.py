"""The only wiring: messages become chunks, chunks are committed to the journal and then acknowledged, and one
worker thread per sink drains the journal's outbox from its own cursor.

    network thread (source.py)        journal_writer.py              sink_worker.py, one a sink
    message -> Ingestor -> chunk  ->  group commit  -> PUBACKs       [influx] read outbox, write, retry
                                      (readings, dedup keys,         [sqlite] read outbox, write, retry
                                       dead letters)                  -> cursor -> journal deletes stored rows

Threads rather than asyncio: paho, urllib3 and sqlite3 are blocking libraries, and all three release the GIL
while they wait on sockets or disks, which is where the journal and the sink workers spend their time.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from gateway.alerts import Alert
from gateway.alerts.stage import AlertStage
from gateway.config.schema import BatchingConfig, GatewayConfig
from gateway.errors import EXIT_FAILED
from gateway.ingest import deadletter
from gateway.ingest.dedup import DedupKey
from gateway.ingest.ingestor import Ingestor
from gateway.journal.store import Journal
from gateway.journal.writer import Chunk, JournalWriter
from gateway.model import RawMessage, Reading, Rejection
from gateway.reasons import Reason
from gateway.runtime import Supervisor
from gateway.sinks import Sink
from gateway.sinks.worker import SinkWorker
from gateway.sources.mqtt import MqttSource
from gateway.telemetry.http import StatusServer
from gateway.telemetry.metrics import Stats, StatsCollector
from gateway.telemetry.self_metrics import SelfMetricsWriter

log = logging.getLogger(__name__)
# After a runtime thread died the sinks get this long to store what is committed; the rest stays in the journal.
FAILURE_SHUTDOWN_S = 5.0
_ALERT_TICK_NS = 250_000_000  # deadman and repeat timers are checked this often (between bursts)


class Pipeline:
    def __init__(self, config: GatewayConfig, sinks: Sequence[Sink]) -> None:
        self.config = config
        self.stats = Stats()
        self.ingestor = Ingestor(config)
        self._chunk = _new_chunk()
        self._delivery_keys: list[DedupKey] = []  # the current chunk's (see gateway/ingest/dedup.py)
        self._stopping = threading.Event()
        self._sealed_for_stop = threading.Event()  # set by the network thread once it read its last message
        self.runtime = Supervisor()
        self.journal = Journal(
            config.journal.path,
            [s.name for s in sinks],
            config.journal.max_rejected,
            _replayable_payload_bytes(config),
        )
        self._refill_dedup_window()
        self.alerts: AlertStage | None = None
        self._reload_requested = threading.Event()
        self._next_alert_tick = 0
        if config.alerts.rules_file is not None:
            self.alerts = AlertStage(config.alerts)
            ended = self.alerts.restore(self.journal.alert_state(), time.time_ns())
            if ended:
                self._add_alerts(ended)
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
            self.runtime.thread,
        )
        self.workers = [
            SinkWorker(
                sink,
                _batching(config, sink.name),
                self.writer,
                self.stats,
                self._deadletter_readings,
                self.runtime.thread,
            )
            for sink in sinks
        ]
        for worker in self.workers:
            self.writer.add_listener(worker.offer)
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
                sequences=self.ingestor.sequences,
                firing=self.alerts.firing_by_rule if self.alerts is not None else None,
                journal_damage_lost=lambda: self.journal.damage_lost,
                session_takeovers=lambda: self.source.session_takeovers,
            )
        )
        self.self_metrics = SelfMetricsWriter(
            config.self_metrics.instance or config.mqtt.client_id,
            config.self_metrics.interval_s,
            self._self_metric_values,
            lambda reading: self.writer.put(Chunk([reading], [], [], [], [])),
            self.runtime.thread,
        )
        self.http: StatusServer | None = None
        if config.http.port:
            try:
                self.http = StatusServer(
                    config.http.host, config.http.port, self.registry, self.readiness, self.runtime.thread
                )
            except BaseException:
                # The demo tries again on another port: this journal (and its lock) must not stay open.
                self.journal.close()
                raise
        self._sealed_messages = 0
        self._reading_paused = False

    def _self_metric_values(self) -> dict[str, float]:
        stats = self.stats
        return {
            "messages_received": stats.messages_received,
            "messages_rejected": stats.rejected_total(),
            "readings_stored": sum(stats.readings_stored.values()),
            "readings_duplicate": stats.readings_duplicate,
            "messages_pending": self._sealed_messages - self.writer.committed_messages,
            "journal_bytes": self.journal.outbox_bytes,
            "backpressure": self.writer.backpressure,
            "broker_connected": self.source.connected,
        }

    def _refill_dedup_window(self) -> None:
        window = self.ingestor.dedup_window
        if window is None:
            return
        since = time.time_ns() - window.window_ns
        restored = 0
        for key, seen_ns in self.journal.recent_dedup_keys(since):
            window.restore(key, seen_ns)
            restored += 1
        if restored:
            log.info("restored %d dedup keys from the journal", restored)

    # -- network thread ---------------------------------------------------------------------------

    def _on_message(self, raw: RawMessage) -> None:
        stats = self.stats
        stats.messages_received += 1
        started = time.perf_counter()
        outcome = self.ingestor.process(raw)
        stats.ingest_seconds.observe(time.perf_counter() - started)
        chunk = self._chunk
        if outcome.ignored is not None:
            stats.messages_ignored[outcome.ignored] += 1
            log.info(
                "ignored a message on %s: %s",
                raw.topic[:200],
                outcome.ignored,
                extra={"rate_key": f"ignored:{outcome.ignored}", "reason": outcome.ignored},
            )
        elif outcome.rejection is not None:
            rejection = outcome.rejection
            stats.messages_rejected[rejection.reason] += 1
            log.info(
                "rejected message on %s: %s: %s",
                rejection.topic[:200],
                rejection.reason,
                rejection.detail,
                extra={
                    "rate_key": f"rejected:{rejection.reason}",
                    "correlation_id": deadletter.correlation_id(rejection),
                    "reason": rejection.reason,
                    "device": rejection.device,
                },
            )
            chunk.deadletters.append(self._deadletter_record(rejection))
            chunk.rejected.append(rejection)
        else:
            # Each message counted once, by what became of it; readings are counted on their own.
            if outcome.readings:
                stats.messages_accepted += 1
            elif outcome.duplicates:
                stats.messages_duplicate += 1
            else:
                stats.messages_empty += 1
            stats.readings_accepted += len(outcome.readings)
            stats.readings_duplicate += outcome.duplicates
            stats.readings_receive_timestamped += outcome.receive_timestamped
            stats.readings_late += outcome.late
            chunk.readings.extend(outcome.readings)
            if outcome.delivery_key is not None:
                self._delivery_keys.append(outcome.delivery_key)
            if self.alerts is not None and (outcome.readings or outcome.sequence_events):
                found = self.alerts.on_readings(outcome.readings, outcome.sequence_events, raw.received_at_ns)
                if found:
                    self._add_alerts(found)
        chunk.tokens.append(raw.ack_token)

    def _add_alerts(self, alerts: list[Alert]) -> None:
        """Notifications join the current chunk: committed with the readings (and engine state) behind them."""
        assert self.alerts is not None
        points, notifications = self.alerts.outputs(alerts)
        self._chunk.readings.extend(points)
        self._chunk.notifications.extend(notifications)
        for alert in alerts:
            if alert.notify:
                self.stats.alert_notifications[alert.transition] += 1

    def _run_alert_timers(self) -> None:
        """On the network thread, between bursts: deadman and repeat timers, and a requested rules reload."""
        assert self.alerts is not None
        now = time.time_ns()
        if self._reload_requested.is_set():
            self._reload_requested.clear()
            self._add_alerts(self.alerts.reload(now))
        if now >= self._next_alert_tick:
            self._next_alert_tick = now + _ALERT_TICK_NS
            found = self.alerts.tick(now)
            if found:
                self._add_alerts(found)

    def request_rules_reload(self) -> None:
        """SIGHUP: the network thread re-reads the rules file at its next turn."""
        self._reload_requested.set()

    def _deadletter_record(self, rejection: Rejection) -> tuple[str, bytes]:
        return deadletter.topic_for(self.config.mqtt.deadletter_topic, rejection), deadletter.record(rejection)

    def _seal_chunk(self) -> None:
        if self.alerts is not None:
            self._run_alert_timers()
        chunk = self._chunk
        if not chunk.tokens and not chunk.readings and not chunk.notifications:
            return
        self._chunk = _new_chunk()
        if self._delivery_keys:
            chunk = chunk._replace(delivery_keys=self._delivery_keys)
            self._delivery_keys = []
        if self.alerts is not None:
            chunk = chunk._replace(alert_state=self.alerts.state_if_changed())
        self._sealed_messages += len(chunk.tokens)
        self.writer.put(chunk)

    def _can_read(self) -> bool:
        """Whether the network thread may read more: memory holds at most mqtt.max_messages_in_memory messages
        the journal has not committed. The broker's window cannot be trusted to bound it (Mosquitto sends past
        receive_maximum; 3.1.1 has no window), and while the journal is full nothing is committed."""
        if self._stopping.is_set():
            # The shutdown handshake: the last partial chunk goes to the journal, and run() is told so.
            if not self._sealed_for_stop.is_set():
                self._seal_chunk()
                self._sealed_for_stop.set()
            return False
        in_memory = self._sealed_messages + len(self._chunk.tokens) - self.writer.committed_messages
        if in_memory < self.config.mqtt.max_messages_in_memory:
            if self._reading_paused:
                self._reading_paused = False
                log.info("reading from the broker again")
            return True
        if not self._reading_paused:
            self._reading_paused = True
            log.warning(
                "stopped reading from the broker: %d messages in memory wait for the journal "
                "(mqtt.max_messages_in_memory=%d); the broker keeps the rest",
                in_memory,
                self.config.mqtt.max_messages_in_memory,
            )
        return False

    def _on_deadletters_published(self, ids: list[int], failed: list[tuple[int, str]]) -> None:
        self.stats.deadletters_published += len(ids)
        self.stats.publish_failed += len(failed)
        if ids:
            self.writer.call(functools.partial(self.journal.deadletter_confirmed, ids))
        if failed:
            self.writer.call(functools.partial(self.journal.deadletter_failed, failed))

    # -- sink worker threads ----------------------------------------------------------------------

    def _deadletter_readings(self, reason: str, readings: list[Reading]) -> None:
        """Readings a store refused become dead-letter records, committed like any other (the sink worker
        counts them, as readings: their messages were accepted)."""
        records = []
        rejections = []
        for r in readings:
            payload = deadletter.reading_payload(r)
            topic = f"(refused by the store: reading {r.reading_id})"
            rejection = Rejection(Reason.STORE_REFUSED, reason, topic, payload, time.time_ns(), r.device, r.measurement)
            records.append(self._deadletter_record(rejection))
            rejections.append(rejection)
        # A chunk with dead letters only: the journal thread commits and publishes it like any other.
        self.writer.put(Chunk([], records, [], rejections, []))

    # -- lifecycle --------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        """(ready, why): every reason the gateway is not ready, joined, so one probe tells the whole story."""
        reasons = [self.runtime.failure] if self.runtime.failure else []
        if not self.source.connected:
            reasons.append("broker not connected")
        if self.writer.failed:
            reasons.append(f"journal not writable: {self.writer.failed}")
        if self.writer.backpressure:
            full_s = time.monotonic() - self.writer.backpressure_since
            if full_s > self.config.journal.max_backpressure_s:
                reasons.append(f"journal full (journal.max_bytes) for {full_s:.0f} s: not acknowledging messages")
        unhealthy = [w.sink.name for w in self.workers if not w.healthy]
        if unhealthy:
            reasons.append(f"sinks failing: {', '.join(unhealthy)}")
        return (False, "; ".join(reasons)) if reasons else (True, "ready")

    def run(self, stop: threading.Event, shutdown_timeout_s: float = 30.0) -> int:
        """Run until `stop` is set or a runtime thread dies; then stop reading, commit and acknowledge what was
        read, give the sinks at most `shutdown_timeout_s` (FAILURE_SHUTDOWN_S after a death) to store it, and
        keep the rest in the journal. Returns the exit status: 0, or EXIT_FAILED when a thread died."""
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
        self.self_metrics.start()
        source_stop = threading.Event()
        network = self.runtime.thread("mqtt", functools.partial(self.source.run, source_stop))
        network.start()
        self.runtime.wait(stop)
        if self.runtime.failure:
            log.critical(
                "%s: shutting down, exit status %d; a restart resumes from the journal",
                self.runtime.failure,
                EXIT_FAILED,
            )
            shutdown_timeout_s = min(shutdown_timeout_s, FAILURE_SHUTDOWN_S)
        log.info("stopping: no new messages")
        self._stopping.set()
        self.self_metrics.close()
        # What follows the sinks (last commit, acknowledgements, disconnect) needs a moment of the budget too.
        deadline = time.monotonic() + max(1.0, shutdown_timeout_s - 3.0)
        self.source.interrupt()
        if not self._sealed_for_stop.wait(1.0):  # not connected (or its thread is gone): nothing is half read
            log.info("the network thread did not answer the stop within 1 s")
        for worker in self.workers:
            worker.close(max(0.1, deadline - time.monotonic()), retry_grace_s=1.0)
        self.writer.close()
        source_stop.set()  # the network thread sends the acknowledgements the last commit released, then leaves
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
        return EXIT_FAILED if self.runtime.failure else 0


def _replayable_payload_bytes(config: GatewayConfig) -> int:
    """The largest payload any mapping accepts: a rejected message up to this size is kept whole, for replay."""
    limits = [config.validation.max_payload_bytes]
    limits += [
        m.validation.max_payload_bytes for m in config.mappings if m.validation and m.validation.max_payload_bytes
    ]
    return max(limits)


def _new_chunk() -> Chunk:
    return Chunk([], [], [], [], [])


def _batching(config: GatewayConfig, sink_name: str) -> BatchingConfig:
    section = getattr(config, sink_name)
    assert isinstance(section, BatchingConfig)
    return section
