"""Checks that go beyond a format's schema: sizes, device ids, clock skew, names safe to store, metric rules.

One Validator a mapping: the top-level `validation` section with the mapping's own overrides applied.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

from gateway.config.schema import RESERVED_MEASUREMENTS, MetricRule, ValidationConfig
from gateway.errors import PayloadRejected
from gateway.model import FieldValue, Reading
from gateway.reasons import Reason

# Tag names that already mean something, so a payload cannot send them (the stores would disagree on the reading).
RESERVED_TAGS = {
    "device": "the gateway sets it from the topic",
    "__name__": "VictoriaMetrics takes it for the metric name and drops the tag",
    "time": "InfluxDB refuses every point with a time tag",
}
MAX_NAME_LENGTH = 256
# The earliest device time accepted: 2000-01-01T00:00:00Z. Earlier stamps are a clock that was never set (0, or
# seconds since boot), and the stores disagree on them: VictoriaMetrics replaces a 0 timestamp with the time of the
# write and silently drops times before 1970, where SQLite and InfluxDB store them. The latest is InfluxDB's last valid
# timestamp (SQLite's INTEGER is 64-bit too): one reading beyond it would fail a whole batch at the sink.
MIN_TIME_NS = 946_684_800 * 1_000_000_000
MAX_TIME_NS = 9_223_372_036_854_775_806
_RULE_CACHE_MAX = 10_000
_TYPE_OF = {float: "number", int: "number", bool: "boolean", str: "string"}


class Validator:
    def __init__(self, config: ValidationConfig) -> None:
        self.config = config
        self.max_payload_bytes = config.max_payload_bytes
        self._device_re = re.compile(config.device_id_pattern)
        self._max_future_ns = int(config.max_future_s * 1e9)
        self._max_late_ns = int(config.max_late_s * 1e9) if config.max_late_s is not None else None
        self._rules = config.metrics
        self._rule_for: dict[str, MetricRule | None] = {}  # field name -> first matching rule, memoised
        self._checked_metrics: dict[str, MetricRule | None] = {}  # valid metric names -> their rule
        self._checked_tags: set[str] = set()  # valid tag names

    def check_payload_size(self, size: int) -> None:
        if size > self.max_payload_bytes:
            raise PayloadRejected(
                Reason.PAYLOAD_TOO_LARGE,
                f"{size} bytes, more than validation.max_payload_bytes={self.max_payload_bytes}",
            )

    def check_device(self, device: str) -> None:
        if len(device) > self.config.device_id_max_length:
            raise PayloadRejected(
                Reason.INVALID_DEVICE_ID,
                f"device id of {len(device)} characters, more than device_id_max_length="
                f"{self.config.device_id_max_length}",
            )
        # fullmatch: with match(), `$` also matches before a trailing newline, so 'dev\n' would pass. Unprintable
        # characters are refused whatever the pattern allows: a newline would split a line-protocol point.
        if self._device_re.fullmatch(device) is None or not device.isprintable():
            raise PayloadRejected(
                Reason.INVALID_DEVICE_ID, f"device id {device[:128]!r} does not match validation.device_id_pattern"
            )

    def check_field_count(self, readings: list[Reading]) -> None:
        count = len(readings[0].fields) if len(readings) == 1 else sum(len(r.fields) for r in readings)
        if count > self.config.max_fields:
            raise PayloadRejected(
                Reason.TOO_MANY_FIELDS, f"{count} fields in one message, more than max_fields={self.config.max_fields}"
            )

    def expected_unit(self, field: str) -> str | None:
        rule = self._rule(field)
        return rule.unit if rule is not None else None

    def check_reading(self, reading: Reading, now_ns: int) -> bool:
        """Raise PayloadRejected, or return whether the reading is late (older than max_late_s, accepted)."""
        # First, so that the float arithmetic below never sees an unbounded integer (OverflowError).
        if not MIN_TIME_NS <= reading.time_ns <= MAX_TIME_NS:
            raise PayloadRejected(
                Reason.TIMESTAMP_OUT_OF_RANGE,
                f"reading {reading.reading_id[:128]!r} is stamped outside 2000-01-01..2262-04-11 (before 2000: a "
                "device clock that was never set?)",
            )
        if reading.time_ns - now_ns > self._max_future_ns:
            ahead = (reading.time_ns - now_ns) / 1e9
            raise PayloadRejected(
                Reason.TIMESTAMP_IN_FUTURE,
                f"reading {reading.reading_id[:128]!r} is {ahead:.0f} s ahead of the gateway's clock",
            )
        # A reading stamped with the receive time is as old as the gateway's backlog, not late from the device.
        late = (
            self._max_late_ns is not None and reading.time_from_device and now_ns - reading.time_ns > self._max_late_ns
        )
        if late and self.config.late == "reject":
            behind = (now_ns - reading.time_ns) / 1e9
            raise PayloadRejected(
                Reason.TIMESTAMP_TOO_OLD,
                f"reading {reading.reading_id[:128]!r} is {behind:.0f} s old, more than max_late_s="
                f"{self.config.max_late_s:g}",
            )
        if reading.measurement in RESERVED_MEASUREMENTS:  # line protocol names its own measurement
            raise PayloadRejected(
                Reason.RESERVED_MEASUREMENT, f"measurement {reading.measurement!r} is written by the gateway itself"
            )
        # Devices send the same names in every message: a name is checked once, then only looked up.
        checked_metrics = self._checked_metrics
        for name, value in reading.fields.items():
            try:
                rule = checked_metrics[name]
            except KeyError:
                rule = self._check_metric_name(name)
            if rule is not None:
                _check_rule(rule, name, value)
        checked_tags = self._checked_tags
        for name, value in reading.tags.items():
            if name not in checked_tags:
                self._check_tag_name(name)
            if not value or not value.isprintable():
                raise PayloadRejected(Reason.INVALID_NAME, f"tag {name[:64]!r} has an empty or unprintable value")
        for field_value in reading.fields.values():
            if type(field_value) is str and "\n" in field_value:
                raise PayloadRejected(Reason.INVALID_VALUE, "string values cannot contain newlines")
        return late

    def _check_metric_name(self, name: str) -> MetricRule | None:
        """Check a metric name not seen before; remember it, with the first rule that matches it."""
        _check_name(name, "metric")
        if '"' in name:
            # Line protocol cannot carry it to VictoriaMetrics: unescaped, the quote opens a string and the
            # point is corrupted; escaped (as InfluxDB wants), VictoriaMetrics keeps the backslash.
            raise PayloadRejected(Reason.INVALID_NAME, f"metric name {name[:64]!r} contains a double quote")
        rule = self._rule(name) if self._rules else None
        if len(self._checked_metrics) >= _RULE_CACHE_MAX:  # names are device-controlled: keep the memo bounded
            self._checked_metrics.clear()
        self._checked_metrics[name] = rule
        return rule

    def _check_tag_name(self, name: str) -> None:
        _check_name(name, "tag")
        if name in RESERVED_TAGS:
            raise PayloadRejected(Reason.RESERVED_TAG, f"tag {name!r} is reserved: {RESERVED_TAGS[name]}")
        if len(self._checked_tags) >= _RULE_CACHE_MAX:
            self._checked_tags.clear()
        self._checked_tags.add(name)

    def _rule(self, field: str) -> MetricRule | None:
        try:
            return self._rule_for[field]
        except KeyError:
            pass
        rule = next((r for r in self._rules if fnmatchcase(field, r.name)), None)
        if len(self._rule_for) >= _RULE_CACHE_MAX:  # names are device-controlled: keep the memo bounded
            self._rule_for.clear()
        self._rule_for[field] = rule
        return rule


def _check_rule(rule: MetricRule, name: str, value: FieldValue) -> None:
    kind = _TYPE_OF[type(value)]
    if rule.type is not None and kind != rule.type:
        raise PayloadRejected(
            Reason.INVALID_TYPE, f"{name[:128]!r} is a {kind}, the rule {rule.name!r} wants a {rule.type}"
        )
    if isinstance(value, bool | str):
        return
    if (rule.min is not None and value < rule.min) or (rule.max is not None and value > rule.max):
        raise PayloadRejected(
            Reason.OUT_OF_RANGE, f"{name[:128]!r} = {value:g} is outside [{_bound(rule.min)}, {_bound(rule.max)}]"
        )


def _bound(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _check_name(name: str, kind: str) -> None:
    # Printable excludes newlines and control characters, which line protocol cannot carry in names.
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise PayloadRejected(Reason.INVALID_NAME, f"{kind} name {name[:64]!r} is empty, too long or unprintable")
