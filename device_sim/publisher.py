"""Publish a fleet's messages to a broker over one or more connections, and report how it went.

Each device's messages all go over the same connection, in stream order, so per-device order survives
any number of connections. Messages are handed out from one thread in stream order, paced by one
Pacer, so `rate` is the total over all connections.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

from device_sim.brokerurl import parse_broker_url
from device_sim.link import Link, LinkError
from device_sim.pacing import Pacer
from device_sim.wire import Outgoing

DEFAULT_WINDOW = 1000  # unacknowledged messages per connection: enough to keep a local broker busy


class PublishStats(NamedTuple):
    """`sent` counts messages the broker acknowledged (QoS 0: written); every other one is an error."""

    sent: int
    elapsed_s: float
    rate_per_s: float
    errors: int
    reconnects: int = 0
    failure: str | None = None  # why publishing stopped early, if it did


def publish(
    outgoing: Sequence[Outgoing],
    url: str = "mqtt://127.0.0.1:1883",
    *,
    qos: int = 1,
    connections: int = 1,
    rate: float = 0,
    protocol: int = 5,
    client_id_prefix: str = "device-sim",
    username: str | None = None,
    password: str | None = None,
    window: int = DEFAULT_WINDOW,
    connect_timeout_s: float = 10.0,
    stall_timeout_s: float = 60.0,
) -> PublishStats:
    """Publish every message and wait until all are acknowledged (QoS 1/2) or written (QoS 0).

    `rate` is messages per second over all connections (0: as fast as possible). `protocol` is 5,
    4 (3.1.1) or 3 (3.1). Raises LinkError if a broker cannot be reached within connect_timeout_s;
    if the broker stops acknowledging for stall_timeout_s, publishing stops and the rest count as errors.
    """
    if connections < 1:
        raise ValueError(f"connections must be at least 1, got {connections}")
    address = parse_broker_url(url)
    if username is not None:
        address = address._replace(username=username, password=password)
    links = [
        Link(
            address,
            f"{client_id_prefix}-{n}",
            qos=qos,
            protocol=protocol,
            window=window,
            stall_timeout_s=stall_timeout_s,
        )
        for n in range(connections)
    ]
    route = _route_by_topic(outgoing, connections)
    pacer = Pacer(rate)
    try:
        for link in links:
            link.start()
        for link in links:
            link.wait_connected(connect_timeout_s)
        started = time.monotonic()
        failure = None
        try:
            for message, n in zip(outgoing, route, strict=True):
                pacer.wait()
                links[n].send(message.topic, message.payload)
            for link in links:
                link.drain()
        except LinkError as exc:
            failure = str(exc)  # whatever was not confirmed is counted as an error below
        elapsed = time.monotonic() - started
    finally:
        for link in links:
            link.close()
    sent = sum(link.confirmed for link in links)
    return PublishStats(
        sent=sent,
        elapsed_s=elapsed,
        rate_per_s=sent / elapsed if elapsed > 0 else 0.0,
        errors=len(outgoing) - sent,
        reconnects=sum(link.reconnects for link in links),
        failure=failure,
    )


def _route_by_topic(outgoing: Sequence[Outgoing], connections: int) -> list[int]:
    """The connection for each message: topics are dealt round-robin in order of first appearance."""
    assigned: dict[str, int] = {}
    return [assigned.setdefault(m.topic, len(assigned) % connections) for m in outgoing]
