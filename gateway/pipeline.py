"""The only wiring: a source's messages become chunks, chunks are committed to the journal and then acknowledged,
and one worker thread per sink drains the journal's outbox from its own cursor.

    source thread (sources/)            journal thread (journal/writer.py)   one a sink (sinks/worker.py)
    message -> IngestStage -> chunk  ->  group commit -> acknowledgements     [influx] read outbox, write, retry
               (ingest/stage.py)         (readings, dedup keys,               [sqlite] read outbox, write, retry
                                          outgoing messages)                   -> cursor -> journal deletes rows

Threads rather than asyncio: sockets, urllib3 and sqlite3 block, and all three release the GIL
while they wait on sockets or disks, which is where the journal and the sink workers spend their time. Every
thread is the Supervisor's (gateway/runtime.py): one that dies makes the gateway unready and ends `run`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from gateway.alerts.stage import AlertStage
from gateway.config.schema import BatchingConfig, GatewayConfig
from gateway.errors import EXIT_FAILED
from gateway.ingest.ingestor import Ingestor
from gateway.ingest.stage import IngestStage
from gateway.journal.store import Journal
from gateway.journal.writer import Chunk, JournalWriter
from gateway.runtime import Supervisor
from gateway.sinks import Sink
from gateway.sinks.worker import SinkWorker
from gateway.sources.base import Source
from gateway.sources.mqtt import MqttSource
from gateway.telemetry.http import StatusServer
from gateway.telemetry.metrics import Stats, StatsCollector
from gateway.telemetry.self_metrics import SelfMetricsWriter

log = logging.getLogger(__name__)
# After a runtime thread died the sinks get this long to store what is committed; the rest stays in the journal.
FAILURE_SHUTDOWN_S = 5.0


class Pipeline:
    """Built from a config, the sinks and a source (the MQTT source the config describes, unless another is
    given: tests drive the whole pipeline in process through a source of their own)."""

    def __init__(self, config: GatewayConfig, sinks: Sequence[Sink], source: Source | None = None) -> None:
        self.config = config
        self.stats = Stats()
        self.ingestor = Ingestor(config)
        self.runtime = Supervisor()
        self.journal = Journal(
            config.journal.path,
            [s.name for s in sinks],
            config.journal.max_rejected,
            _replayable_payload_bytes(config),
        )
        self._refill_dedup_window()
        self.alerts = AlertStage(config.alerts) if config.alerts.rules_file is not None else None
        self.source: Source = source or MqttSource(config.mqtt, self.ingestor.topic_filters)
        self.writer = JournalWriter(
            self.journal,
            self.source,
            self.stats,
            config.dedup.window_s,
            config.dedup.max_entries,
            config.journal.max_bytes,
            self.runtime.thread,
        )
        self.stage = IngestStage(config, self.ingestor, self.alerts, self.writer, self.stats)
        if self.alerts is not None:
            ended = self.alerts.restore(self.journal.alert_state(), time.time_ns())
            if ended:
                self.stage.add_alerts(ended)
        self.workers = [
            SinkWorker(
                sink,
                _batching(config, sink.name),
                self.writer,
                self.stats,
                self.stage.deadletter_refused,
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
                pending=self._messages_pending,
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
            lambda reading: self.writer.put(Chunk([reading], [], [], [])),
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

    def _messages_pending(self) -> int:
        """Handed to the journal writer and not yet committed."""
        return self.stage.sealed_messages - self.writer.committed_messages

    def _self_metric_values(self) -> dict[str, float]:
        stats = self.stats
        return {
            "messages_received": stats.messages_received,
            "messages_rejected": stats.rejected_total(),
            "readings_stored": sum(stats.readings_stored.values()),
            "readings_duplicate": stats.readings_duplicate,
            "messages_pending": self._messages_pending(),
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

    def request_rules_reload(self) -> None:
        """SIGHUP: the source's thread re-reads the rules file at its next turn."""
        self.stage.request_rules_reload()

    # -- lifecycle --------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        """(ready, why): every reason the gateway is not ready, joined, so one probe tells the whole story."""
        reasons = [self.runtime.failure] if self.runtime.failure else []
        if not self.source.connected:
            reasons.append("broker not connected")
        if self.writer.failed:
            reasons.append(f"journal not writable: {self.writer.failed}")
        if self.writer.full_since is not None:
            full_s = time.monotonic() - self.writer.full_since
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
        pending = self.journal.pending_outgoing()
        if pending:
            log.info("re-publishing %d dead-letter records and notifications from the journal", len(pending))
            self.source.send(pending)
        for worker in self.workers:
            worker.start()
        self.self_metrics.start()
        source_stop = threading.Event()
        network = self.runtime.thread(self.source.name, functools.partial(self.source.run, self.stage, source_stop))
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
        self.stage.stop_reading()
        self.self_metrics.close()
        # What follows the sinks (last commit, acknowledgements, disconnect) needs a moment of the budget too.
        deadline = time.monotonic() + max(1.0, shutdown_timeout_s - 3.0)
        self.source.interrupt()
        if not self.stage.sealed_for_stop.wait(1.0):  # not connected (or its thread is gone): nothing is half read
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


def _batching(config: GatewayConfig, sink_name: str) -> BatchingConfig:
    section = getattr(config, sink_name)
    assert isinstance(section, BatchingConfig)
    return section
