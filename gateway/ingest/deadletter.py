"""Dead-letter records: what was refused, where it came from, and why, as JSON for `gateway/deadletter/...`."""

from __future__ import annotations

import base64
import zlib

import orjson

from gateway.ingest import topics
from gateway.model import Reading, Rejection
from gateway.rfc3339 import rfc3339

UNKNOWN_DEVICE = topics.UNKNOWN_LEVEL
# Oversized payloads are what gets them rejected; a record repeating 10 MB would only move the problem.
MAX_PAYLOAD_IN_RECORD = 64 * 1024


def topic_for(template: str, rejection: Rejection) -> str:
    """A device id that cannot be a topic level (or makes the topic too long) is named `_unknown`."""
    return topics.fill_template(template, {"device": rejection.device or ""})


def reading_payload(reading: Reading) -> bytes:
    """A reading the store refused, as a native-format message, so it can be replayed."""
    return orjson.dumps(
        {"id": reading.reading_id, "ts": reading.time_ns, "metrics": reading.fields, "tags": reading.tags}
    )


def correlation_id(rejection: Rejection) -> str:
    """The id a rejected message is known by in logs, dead-letter records and the journal (it has no reading
    id): receive time and a checksum of topic and payload, so a redelivered copy gets the same id."""
    checksum = zlib.crc32(rejection.payload, zlib.crc32(rejection.topic.encode()))
    return f"rej-{rejection.received_at_ns:x}-{checksum:08x}"


def record(rejection: Rejection) -> bytes:
    payload = rejection.payload
    truncated = len(payload) > MAX_PAYLOAD_IN_RECORD
    payload = payload[:MAX_PAYLOAD_IN_RECORD]
    body: dict[str, object] = {
        "topic": rejection.topic,
        "device": rejection.device,
        "correlation_id": correlation_id(rejection),
        "reason": rejection.reason,
        "detail": rejection.detail,
        "received_at": rfc3339(rejection.received_at_ns),
        "payload_bytes": len(rejection.payload),
    }
    try:
        body["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        body["payload_base64"] = base64.b64encode(payload).decode()
    if truncated:
        body["payload_truncated"] = True
    return orjson.dumps(body)
