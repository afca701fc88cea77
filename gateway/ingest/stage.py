"""The ingest stage: the `Consumer` a source feeds (gateway/sources/base.py), on the source's own thread.

Each message goes through the Ingestor (and the alert stage); what a burst of messages produced becomes one
chunk, handed to the journal writer when the source says the burst ended. It also bounds memory: the source
reads no more while mqtt.max_messages_in_memory messages wait for the journal, and shutdown is a handshake
through `can_read` (the last partial chunk goes to the journal, then the source is told to read no more).
"""

from __future__ import annotations

import logging
import threading
import time

from gateway.alerts import Alert
from gateway.alerts.stage import AlertStage
from gateway.config.schema import GatewayConfig
from gateway.ingest import deadletter
from gateway.ingest.dedup import DedupKey
from gateway.ingest.ingestor import Ingestor
from gateway.journal.writer import Chunk, JournalWriter
from gateway.model import OutgoingMessage, RawMessage, Reading, Rejection
from gateway.reasons import Reason
from gateway.telemetry.metrics import Stats

log = logging.getLogger(__name__)
_ALERT_TICK_NS = 250_000_000  # deadman and repeat timers are checked this often (between bursts)


class IngestStage:
    def __init__(
        self,
        config: GatewayConfig,
        ingestor: Ingestor,
        alerts: AlertStage | None,
        writer: JournalWriter,
        stats: Stats,
    ) -> None:
        self._config = config
        self._ingestor = ingestor
        self._alerts = alerts
        self._writer = writer
        self._stats = stats
        self._chunk = _new_chunk()
        self._delivery_keys: list[DedupKey] = []  # the current chunk's (see gateway/ingest/dedup.py)
        self.sealed_messages = 0  # messages handed to the journal writer so far
        self._reading_paused = False
        self._stopping = threading.Event()
        self.sealed_for_stop = threading.Event()  # set on the source's thread once it read its last message
        self._reload_requested = threading.Event()
        self._next_alert_tick = 0

    # -- called from other threads ---------------------------------------------------------------

    def stop_reading(self) -> None:
        """Shutdown: the source's next `can_read()` seals the last chunk and sets `sealed_for_stop`."""
        self._stopping.set()

    def request_rules_reload(self) -> None:
        """SIGHUP: the source's thread re-reads the rules file at its next turn."""
        self._reload_requested.set()

    def deadletter_refused(self, reason: str, readings: list[Reading]) -> None:
        """Readings a store refused become dead-letter records, committed like any other (the sink worker counts
        them, as readings: their messages were accepted). Called from a sink worker's thread."""
        outgoing = []
        rejections = []
        for r in readings:
            payload = deadletter.reading_payload(r)
            topic = f"(refused by the store: reading {r.reading_id})"
            rejection = Rejection(Reason.STORE_REFUSED, reason, topic, payload, time.time_ns(), r.device, r.measurement)
            outgoing.append(self._deadletter_message(rejection))
            rejections.append(rejection)
        # A chunk with dead letters only: the journal thread commits and publishes it like any other.
        self._writer.put(Chunk([], outgoing, [], rejections))

    def add_alerts(self, alerts: list[Alert]) -> None:
        """Notifications join the current chunk: committed with the readings (and engine state) behind them.
        On the source's thread, or before it starts (alerts that ended while the gateway was down)."""
        assert self._alerts is not None
        points, notifications = self._alerts.outputs(alerts)
        self._chunk.readings.extend(points)
        self._chunk.outgoing.extend(notifications)
        for alert in alerts:
            if alert.notify:
                self._stats.alert_notifications[alert.transition] += 1

    # -- Consumer: the source's thread -----------------------------------------------------------

    def on_message(self, raw: RawMessage) -> None:
        stats = self._stats
        stats.messages_received += 1
        started = time.perf_counter()
        outcome = self._ingestor.process(raw)
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
            chunk.outgoing.append(self._deadletter_message(rejection))
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
            if self._alerts is not None and (outcome.readings or outcome.sequence_events):
                found = self._alerts.on_readings(outcome.readings, outcome.sequence_events, raw.received_at_ns)
                if found:
                    self.add_alerts(found)
        chunk.tokens.append(raw.ack_token)

    def on_burst_end(self) -> None:
        if self._alerts is not None:
            self._run_alert_timers()
        chunk = self._chunk
        if not chunk.tokens and not chunk.readings and not chunk.outgoing:
            return
        self._chunk = _new_chunk()
        if self._delivery_keys:
            chunk = chunk._replace(delivery_keys=self._delivery_keys)
            self._delivery_keys = []
        if self._alerts is not None:
            chunk = chunk._replace(alert_state=self._alerts.state_if_changed())
        self.sealed_messages += len(chunk.tokens)
        self._writer.put(chunk)

    def can_read(self) -> bool:
        """Whether the source may read more: memory holds at most mqtt.max_messages_in_memory messages the
        journal has not committed. The broker's window cannot be trusted to bound it (Mosquitto sends past
        receive_maximum; 3.1.1 has no window), and while the journal is full nothing is committed."""
        if self._stopping.is_set():
            # The shutdown handshake: the last partial chunk goes to the journal, and run() is told so.
            if not self.sealed_for_stop.is_set():
                self.on_burst_end()
                self.sealed_for_stop.set()
            return False
        in_memory = self.sealed_messages + len(self._chunk.tokens) - self._writer.committed_messages
        limit = self._config.mqtt.max_messages_in_memory
        if in_memory < limit and self._writer.has_room():
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
                limit,
            )
        return False

    def on_published(self, confirmed: list[int], failed: list[tuple[int, str]]) -> None:
        self._stats.deadletters_published += len(confirmed)
        self._stats.publish_failed += len(failed)
        self._writer.published(confirmed, failed)

    # -- internals -------------------------------------------------------------------------------

    def _run_alert_timers(self) -> None:
        """Between bursts: deadman and repeat timers, and a requested rules reload."""
        assert self._alerts is not None
        now = time.time_ns()
        if self._reload_requested.is_set():
            self._reload_requested.clear()
            self.add_alerts(self._alerts.reload(now))
        if now >= self._next_alert_tick:
            self._next_alert_tick = now + _ALERT_TICK_NS
            found = self._alerts.tick(now)
            if found:
                self.add_alerts(found)

    def _deadletter_message(self, rejection: Rejection) -> OutgoingMessage:
        topic = deadletter.topic_for(self._config.mqtt.deadletter_topic, rejection)
        return OutgoingMessage(topic, deadletter.record(rejection))


def _new_chunk() -> Chunk:
    return Chunk([], [], [], [])
