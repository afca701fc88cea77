"""A blocking, single-threaded MQTT 3.1.1 / 5 client for one session: the gateway's ingest connection.

Every call happens on one thread. Reads never block: `read_available()` takes what one read of the socket
gave; writes are buffered and `flush()` sends what the socket takes (`want_write` says something is left).
A caller that waits on `fileno()` with select(), calls `service()` for the keepalive and `flush()` when the
socket is writable, needs nothing else; `poll()` does exactly that once.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

from gateway.mqtt import packets as wire
from gateway.mqtt.errors import ConnectionClosed, ConnectionRefused, MqttError, ProtocolError, SubscribeRefused
from gateway.mqtt.inflight import OutgoingPublishes, PacketIds
from gateway.mqtt.packets import MQTT_5, ConnAck, Packet, Publish, RetainHandling, SubAck, UnsubAck
from gateway.mqtt.reason_codes import is_failure, reason_name
from gateway.mqtt.transport import Connection, TlsOptions, open_connection

_MALFORMED_PACKET = 0x81

ConfirmCallback = Callable[[int, int], None]  # (packet id, PUBACK reason code: below 0x80 is success)


class MqttClient:
    """One MQTT session over one connection at a time; `connect()` again after ConnectionClosed resumes it.

    Our QoS 1 publishes survive reconnects (sent again with DUP, as MQTT requires on a resumed session, and
    as new messages on a new one); the broker's unacknowledged publishes are the broker's to send again.
    """

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        client_id: str,
        protocol: int = MQTT_5,
        keepalive: int = 60,
        clean_start: bool = False,
        username: str | None = None,
        password: str | bytes | None = None,
        session_expiry: int | None = None,
        receive_maximum: int | None = None,
        max_packet_size: int = wire.MAX_PACKET_SIZE,
        tls: TlsOptions | None = None,
        timeout: float = 10.0,
        on_confirmed: ConfirmCallback | None = None,
        open_socket: Callable[[], socket.socket] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`session_expiry` and `receive_maximum` are MQTT 5 CONNECT properties (left out when None);
        `max_packet_size` bounds what we accept (announced to an MQTT 5 broker); `timeout` bounds connecting and
        waiting for SUBACK / UNSUBACK; `open_socket` replaces the TCP/TLS connection (tests)."""
        self.host, self.port, self.protocol = host, port, protocol
        self._connect_packet = wire.encode_connect(
            client_id,
            protocol=protocol,
            keepalive=keepalive,
            clean_start=clean_start,
            username=username,
            password=password.encode() if isinstance(password, str) else password,
            session_expiry=session_expiry,
            receive_maximum=receive_maximum,
            maximum_packet_size=max_packet_size if max_packet_size < wire.MAX_PACKET_SIZE else None,
        )
        self._keepalive_asked = keepalive
        self._max_packet_size = max_packet_size
        self._timeout = timeout
        self._on_confirmed = on_confirmed
        self._open_socket = open_socket or (lambda: open_connection(host, port, tls, timeout))
        self._clock = clock
        self._ids = PacketIds()
        self._outgoing = OutgoingPublishes(self._ids)
        self._confirmed: list[tuple[int, int]] = []
        self._link: Connection | None = None
        self._in = bytearray()
        self._received: list[Publish] = []  # publishes read while waiting for a CONNACK or SUBACK
        self._answers: dict[int, SubAck | UnsubAck | None] = {}
        self._connack: ConnAck | None = None
        self._keepalive = keepalive
        self._ping_sent_at: float | None = None
        self.connections = 0  # connections made: a caller tags packet ids with it, to ack on the right one
        self.pings_sent = self.pings_answered = 0

    # -- the connection -----------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._link is not None and self._connack is not None

    @property
    def connack(self) -> ConnAck | None:
        """The broker's answer to this connection's CONNECT (its limits: receive maximum, packet size...)."""
        return self._connack

    def connect(self) -> bool:
        """Open a connection and start (or resume) the session; True when the broker had it (session present).
        Raises ConnectionRefused, ConnectionClosed (network, TLS, timeout) or ProtocolError."""
        self.close()
        try:
            sock = self._open_socket()
        except OSError as exc:  # ssl.SSLError and socket.timeout included
            raise ConnectionClosed(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._link = Connection(sock, self._clock)
        self._link.queue(self._connect_packet)
        self._wait(lambda: self._connack is not None, "CONNACK")
        connack = self._connack
        assert connack is not None
        if is_failure(connack.reason_code, self.protocol, connack=True):
            self.close()
            raise ConnectionRefused(connack.reason_code, self.protocol, connack.reason_string)
        self._keepalive = connack.server_keepalive if connack.server_keepalive is not None else self._keepalive_asked
        self.connections += 1
        self._send_publishes()
        self.flush()
        return connack.session_present

    def disconnect(self) -> None:
        """Send DISCONNECT (normal: the session stays for its expiry) and close. Unconfirmed publishes are kept."""
        link = self._link
        if link is not None:
            with contextlib.suppress(ConnectionClosed):
                link.queue(wire.DISCONNECT)
                deadline = time.monotonic() + min(self._timeout, 1.0)
                while not link.flush() and time.monotonic() < deadline:
                    select.select([], [link.sock], [], 0.05)
        self.close()

    def close(self) -> None:
        """Drop the connection without DISCONNECT (as a crash would)."""
        link, self._link = self._link, None
        if link is not None:
            link.close()
        self._in.clear()
        self._received.clear()  # their packet ids mean nothing on the next connection: the broker sends them again
        self._connack = None
        self._ping_sent_at = None
        for packet_id in self._answers:
            self._ids.release(packet_id)
        self._answers.clear()
        self._outgoing.connection_lost()

    def fileno(self) -> int:
        return self._connection().sock.fileno()

    # -- subscriptions ------------------------------------------------------------------------------------------

    def subscribe(
        self,
        topic_filters: Sequence[str],
        qos: int = 1,
        retain_handling: RetainHandling = RetainHandling.SEND_ON_SUBSCRIBE,
    ) -> tuple[int, ...]:
        """Subscribe and wait for SUBACK; the granted QoS a filter. SubscribeRefused names refused filters."""
        if qos not in (0, 1):
            raise ValueError(f"QoS {qos}: this client receives at QoS 0 or 1")
        codes = self._request(
            lambda packet_id: wire.encode_subscribe(
                packet_id, topic_filters, qos, protocol=self.protocol, retain_handling=retain_handling
            ),
            "SUBACK",
        )
        if len(codes) != len(topic_filters):
            self._fail(f"SUBACK has {len(codes)} reason codes for {len(topic_filters)} filters")
        refused = {f: code for f, code in zip(topic_filters, codes, strict=True) if code >= 0x80}
        if refused:
            raise SubscribeRefused(refused, self.protocol)
        return codes

    def unsubscribe(self, topic_filters: Sequence[str]) -> tuple[int, ...]:
        """Unsubscribe and wait for UNSUBACK; MQTT 5 gives a reason code a filter, 3.1.1 none."""
        return self._request(
            lambda packet_id: wire.encode_unsubscribe(packet_id, topic_filters, protocol=self.protocol), "UNSUBACK"
        )

    def _request(self, encode: Callable[[int], bytes], answer: str) -> tuple[int, ...]:
        link = self._connection()
        packet_id = self._ids.allocate()
        try:
            packet = encode(packet_id)
        except ValueError:
            self._ids.release(packet_id)
            raise
        self._answers[packet_id] = None
        link.queue(packet)
        self.flush()
        self._wait(lambda: self._answers.get(packet_id) is not None, answer)
        reply = self._answers.pop(packet_id)
        self._ids.release(packet_id)
        assert reply is not None
        return reply.reason_codes

    # -- receiving ----------------------------------------------------------------------------------------------

    def read_available(self) -> list[Publish]:
        """The publishes one read of the socket completed (none if it had nothing), and any read while waiting
        in connect() or subscribe(). Acknowledge QoS 1 ones with `ack()`. Raises ConnectionClosed, ProtocolError."""
        publishes = self._read()
        if self._received:
            publishes[:0], self._received = self._received, []
        return publishes

    def ack(self, packet_ids: Iterable[int]) -> None:
        """Queue PUBACKs for these received QoS 1 publishes; `flush()` sends them in one send(). Without a
        connection they are dropped: the broker sends those messages again on the next one."""
        if self._link is not None:
            self._link.queue(wire.encode_pubacks(packet_ids))

    # -- publishing ---------------------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Publish at QoS 1; returns the packet id its confirmation will carry (`on_confirmed` or
        `take_confirmed()`). Sent now if the broker's window has room, else queued (also while disconnected).
        ValueError when MQTT or this broker cannot carry it."""
        connack = self._connack
        if connack is not None and retain and not connack.retain_available:
            raise ValueError("the broker does not take retained messages")
        packet_id = self._ids.allocate()
        try:
            packet = wire.encode_publish(topic, payload, qos=1, packet_id=packet_id, retain=retain,
                                         protocol=self.protocol)  # fmt: skip
            if connack is not None and connack.maximum_packet_size and len(packet) > connack.maximum_packet_size:
                raise ValueError(f"{len(packet)} bytes: over the broker's maximum packet size")
        except ValueError:
            self._ids.release(packet_id)
            raise
        self._outgoing.add(packet_id, packet)
        if self.connected:
            self._send_publishes()
            self.flush()
        return packet_id

    def take_confirmed(self) -> list[tuple[int, int]]:
        """(packet id, reason code) of our publishes the broker acknowledged since the last call (when no
        `on_confirmed` callback is set). A reason code from 0x80 up means the broker refused the message."""
        confirmed, self._confirmed = self._confirmed, []
        return confirmed

    @property
    def unconfirmed(self) -> int:
        """Our publishes without a PUBACK yet."""
        return len(self._outgoing)

    def _send_publishes(self) -> None:
        if self._link is not None and self._connack is not None:
            for packet in self._outgoing.take_sendable(self._connack.receive_maximum):
                self._link.queue(packet)

    # -- writing and the keepalive ------------------------------------------------------------------------------

    @property
    def want_write(self) -> bool:
        return self._link is not None and self._link.want_write

    def flush(self) -> bool:
        """Send what the socket takes now; True when nothing is left. Raises ConnectionClosed."""
        if self._link is None:
            return True
        try:
            return self._link.flush()
        except ConnectionClosed:
            self.close()
            raise

    def service(self) -> None:
        """The keepalive: PINGREQ when either direction has been idle for the keepalive interval; the
        connection is dead (ConnectionClosed) when its PINGRESP has not come within another interval."""
        link = self._link
        if link is None or not self._keepalive:
            return
        now = self._clock()
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at >= self._keepalive:
                self._lost(f"no PINGRESP within the keepalive ({self._keepalive} s)")
        elif now - min(link.last_sent, link.last_received) >= self._keepalive:
            self._ping_sent_at = now
            self.pings_sent += 1
            link.queue(wire.PINGREQ)
            self.flush()

    def service_due_in(self) -> float:
        """Seconds until `service()` has something to do (a select() timeout)."""
        link = self._link
        if link is None or not self._keepalive:
            return float(self._timeout)
        since = self._ping_sent_at if self._ping_sent_at is not None else min(link.last_sent, link.last_received)
        return max(0.0, since + self._keepalive - self._clock())

    def poll(self, timeout: float) -> list[Publish]:
        """Wait up to `timeout` for data, read once, run the keepalive and flush: one turn of a simple loop."""
        link = self._connection()
        wait = 0.0 if self._received else min(timeout, self.service_due_in())
        readable, _, _ = select.select([link.sock], [link.sock] if link.want_write else [], [], wait)
        publishes = self.read_available() if readable or self._received else []
        self.service()
        self.flush()
        return publishes

    # -- internals ----------------------------------------------------------------------------------------------

    def _connection(self) -> Connection:
        if self._link is None:
            raise ConnectionClosed("not connected")
        return self._link

    def _lost(self, why: str, reason_code: int | None = None) -> NoReturn:
        self.close()
        raise ConnectionClosed(why, reason_code)

    def _fail(self, why: str) -> NoReturn:
        """The broker broke the protocol: say so (MQTT 5) and drop the connection."""
        if self._link is not None and self.protocol == MQTT_5:
            with contextlib.suppress(OSError):  # a last word; the connection goes either way
                self._link.sock.send(wire.encode_disconnect(_MALFORMED_PACKET))
        self.close()
        raise ProtocolError(why)

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self._timeout  # real time: the injected clock is the keepalive's
        while not done():
            remaining = deadline - time.monotonic()
            link = self._connection()
            if remaining <= 0:
                self._lost(f"no {what} within {self._timeout} s")
            readable, writable, _ = select.select([link.sock], [link.sock] if link.want_write else [], [], remaining)
            if writable:
                self.flush()
            if readable:
                self._received += self._read()

    def _read(self) -> list[Publish]:
        try:
            data = self._connection().recv()
        except ConnectionClosed:
            self.close()
            raise
        if not data:
            return []
        buffer = self._in
        try:
            if buffer:
                buffer += data
                packets, used = wire.decode_packets(buffer, self.protocol, self._max_packet_size)
                del buffer[:used]
            else:  # the usual case: no copy into the buffer unless a packet is left incomplete
                packets, used = wire.decode_packets(data, self.protocol, self._max_packet_size)
                if used < len(data):
                    buffer += data[used:]
        except ProtocolError as exc:
            self._fail(exc.reason)
        publishes = [p for p in packets if type(p) is Publish]
        if len(publishes) != len(packets):
            for packet in packets:
                if type(packet) is not Publish:
                    self._handle(packet)
                elif self._connack is None:
                    self._fail("the broker sent PUBLISH before CONNACK")
        elif publishes and self._connack is None:
            self._fail("the broker sent PUBLISH before CONNACK")
        return publishes

    def _handle(self, packet: Packet) -> None:
        if type(packet) is ConnAck:
            if self._connack is not None:
                self._fail("a second CONNACK")
            self._connack = packet
            return
        if self._connack is None:
            self._fail(f"the broker sent {type(packet).__name__} before CONNACK")
        if type(packet) is wire.PubAck:
            if self._outgoing.acknowledged(packet.packet_id):
                if self._on_confirmed is not None:
                    self._on_confirmed(packet.packet_id, packet.reason_code)
                else:
                    self._confirmed.append((packet.packet_id, packet.reason_code))
                self._send_publishes()
        elif type(packet) is SubAck or type(packet) is UnsubAck:
            if packet.packet_id not in self._answers:
                self._fail(f"{type(packet).__name__} for packet id {packet.packet_id}, which asked nothing")
            self._answers[packet.packet_id] = packet
        elif type(packet) is wire.PingResp:
            self._ping_sent_at = None
            self.pings_answered += 1
        elif type(packet) is wire.Disconnect:
            detail = f": {packet.reason_string}" if packet.reason_string else ""
            name = reason_name(packet.reason_code, self.protocol)
            self._lost(f"the broker disconnected: {name} ({packet.reason_code:#04x}){detail}", packet.reason_code)
        else:  # pragma: no cover - decode_packets returns no other kind
            raise MqttError(f"unhandled packet {packet!r}")
