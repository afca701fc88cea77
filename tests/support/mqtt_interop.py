"""Helpers of the MQTT interop tests (tests/integration/test_mqtt_interop*.py): read what a broker sends through
gateway/mqtt's client, wait for our publishes to be confirmed, and the "nothing else was coming" marker."""

from __future__ import annotations

import time
from typing import Protocol

from device_sim.blast import blast, publish_packet
from gateway.mqtt import MqttClient, Publish
from tests.support.waits import wait_until


class Broker(Protocol):
    @property
    def url(self) -> str: ...


def drain(client: MqttClient, count: int, timeout: float = 10.0, ack: bool = True) -> list[Publish]:
    """Read until `count` publishes came (or the timeout), acknowledging each read's QoS 1 ones if `ack`."""
    got: list[Publish] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        batch = client.poll(0.1)
        got += batch
        if ack:
            client.ack([p.packet_id for p in batch if p.packet_id is not None])
            client.flush()
    return got


def confirmations(publisher: MqttClient, count: int, timeout: float = 5.0) -> list[tuple[int, int]]:
    """(packet id, reason code) of our publishes the broker confirmed, once `count` came (or the timeout)."""
    deadline = time.monotonic() + timeout
    confirmed: list[tuple[int, int]] = []
    while len(confirmed) < count and time.monotonic() < deadline:
        publisher.poll(0.1)
        confirmed += publisher.take_confirmed()
    return confirmed


def quiet_for(client: MqttClient, seconds: float) -> list[Publish]:
    """What arrives within `seconds` (acknowledged). Only where time itself is the scenario (keepalive pings, a
    broker's redelivery timer); "nothing more comes" is `before_marker`."""
    return drain(client, 1_000_000, timeout=seconds)


def publish_confirmed(publisher: MqttClient, messages: list[tuple[str, bytes]], retain: bool = False) -> None:
    """Publish (topic, payload) pairs at QoS 1 through our client and wait until the broker confirmed them all,
    each with a success reason code."""
    ids = [publisher.publish(topic, payload, retain=retain) for topic, payload in messages]
    confirmed = confirmations(publisher, len(ids), timeout=10)
    assert sorted(packet_id for packet_id, _ in confirmed) == sorted(ids)
    assert all(code < 0x80 for _, code in confirmed), confirmed


def before_marker(
    client: MqttClient, broker: Broker, topic: str = "t/marker", publisher: MqttClient | None = None
) -> list[bytes]:
    """Publish a marker on `topic` (which `client` subscribes to; through `publisher` where the broker wants TLS
    or a user name) and read until it arrives: the payloads that came before it. A broker sends a session's queued
    and redelivered messages before a newer one, so an empty list means nothing else was coming."""
    if publisher is None:
        stats = blast([publish_packet(topic, b"marker", 1)], broker.url, client_id=f"marker-{time.monotonic_ns()}")
        assert stats.acknowledged == 1
    else:
        marker = publisher.publish(topic, b"marker")
        confirmed: list[int] = []
        wait_until(lambda: confirmed.extend(i for i, _ in confirmations(publisher, 1, 0.1)) or marker in confirmed,
                   10, "the marker confirmed", lambda: confirmed)  # fmt: skip
    got: list[Publish] = []
    wait_until(lambda: got.extend(drain(client, 1, timeout=0.1)) or b"marker" in [p.payload for p in got], 10,
               "the marker message", lambda: [p.payload for p in got])  # fmt: skip
    return [p.payload for p in got[: [p.payload for p in got].index(b"marker")]]


def backlog(broker: Broker, count: int, topic: str = "t/dev-{i}/telemetry") -> list[bytes]:
    """Publish `count` QoS 1 messages with payloads b"m<i>" (device_sim's blast, MQTT 3.1.1); returns the payloads."""
    payloads = [f"m{i}".encode() for i in range(count)]
    packets = [publish_packet(topic.format(i=i % 10), p, i % 65535 + 1) for i, p in enumerate(payloads)]
    stats = blast(packets, broker.url, client_id=f"interop-publisher-{time.monotonic_ns()}")
    assert stats.acknowledged == count
    return payloads
