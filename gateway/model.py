"""Immutable values that travel between the pipeline's stages.

NamedTuples rather than frozen dataclasses: they are just as immutable and typed, and they are built
several times cheaper, which matters at tens of thousands of readings a second.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple

FieldValue = float | bool | str
# A NamedTuple's generated constructor is a Python-level function (~0.4 us); the hottest paths, which give every
# field in order, build the same value with tuple.__new__(Type, (fields...)) in C instead.
new_tuple = tuple.__new__
# What a source needs to acknowledge one message; opaque to everything but the source that made it.
AckToken = Hashable


class RawMessage(NamedTuple):
    """One message as the source delivered it; the only place raw bytes live besides formats/."""

    topic: str
    payload: bytes
    qos: int
    received_at_ns: int
    ack_token: AckToken | None = None  # None when the message needs no acknowledgement (QoS 0)
    dup: bool = False  # MQTT's DUP flag: the broker sent this message before (same packet id), unacknowledged
    # A retained message sent again because the gateway subscribed again on a resumed session: MQTT 3.1.1 has
    # no Retain Handling option, so the broker repeats every retained message on each reconnect.
    stale_retained: bool = False
    # The source's id for this delivery, which a redelivery of it repeats and a later message may reuse (MQTT: the
    # packet id); None where a redelivery cannot be told (QoS 0). gateway/ingest/dedup.py keys deliveries by it.
    delivery_slot: int | None = None


class Reading(NamedTuple):
    """One validated point: a device's fields at one instant."""

    device: str
    measurement: str
    time_ns: int
    fields: dict[str, FieldValue]
    tags: dict[str, str]
    reading_id: str  # the device's message id, or one the gateway derived; follows the reading everywhere
    seq: int | None = None
    time_from_device: bool = True


class Rejection(NamedTuple):
    """Why a message was refused; becomes a dead-letter record and a counter."""

    reason: str  # stable code, e.g. "malformed_json"
    detail: str  # human explanation
    topic: str
    payload: bytes
    received_at_ns: int
    device: str | None = None
    # Set only for a reading a store refused: `payload` is then that reading (deadletter.reading_payload),
    # which `gateway deadletter replay` decodes into this measurement instead of going through the mappings.
    measurement: str | None = None


class OutgoingMessage(NamedTuple):
    """A message the gateway publishes itself (a dead-letter record, an alert notification), at QoS 1. The journal
    holds it from the commit that made it until the source confirms it: `id` is the journal's, 0 before."""

    topic: str
    payload: bytes
    retain: bool = False
    id: int = 0
