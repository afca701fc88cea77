"""An alert as the gateway writes it out: a point of measurement `alerts` for the sinks (and back, for the webhook,
which reads the points from the journal), and the one JSON document of an alert, which MQTT notifications, the
webhook and `gateway rules test --output jsonl` carry."""

from __future__ import annotations

import math
from typing import Any, get_args

from gateway.alerts.alert import Alert, Transition
from gateway.config.mappings import ALERTS_MEASUREMENT
from gateway.model import FieldValue, Reading
from gateway.rfc3339 import rfc3339

_OWN_TAGS = ("rule", "severity", "kind")
_TRANSITIONS: frozenset[str] = frozenset(get_args(Transition))
_NS_PER_MS = 1_000_000


def alert_id_of(alert: Alert) -> str:
    """Stable across retries and restarts: a receiver deduplicates on it."""
    return f"alert:{alert.rule}:{alert.device}:{alert.starts_at_ns}:{alert.transition}:{alert.at_ns}"


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
    return Reading(alert.device, ALERTS_MEASUREMENT, alert.at_ns, fields, tags, alert_id_of(alert), None, True)


def alert_from_point(point: Reading) -> Alert | None:
    """The alert a point of measurement `alerts` was written for, as far as the point tells: times to the
    millisecond (a float field holds no more), value and threshold only when numbers, no metric. None for a point
    that `alert_point` did not write."""
    fields, tags = point.fields, point.tags
    rule, severity, kind = tags.get("rule"), tags.get("severity"), tags.get("kind")
    transition = fields.get("transition")
    starts_at_ns = _milliseconds(fields.get("starts_at_ns"))
    if rule is None or severity is None or kind is None or starts_at_ns is None or transition not in _TRANSITIONS:
        return None
    trigger = fields.get("trigger_id")
    return Alert(
        rule=rule,
        device=point.device,
        severity=severity,
        labels={k: v for k, v in tags.items() if k not in _OWN_TAGS},
        transition=transition,  # type: ignore[arg-type]  # checked against _TRANSITIONS above
        value=_number(fields.get("value")),
        threshold=_number(fields.get("threshold")),
        reading_id=trigger if isinstance(trigger, str) else None,
        starts_at_ns=starts_at_ns,
        ends_at_ns=_milliseconds(fields.get("ends_at_ns")),
        at_ns=point.time_ns // _NS_PER_MS * _NS_PER_MS,
        kind=kind,
    )


def alert_document(alert: Alert, alert_id: str | None = None) -> dict[str, Any]:
    """The one JSON form of an alert. Times are RFC 3339 (UTC; null when unset or out of range), a number that is
    not finite is null, `metric` is there when known. `alert_id` defaults to `alert_id_of(alert)`."""
    document: dict[str, Any] = {
        "rule": alert.rule,
        "device": alert.device,
        "severity": alert.severity,
        "kind": alert.kind,
        "labels": dict(alert.labels),
        "state": alert.state,
        "transition": alert.transition,
        "value": _finite(alert.value),
        "threshold": _finite(alert.threshold),
        "reading_id": alert.reading_id,
        "alert_id": alert_id_of(alert) if alert_id is None else alert_id,
        "starts_at": _time(alert.starts_at_ns),
        "ends_at": _time(alert.ends_at_ns),
        "at": _time(alert.at_ns),
    }
    if alert.metric is not None:
        document["metric"] = alert.metric
    return document


def _finite(value: FieldValue | None) -> FieldValue | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _number(value: FieldValue | None) -> float | None:
    """A finite number or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _milliseconds(ns: FieldValue | None) -> int | None:
    number = _number(ns)
    return None if number is None else int(number) // _NS_PER_MS * _NS_PER_MS


def _time(ns: int | None) -> str | None:
    if ns is None:
        return None
    try:
        return rfc3339(ns)
    except (OverflowError, OSError, ValueError):  # beyond what a datetime holds
        return None
