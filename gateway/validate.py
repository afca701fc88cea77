"""Checks that go beyond a format's schema: names safe to store, device ids, clock skew."""

from __future__ import annotations

import re

from gateway.config import ValidationConfig
from gateway.errors import PayloadRejected
from gateway.model import Reading

# `device` is the tag the gateway sets from the topic; a payload must not be able to overwrite it.
RESERVED_TAGS = frozenset({"device"})
MAX_NAME_LENGTH = 256
# InfluxDB's valid timestamps; SQLite's INTEGER is 64-bit too. One reading outside this range would fail a
# whole batch at the sink (HTTP 400, or an OverflowError from sqlite3), so it is rejected here instead.
MIN_TIME_NS = -9_223_372_036_854_775_806
MAX_TIME_NS = 9_223_372_036_854_775_806


class Validator:
    def __init__(self, config: ValidationConfig) -> None:
        self.max_payload_bytes = config.max_payload_bytes
        self._device_re = re.compile(config.device_id_pattern)
        self._max_future_ns = int(config.max_future_s * 1e9)

    def check_payload_size(self, size: int) -> None:
        if size > self.max_payload_bytes:
            raise PayloadRejected(
                "payload_too_large",
                f"{size} bytes, more than validation.max_payload_bytes={self.max_payload_bytes}",
            )

    def check_device(self, device: str) -> None:
        # fullmatch: with match(), `$` also matches before a trailing newline, so 'dev\n' would pass.
        if self._device_re.fullmatch(device) is None:
            raise PayloadRejected(
                "invalid_device_id", f"device id {device[:128]!r} does not match validation.device_id_pattern"
            )

    def check_reading(self, reading: Reading, now_ns: int) -> None:
        # First, so that the float arithmetic below never sees an unbounded integer (OverflowError).
        if not MIN_TIME_NS <= reading.time_ns <= MAX_TIME_NS:
            raise PayloadRejected(
                "timestamp_out_of_range",
                f"reading {reading.reading_id[:128]!r} is stamped outside 1677-09-21..2262-04-11 (64-bit ns)",
            )
        if reading.time_ns - now_ns > self._max_future_ns:
            ahead = (reading.time_ns - now_ns) / 1e9
            raise PayloadRejected(
                "timestamp_in_future",
                f"reading {reading.reading_id!r} is {ahead:.0f} s ahead of the gateway's clock",
            )
        for name in reading.fields:
            _check_name(name, "metric")
        for name, value in reading.tags.items():
            _check_name(name, "tag")
            if name in RESERVED_TAGS:
                raise PayloadRejected("reserved_tag", f"tag {name!r} is set by the gateway and cannot be sent")
            if not value or not value.isprintable():
                raise PayloadRejected("invalid_name", f"tag {name!r} has an empty or unprintable value")
        for field_value in reading.fields.values():
            if type(field_value) is str and "\n" in field_value:
                raise PayloadRejected("invalid_value", "string values cannot contain newlines")


def _check_name(name: str, kind: str) -> None:
    # Printable excludes newlines and control characters, which line protocol cannot carry in names.
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise PayloadRejected("invalid_name", f"{kind} name {name[:64]!r} is empty, too long or unprintable")
