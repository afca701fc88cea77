"""The pipeline's alert stage: new readings and sequence events in, notifications out.

Runs on the network thread, next to the Ingestor, so each (rule, device) sees readings in arrival order and the
engine needs no lock. What a transition produces goes into the same journal commit as the readings that caused
it, together with the engine's state, so a crash either keeps all three or none:

* a point of measurement `alerts` for every sink (and the webhook sink, which posts only those);
* an MQTT message on `alerts.topic` (QoS 1): retained while firing; on resolve the resolution is published and
  the retained message cleared (an empty retained payload), published from the journal until the broker
  acknowledged it;
* a log line.

After a restart the state comes back from the journal (`AlertEngine.restore`), so a firing alert is neither
notified again nor forgotten, and a redelivered reading whose first delivery was never committed is evaluated
once: its effects were never committed either.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import orjson

from gateway.alerts import Alert, AlertEngine, SnapshotError, load_rules
from gateway.config.schema import ALERTS_MEASUREMENT, AlertsConfig
from gateway.errors import ConfigError
from gateway.ingest import topics
from gateway.ingest.sequence import SequenceEvent
from gateway.model import FieldValue, OutgoingMessage, Reading

log = logging.getLogger(__name__)
_OWN_TAGS = ("rule", "severity", "kind")


class AlertOutputs(NamedTuple):
    points: list[Reading]  # the `alerts` measurement, for every sink
    notifications: list[OutgoingMessage]  # published from the journal


class AlertStage:
    def __init__(self, config: AlertsConfig) -> None:
        assert config.rules_file is not None, "the pipeline builds an alert stage only when rules are configured"
        self._config = config
        self.rules_file: Path = config.rules_file
        self.engine = AlertEngine(load_rules(self.rules_file))
        self.changed = False  # transitions since the state was last handed to the journal
        self.firing: Counter[str] = Counter()  # episodes firing now, by rule (read by the metrics scrape)
        self._firing_pairs: set[tuple[str, str]] = set()

    def restore(self, saved: bytes | None, now_ns: int) -> list[Alert]:
        if not saved:
            return []
        try:
            ended = self.engine.restore(saved, now_ns)
        except SnapshotError as exc:
            log.error("alert state in the journal is unreadable (%s); starting with no alerts", exc)
            return []
        for rule, device in self.engine.firing():
            self._count(rule, device, firing=True)
        return ended

    def firing_by_rule(self) -> dict[str, int]:
        return dict(self.firing)

    def _count(self, rule: str, device: str, firing: bool) -> None:
        pair = (rule, device)
        if firing and pair not in self._firing_pairs:
            self._firing_pairs.add(pair)
            self.firing[rule] += 1
        elif not firing and pair in self._firing_pairs:
            self._firing_pairs.discard(pair)
            self.firing[rule] -= 1

    def on_readings(
        self, readings: Sequence[Reading], events: Sequence[SequenceEvent], received_ns: int
    ) -> list[Alert]:
        engine = self.engine
        alerts: list[Alert] = []
        for reading in readings:
            found = engine.on_reading(reading, received_ns)
            if found:
                alerts.extend(found)
        for event in events:
            alerts.extend(
                engine.on_sequence_event(
                    event.device, event.kind, event.reading_id, event.time_ns, value=event.n, now_ns=received_ns
                )
            )
        return alerts

    def tick(self, now_ns: int) -> list[Alert]:
        return self.engine.tick(now_ns)

    def reload(self, now_ns: int) -> list[Alert]:
        """Re-read the rules file (SIGHUP): a valid file replaces the rules, keeping the state of unchanged ones;
        an invalid one is refused with a log line and the old rules stay."""
        try:
            rules = load_rules(self.rules_file)
        except ConfigError as exc:
            log.error("rules file %s refused, keeping the current rules: %s", self.rules_file, exc)
            return []
        ended = self.engine.replace_rules(rules, now_ns)
        log.info("rules reloaded from %s: %d rules", self.rules_file, len(rules.rules))
        return ended

    def outputs(self, alerts: Iterable[Alert]) -> AlertOutputs:
        points: list[Reading] = []
        notifications: list[OutgoingMessage] = []
        for alert in alerts:
            if not alert.notify:
                continue
            self.changed = True
            self._count(alert.rule, alert.device, firing=alert.transition != "resolved")
            points.append(alert_point(alert))
            topic = topics.fill_template(self._config.topic, {"device": alert.device, "rule": alert.rule})
            body = alert_json(alert)
            if alert.transition == "resolved":
                notifications.append(OutgoingMessage(topic, body, retain=False))
                notifications.append(OutgoingMessage(topic, b"", retain=True))  # clears the retained firing message
            else:
                notifications.append(OutgoingMessage(topic, body, retain=True))
            log.warning(
                "alert %s %s on %s (severity %s, value %s, threshold %s, reading %s)",
                alert.rule,
                alert.transition,
                alert.device,
                alert.severity,
                alert.value,
                alert.threshold,
                alert.reading_id,
                extra={"correlation_id": alert.reading_id, "rule": alert.rule, "device": alert.device},
            )
        return AlertOutputs(points, notifications)

    def state_if_changed(self) -> bytes | None:
        """The engine's state when a notification happened since the last call, for the same commit."""
        if not self.changed:
            return None
        self.changed = False
        return self.engine.snapshot()


def alert_point(alert: Alert) -> Reading:
    fields: dict[str, FieldValue] = {
        "state": alert.state,
        "transition": alert.transition,
        "starts_at_ns": float(alert.starts_at_ns),
    }
    if isinstance(alert.value, int | float) and not isinstance(alert.value, bool):
        fields["value"] = float(alert.value)
    if isinstance(alert.threshold, int | float):
        fields["threshold"] = float(alert.threshold)
    if alert.ends_at_ns is not None:
        fields["ends_at_ns"] = float(alert.ends_at_ns)
    if alert.reading_id is not None:
        fields["trigger_id"] = alert.reading_id
    labels = {k: v for k, v in alert.labels.items() if k not in (*_OWN_TAGS, "device") and v}
    tags = {**labels, "rule": alert.rule, "severity": alert.severity, "kind": alert.kind}
    alert_id = f"alert:{alert.rule}:{alert.device}:{alert.starts_at_ns}:{alert.transition}:{alert.at_ns}"
    return Reading(alert.device, ALERTS_MEASUREMENT, alert.at_ns, fields, tags, alert_id, None, True)


def _rfc3339(ns: int | None) -> str | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def alert_json(alert: Alert) -> bytes:
    return orjson.dumps(
        {
            "rule": alert.rule,
            "device": alert.device,
            "severity": alert.severity,
            "kind": alert.kind,
            "labels": dict(alert.labels),
            "state": alert.state,
            "transition": alert.transition,
            "metric": alert.metric,
            "value": alert.value,
            "threshold": alert.threshold,
            "reading_id": alert.reading_id,
            "starts_at": _rfc3339(alert.starts_at_ns),
            "ends_at": _rfc3339(alert.ends_at_ns),
            "at": _rfc3339(alert.at_ns),
        }
    )
