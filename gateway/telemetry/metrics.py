"""The gateway's counters: plain integers bumped by the threads that own them, exported on scrape.

Counting with prometheus_client objects would take a lock per increment; at tens of thousands of messages
a second the pipeline instead bumps ints once per message or batch, and a collector reads them when scraped.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.ingest.sequence import EventKind, SequenceTracker


class Histogram:
    """Cumulative-bucket histogram with plain ints, bumped by the one thread that owns it (no lock)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        self.counts[bisect.bisect_left(self.buckets, value)] += 1


LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
SIZE_BUCKETS = (1, 10, 50, 100, 500, 1000, 2000, 5000, 10_000, 50_000)


class Stats:
    """Two accounting identities, one for messages and one for readings (a message may carry several):

        messages_received = messages_accepted + messages_duplicate + messages_empty + messages_rejected
                            + messages_ignored
        readings_accepted = readings_stored[sink] + readings_refused[sink] + what that sink has yet to write

    for every sink that stores device readings; the second holds for the readings of this run once the
    journal is drained (readings left in the journal by an earlier run are stored, and counted, in this one).
    """

    def __init__(self) -> None:
        self.messages_received = 0
        self.messages_accepted = 0  # at least one new reading
        self.messages_duplicate = 0  # readings, every one already seen
        self.messages_empty = 0  # valid, nothing to store: every field filtered out (include / exclude)
        self.messages_rejected: Counter[str] = Counter()
        self.messages_ignored: Counter[str] = Counter()  # not input: the gateway's own output, old retained ones
        self.readings_accepted = 0
        self.readings_duplicate = 0
        self.readings_receive_timestamped = 0
        self.readings_late = 0
        self.readings_stored: Counter[str] = Counter()
        self.readings_refused: Counter[str] = Counter()  # by sink: the store refused them (4xx), dead-lettered
        self.sink_writes: Counter[str] = Counter()
        self.sink_retries: Counter[str] = Counter()
        self.sink_errors: Counter[tuple[str, str]] = Counter()
        self.deadletters_published = 0
        self.publish_failed = 0  # dead letters and notifications MQTT cannot carry (kept as rejected)
        self.journal_commits = 0
        self.rejected_dropped = 0
        self.alert_notifications: Counter[str] = Counter()
        # Per-stage latency (seconds) and sizes; each bumped by the one thread that runs the stage.
        self.ingest_seconds = Histogram(LATENCY_BUCKETS_S)  # network thread: one message through the Ingestor
        self.commit_seconds = Histogram(LATENCY_BUCKETS_S)  # journal thread: one group commit (fsync included)
        self.commit_messages = Histogram(SIZE_BUCKETS)
        self.sink_write_seconds: dict[str, Histogram] = {}  # sink thread: one successful write request
        self.sink_batch_readings: dict[str, Histogram] = {}

    def sink_histograms(self, sink: str) -> tuple[Histogram, Histogram]:
        """Created by the pipeline before the sink threads start, so the dicts never change while scraped."""
        if sink not in self.sink_write_seconds:
            self.sink_write_seconds[sink] = Histogram(LATENCY_BUCKETS_S)
            self.sink_batch_readings[sink] = Histogram(SIZE_BUCKETS)
        return self.sink_write_seconds[sink], self.sink_batch_readings[sink]

    def rejected_total(self) -> int:
        return sum(self.messages_rejected.values())


class StatsCollector(Collector):
    def __init__(
        self,
        stats: Stats,
        *,
        acknowledged: Callable[[], int],
        pending: Callable[[], int],
        connected: Callable[[], bool],
        journal_bytes: Callable[[], int],
        backpressure: Callable[[], bool],
        sink_pending_chunks: Callable[[], dict[str, int]],
        sequences: SequenceTracker | None = None,
        firing: Callable[[], dict[str, int]] | None = None,
        journal_damage_lost: Callable[[], Mapping[str, int]] = dict,
        session_takeovers: Callable[[], int] = int,
    ) -> None:
        self._journal_damage_lost = journal_damage_lost
        self._session_takeovers = session_takeovers
        self._sequences = sequences
        self._firing = firing
        self._stats = stats
        self._acknowledged = acknowledged
        self._pending = pending
        self._connected = connected
        self._journal_bytes = journal_bytes
        self._backpressure = backpressure
        self._sink_pending_chunks = sink_pending_chunks

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        yield CounterMetricFamily("gateway_messages_received", "MQTT messages received.", value=s.messages_received)
        rejected = CounterMetricFamily("gateway_messages_rejected", "Messages rejected, by reason.", labels=["reason"])
        for reason, count in sorted(s.messages_rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        ignored = CounterMetricFamily(
            "gateway_messages_ignored",
            "Messages acknowledged and not ingested, by reason: own_output (a topic the gateway publishes to), "
            "retained (a retained message sent again on a resumed session).",
            labels=["reason"],
        )
        for reason, count in sorted(s.messages_ignored.items()):
            ignored.add_metric([reason], count)
        yield ignored
        simple = [
            ("gateway_messages_accepted", "Messages with at least one new reading.", s.messages_accepted),
            ("gateway_messages_duplicate", "Messages whose readings had all been seen before.", s.messages_duplicate),
            (
                "gateway_messages_empty",
                "Valid messages with nothing to store: every field filtered out by the mapping's include / exclude.",
                s.messages_empty,
            ),
            ("gateway_readings_accepted", "Valid, new readings handed to the sinks.", s.readings_accepted),
            ("gateway_readings_duplicate", "Readings dropped as already seen.", s.readings_duplicate),
            (
                "gateway_readings_receive_timestamped",
                "Readings without a device timestamp, stamped with the receive time.",
                s.readings_receive_timestamped,
            ),
            (
                "gateway_readings_late",
                "Readings older than validation.max_late_s, accepted (late: accept).",
                s.readings_late,
            ),
        ]
        for name, documentation, value in simple:
            yield CounterMetricFamily(name, documentation, value=value)
        if self._sequences is not None:
            yield from _sequence_metrics(self._sequences)
        stored = CounterMetricFamily("gateway_readings_stored", "Readings accepted by a sink.", labels=["sink"])
        writes = CounterMetricFamily("gateway_sink_writes", "Successful write requests.", labels=["sink"])
        refused = CounterMetricFamily(
            "gateway_readings_refused",
            "Readings a store refused (a 4xx other than 429), dead-lettered as store_refused.",
            labels=["sink"],
        )
        retries = CounterMetricFamily("gateway_sink_retries", "Write attempts that will be retried.", labels=["sink"])
        for sink in sorted(set(s.readings_stored) | set(s.sink_writes) | set(s.sink_retries) | set(s.readings_refused)):
            stored.add_metric([sink], s.readings_stored[sink])
            refused.add_metric([sink], s.readings_refused[sink])
            writes.add_metric([sink], s.sink_writes[sink])
            retries.add_metric([sink], s.sink_retries[sink])
        yield from (stored, refused, writes, retries)
        errors = CounterMetricFamily("gateway_sink_errors", "Failed writes, by kind.", labels=["sink", "kind"])
        for (sink, kind), count in sorted(s.sink_errors.items()):
            errors.add_metric([sink, kind], count)
        yield errors
        yield CounterMetricFamily(
            "gateway_deadletters_published", "Dead-letter records published.", value=s.deadletters_published
        )
        yield CounterMetricFamily(
            "gateway_publish_failed",
            "Dead letters and alert notifications that could not be published (an invalid topic, too large); "
            "kept in the journal as rejected, reason publish_failed.",
            value=s.publish_failed,
        )
        yield CounterMetricFamily(
            "gateway_messages_acknowledged",
            "QoS 1 messages acknowledged to the broker.",
            value=self._acknowledged(),
        )
        yield GaugeMetricFamily(
            "gateway_messages_pending", "Messages received, not yet committed to the journal.", value=self._pending()
        )
        yield CounterMetricFamily("gateway_journal_commits", "Group commits to the journal.", value=s.journal_commits)
        yield CounterMetricFamily(
            "gateway_rejected_dropped",
            "Rejected messages dropped from the journal, oldest first, to keep journal.max_rejected.",
            value=s.rejected_dropped,
        )
        yield GaugeMetricFamily(
            "gateway_journal_bytes",
            "Bytes of readings in the journal not yet stored by every sink.",
            value=self._journal_bytes(),
        )
        lost = CounterMetricFamily(
            "gateway_journal_salvage_lost",
            "What a damaged journal lost: for table=outbox acknowledged readings that can never be stored, for the "
            "other tables rows (dedup keys, dead letters, rejected messages, cursors, alert state).",
            labels=["table"],
        )
        damage_lost = self._journal_damage_lost()
        for table in sorted({"outbox", *damage_lost}):
            lost.add_metric([table], damage_lost.get(table, 0))
        yield lost
        yield GaugeMetricFamily(
            "gateway_backpressure",
            "1 while the journal is full (journal.max_bytes) and the gateway stops acknowledging.",
            value=1 if self._backpressure() else 0,
        )
        pending = GaugeMetricFamily(
            "gateway_sink_pending_chunks", "Journal chunks a sink has not stored yet.", labels=["sink"]
        )
        for sink, chunks in sorted(self._sink_pending_chunks().items()):
            pending.add_metric([sink], chunks)
        yield pending
        notified = CounterMetricFamily(
            "gateway_alert_notifications", "Alert notifications sent, by transition.", labels=["transition"]
        )
        for transition, count in sorted(s.alert_notifications.items()):
            notified.add_metric([transition], count)
        yield notified
        yield _histogram("gateway_ingest_seconds", "One message through the Ingestor.", s.ingest_seconds)
        yield _histogram("gateway_journal_commit_seconds", "One group commit to the journal.", s.commit_seconds)
        yield _histogram("gateway_journal_commit_messages", "Messages in one group commit.", s.commit_messages)
        write = HistogramMetricFamily("gateway_sink_write_seconds", "One successful write request.", labels=["sink"])
        batch = HistogramMetricFamily("gateway_sink_batch_readings", "Readings in one write request.", labels=["sink"])
        for sink in sorted(s.sink_write_seconds):
            _add(write, [sink], s.sink_write_seconds[sink])
            _add(batch, [sink], s.sink_batch_readings[sink])
        yield from (write, batch)
        if self._firing is not None:
            firing = GaugeMetricFamily("gateway_alerts_firing", "Alert episodes firing now, by rule.", labels=["rule"])
            for rule, count in sorted(self._firing().items()):
                firing.add_metric([rule], count)
            yield firing
        yield CounterMetricFamily(
            "gateway_session_takeovers",
            "Connections the broker closed for another client with the same mqtt.client_id: MQTT 5 reason 142, or "
            "closes without a reason once they come three in a minute (Mosquitto 2.0 gives no reason).",
            value=self._session_takeovers(),
        )
        yield GaugeMetricFamily(
            "gateway_broker_connected",
            "1 while connected to the broker.",
            value=1 if self._connected() else 0,
        )


_SEQUENCE_HELP: dict[EventKind, str] = {
    "gap": "Readings missing in a device's sequence numbers when a later one arrived (seq jumped ahead).",
    "out_of_order": "Readings that arrived after one with a higher sequence number.",
    "reset": "Device reboots seen as sequence numbers starting again.",
}


def _sequence_metrics(sequences: SequenceTracker) -> Iterator[CounterMetricFamily]:
    """Per device; only devices with events appear (beyond 10,000 such devices, under device="_other")."""
    names = {"gap": "gateway_sequence_gaps", "out_of_order": "gateway_sequence_out_of_order"}
    for kind, help_text in _SEQUENCE_HELP.items():
        family = CounterMetricFamily(names.get(kind, "gateway_sequence_resets"), help_text, labels=["device"])
        for device, count in sorted(sequences.counts[kind].items()):
            family.add_metric([device], count)
        yield family


def _add(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    cumulative, buckets = 0, []
    for bound, count in zip((*histogram.buckets, math.inf), histogram.counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), cumulative))
    family.add_metric(labels, buckets, histogram.sum)


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation)
    _add(family, [], histogram)
    return family
