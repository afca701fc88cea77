"""The gateway's native wire format, as far as the simulator needs it: topics, kinds and encodings.

This module is the only place that knows how a message looks on the wire, so the simulator never has to
import anything from the gateway to stay in step with it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, NamedTuple

import orjson

TOPIC_PREFIX: Final = "devices/"
TOPIC_SUFFIX: Final = "/telemetry"

# The gateway's default payload limit; "oversized" messages must exceed it.
MAX_PAYLOAD_BYTES: Final = 256 * 1024

VALID: Final = "valid"
DUPLICATE: Final = "duplicate"
MALFORMED_PREFIX: Final = "malformed:"

# Every way the simulator breaks a message; the names double as the expected rejection reasons.
MALFORMED_REASONS: Final = (
    "malformed_json",
    "non_finite",
    "empty_metrics",
    "wrong_type",
    "device_mismatch",
    "oversized",
    "future_ts",
)

_NS_PER_MS: Final = 1_000_000
_NS_PER_S: Final = 1_000_000_000


class Outgoing(NamedTuple):
    """One message to publish, with what the simulator meant it to be."""

    topic: str
    payload: bytes
    kind: str  # "valid", "duplicate" or "malformed:<reason>"

    @property
    def device(self) -> str:
        return device_of(self.topic)

    @property
    def malformed_reason(self) -> str | None:
        if self.kind.startswith(MALFORMED_PREFIX):
            return self.kind[len(MALFORMED_PREFIX) :]
        return None


def topic_for(device: str) -> str:
    return f"{TOPIC_PREFIX}{device}{TOPIC_SUFFIX}"


def device_of(topic: str) -> str:
    """The device named by a telemetry topic; ValueError for any other topic."""
    if not (topic.startswith(TOPIC_PREFIX) and topic.endswith(TOPIC_SUFFIX)):
        raise ValueError(f"not a telemetry topic: {topic!r}")
    device = topic[len(TOPIC_PREFIX) : -len(TOPIC_SUFFIX)]
    check_device_name(device)
    return device


def check_device_name(device: str) -> None:
    """Refuse names that cannot be one MQTT topic level (they would change the topic's shape)."""
    if not device or any(c in device for c in "/+#\x00"):
        raise ValueError(f"device name cannot be a topic level: {device!r}")


def malformed_kind(reason: str) -> str:
    if reason not in MALFORMED_REASONS:
        raise ValueError(f"unknown malformed reason: {reason!r}")
    return MALFORMED_PREFIX + reason


def encode(body: object) -> bytes:
    """Compact, key-order-preserving JSON, so the same body always gives the same bytes."""
    return orjson.dumps(body)


def rfc3339_ms(time_ns: int) -> str:
    """RFC 3339 in UTC with millisecond precision, e.g. "2026-11-27T10:15:00.250Z"."""
    seconds, rest_ns = divmod(time_ns, _NS_PER_S)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest_ns // _NS_PER_MS:03d}Z"


def epoch_ms(time_ns: int) -> int:
    return time_ns // _NS_PER_MS
