"""Raw-throughput publishing: pre-encoded MQTT 3.1.1 QoS 1 PUBLISH packets written in large chunks.

A paho client spends ~80 us of Python per QoS 1 message, so one process tops out near 12k msg/s and a
load test would measure the publisher. Here the packets are encoded once, up front, and written with one
`sendall` per few hundred; the broker, not the publisher, becomes the limit. Every message is still
acknowledged (PUBACK) before `blast` returns, so nothing is lost silently.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple

from device_sim.brokerurl import parse_broker_url
from device_sim.wire import Outgoing
from gateway.mqtt.packets import DISCONNECT, MQTT_311, encode_connect, encode_publish

_CHUNK = 500  # packets per sendall
_MAX_PACKET_ID = 65535


class BlastStats(NamedTuple):
    sent: int
    acknowledged: int
    elapsed_s: float

    @property
    def rate_per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0


def connect_packet(client_id: str, keepalive: int = 60) -> bytes:
    """MQTT 3.1.1 CONNECT with a clean session: blast keeps no state between runs."""
    return encode_connect(client_id, protocol=MQTT_311, keepalive=keepalive, clean_start=True)


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    return encode_publish(topic, payload, qos=1, packet_id=packet_id, protocol=MQTT_311)


def encode_all(outgoing: Sequence[Outgoing]) -> list[bytes]:
    return [publish_packet(m.topic, m.payload, i % _MAX_PACKET_ID + 1) for i, m in enumerate(outgoing)]


class _AckCounter(threading.Thread):
    """Reads the broker's packets (PUBACKs) and counts them."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self._sock = sock
        self.acked = 0
        self.changed = threading.Condition()
        self.error: str | None = None

    def run(self) -> None:
        buffer = b""
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except OSError as exc:
                self.error = str(exc)
                data = b""
            if not data:
                with self.changed:
                    self.error = self.error or "connection closed by broker"
                    self.changed.notify_all()
                return
            buffer += data
            count = 0
            # PUBACK is 4 bytes (0x40 0x02 id id); nothing else arrives on a publish-only connection.
            while len(buffer) >= 4:
                if buffer[0] >> 4 == 4:
                    count += 1
                buffer = buffer[2 + buffer[1] :]
            with self.changed:
                self.acked += count
                self.changed.notify_all()


def blast(packets: Sequence[bytes], url: str, client_id: str = "device-sim-blast", window: int = 20_000) -> BlastStats:
    """Send pre-encoded PUBLISH packets as fast as the broker takes them; return once all are PUBACKed."""
    address = parse_broker_url(url)
    window = min(window, _MAX_PACKET_ID - _CHUNK)  # packet ids of unacknowledged messages must stay unique
    sock = socket.create_connection((address.host, address.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(client_id))
    connack = sock.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        raise ConnectionError(f"broker refused the connection: {connack!r}")
    sock.settimeout(None)
    counter = _AckCounter(sock)
    counter.start()
    start = time.perf_counter()
    for first in range(0, len(packets), _CHUNK):
        with counter.changed:
            while first - counter.acked > window - _CHUNK and counter.error is None:
                counter.changed.wait(1)
        if counter.error:
            raise ConnectionError(counter.error)
        sock.sendall(b"".join(packets[first : first + _CHUNK]))
    with counter.changed:
        while counter.acked < len(packets) and counter.error is None:
            counter.changed.wait(1)
    elapsed = time.perf_counter() - start
    sock.sendall(DISCONNECT)
    sock.close()
    return BlastStats(len(packets), counter.acked, elapsed)
