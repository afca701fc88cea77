"""One MQTT connection on asyncio, as a device keeps it: a persistent session, QoS 0 or 1 publishing with a
bounded window, unacknowledged messages resent (DUP) after a reconnect, keepalive pings, planned drops.

An `asyncio.Protocol`, not streams or a task per connection: 10,000 of these cost a few kB each and no
scheduling until bytes arrive. Writes made in one turn of the event loop go out in one `write`. Packets are
the gateway's own (`gateway.mqtt.packets`); counters are shared by every connection of a run (`LinkStats`, one
event loop, no locks).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import cast

from device_sim.brokerurl import BrokerAddress
from gateway.mqtt import packets
from gateway.mqtt.errors import ProtocolError
from gateway.mqtt.reason_codes import is_failure, reason_name

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 5.0
CONNECT_TIMEOUT_S = 10.0
_MAX_PACKET_ID = 65535


@dataclass
class LinkStats:
    """Counters over every connection of a run."""

    published: int = 0  # handed to a connection
    acked: int = 0  # QoS 1: PUBACK with success; QoS 0: written to the socket
    refused: int = 0  # PUBACK with a failure reason code
    resent: int = 0  # written again (DUP) after a reconnect
    connected: int = 0  # connections up right now
    peak_connected: int = 0
    connects: int = 0  # successful CONNACKs, first ones and reconnects
    drops: int = 0  # connections lost, planned or not
    failure: str | None = None  # why the run cannot go on (the broker refused us)


class Connection(asyncio.Protocol):
    """A device's (or a group of devices') connection. `publish` never blocks: while the link is down or the
    window is full, messages wait in order in a local queue, as a device buffers them."""

    def __init__(
        self,
        address: BrokerAddress,
        client_id: str,
        stats: LinkStats,
        *,
        version: int = packets.MQTT_5,
        qos: int = 1,
        keepalive_s: int = 60,
        session_expiry_s: int = 3600,
        window: int = 1000,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1, got {qos}")
        self.client_id = client_id
        self._address = address
        self._stats = stats
        self._version = version
        self._qos = qos
        self._keepalive_s = keepalive_s
        self._session_expiry_s = session_expiry_s
        self._window = window
        self._limit = window
        self._ssl = ssl_context
        self._transport: asyncio.Transport | None = None
        self._rx = bytearray()
        self._out: list[bytes] = []  # written at the end of this turn of the loop
        self._queue: deque[tuple[str, bytes]] = deque()  # not yet written
        self._inflight: dict[int, bytes] = {}  # packet id -> PUBLISH packet, until PUBACKed
        self._next_id = 0
        self.up = False
        self._closing = False  # close() called: no reconnects
        self._draining = False  # a graceful drop waits for the window to empty
        self._down_until = 0.0  # loop time before which a planned drop keeps the link down
        self._connect_task: asyncio.Task[None] | None = None
        self._last_write = 0.0
        self._idle: asyncio.Event = asyncio.Event()
        self._idle.set()

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background, retrying with backoff until up (or until the broker refuses us)."""
        if self._connect_task is None or self._connect_task.done():
            self._connect_task = asyncio.get_running_loop().create_task(self._connect_loop())

    async def _connect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        delay = RECONNECT_MIN_S
        while not self._closing and not self.up:
            wait = self._down_until - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: self, self._address.host, self._address.port, ssl=self._ssl),
                    CONNECT_TIMEOUT_S,
                )
                return  # CONNECT is written in connection_made; CONNACK decides the rest
            except (OSError, TimeoutError):
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)

    def drop(self, down_s: float, *, abrupt: bool) -> None:
        """A planned outage: lose the link for `down_s`, then reconnect to the same session.

        Abrupt: the socket is cut (PUBLISHes in flight are resent with DUP after the reconnect, so the broker
        may deliver them twice). Graceful: wait for every PUBACK, then DISCONNECT, so nothing is resent.
        """
        self._down_until = asyncio.get_running_loop().time() + down_s
        if self._transport is None:
            return
        if abrupt:
            self._flush()
            self._transport.abort()
        else:
            self._draining = True
            self._maybe_finish_drain()

    async def close(self, timeout_s: float) -> int:
        """Wait (up to timeout_s) for every queued message to be acknowledged, DISCONNECT; return how many
        messages were never acknowledged."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait_idle(), timeout_s)
        self._closing = True
        if self._connect_task is not None:
            self._connect_task.cancel()
        if self.up:  # a planned end, not a drop
            self.up = False
            self._stats.connected -= 1
        if self._transport is not None:
            self._out.append(packets.DISCONNECT)
            self._flush()
            self._transport.close()
        return len(self._queue) + len(self._inflight)

    async def wait_idle(self) -> None:
        """Until nothing is queued or waiting for a PUBACK."""
        while (self._queue or self._inflight) and not self._closing:
            self._idle.clear()
            await self._idle.wait()

    @property
    def backlog(self) -> int:
        return len(self._queue) + len(self._inflight)

    # -- publishing ----------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes) -> None:
        self._stats.published += 1
        if self.up and not self._draining and not self._queue and len(self._inflight) < self._limit:
            self._write_publish(topic, payload)
        else:
            self._queue.append((topic, payload))
            self._idle.clear()

    def ping_if_idle(self, now: float) -> None:
        """Keepalive: a PINGREQ when nothing was written for half the keepalive interval."""
        if self.up and now - self._last_write >= self._keepalive_s / 2:
            self._write(packets.PINGREQ)

    def _write_publish(self, topic: str, payload: bytes) -> None:
        if self._qos == 0:
            self._write(packets.encode_publish(topic, payload, qos=0, protocol=self._version))
            self._stats.acked += 1
            return
        packet_id = self._free_packet_id()
        packet = packets.encode_publish(topic, payload, qos=1, packet_id=packet_id, protocol=self._version)
        self._inflight[packet_id] = packet
        self._idle.clear()
        self._write(packet)

    def _free_packet_id(self) -> int:
        while True:
            self._next_id = self._next_id % _MAX_PACKET_ID + 1
            if self._next_id not in self._inflight:
                return self._next_id

    def _write(self, packet: bytes) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(packet)

    def _flush(self) -> None:
        if self._out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(self._out) if len(self._out) > 1 else self._out[0])
            self._last_write = time.monotonic()
        self._out.clear()

    def _pump(self) -> None:
        """Move queued messages into the window while there is room."""
        queue = self._queue
        while queue and len(self._inflight) < self._limit and self.up and not self._draining:
            topic, payload = queue.popleft()
            self._write_publish(topic, payload)
        if not queue and not self._inflight:
            self._idle.set()

    def _maybe_finish_drain(self) -> None:
        if self._draining and not self._inflight and self._transport is not None:
            self._out.append(packets.DISCONNECT)
            self._flush()
            self._transport.close()

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self._rx.clear()
        self._out.clear()
        address = self._address
        password = address.password if address.username is not None else None  # a password needs a user name
        self._write(
            packets.encode_connect(
                self.client_id,
                protocol=self._version,
                keepalive=self._keepalive_s,
                clean_start=False,  # the device's session outlives its connections
                session_expiry=self._session_expiry_s or None,  # 0: no property, the broker's default
                username=address.username,
                password=password.encode() if password is not None else None,
            )
        )

    def data_received(self, data: bytes) -> None:
        rx = self._rx
        buffer: bytes | bytearray = data
        if rx:  # the rest of a packet that came in pieces
            rx += data
            buffer = rx
        try:
            received, used = packets.decode_packets(buffer, self._version)
        except ProtocolError as exc:
            self._fail(f"broker sent garbage: {exc}")
            return
        if buffer is rx:
            del rx[:used]
        elif used < len(data):
            rx += data[used:]
        acked = False
        for packet in received:
            if type(packet) is packets.PubAck:
                if self._inflight.pop(packet.packet_id, None) is not None:
                    if is_failure(packet.reason_code, self._version):
                        self._stats.refused += 1
                    else:
                        self._stats.acked += 1
                    acked = True
            elif type(packet) is packets.ConnAck:
                self._on_connack(packet)
            # PINGRESP, DISCONNECT and anything else: nothing to do (the broker closes the socket after DISCONNECT)
        if acked:
            self._pump()
            self._maybe_finish_drain()

    def _on_connack(self, connack: packets.ConnAck) -> None:
        code = connack.reason_code
        if is_failure(code, self._version, connack=True):
            name = reason_name(code, self._version, connack=True)
            kind = "reason" if self._version == packets.MQTT_5 else "return"
            self._fail(f"broker refused client {self.client_id!r}: {name} ({kind} code {code:#04x})")
            return
        self._limit = min(self._window, connack.receive_maximum)
        self.up = True
        self._draining = False
        self._stats.connected += 1
        self._stats.peak_connected = max(self._stats.peak_connected, self._stats.connected)
        self._stats.connects += 1
        # Every PUBLISH the broker did not acknowledge goes again, in order, marked DUP (even if the broker lost
        # the session: at-least-once).
        for packet in self._inflight.values():
            self._write(packets.with_dup(packet))
            self._stats.resent += 1
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._out.clear()
        if self.up:
            self._stats.connected -= 1
            self._stats.drops += 1
        self.up = False
        self._draining = False
        if not self._closing and self._stats.failure is None:
            self.start()

    def _fail(self, reason: str) -> None:
        self._stats.failure = self._stats.failure or reason
        self._closing = True
        if self._transport is not None:
            self._transport.abort()
        self._idle.set()
