"""gateway/mqtt/client.py against a scripted broker on a socket pair (tests/support/mqtt_peer.py), with a clock the
test moves: connect, subscribe, receive, batched acks, our QoS 1 publishes (window, ids, DUP after a reconnect),
keepalive, partial sends, and how the connection ends when the broker misbehaves."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from gateway.mqtt import (
    MQTT_5,
    MQTT_311,
    ConnectionClosed,
    ConnectionRefused,
    MqttClient,
    MqttError,
    ProtocolError,
    Publish,
    SubscribeRefused,
)
from gateway.mqtt.inflight import PacketIds
from gateway.mqtt.packets import encode_connect, encode_publish, encode_subscribe
from tests.support.mqtt_peer import CONNACK_5, CONNACK_311, BrokerEnd, socket_pairs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Session:
    """A client whose connections are socket pairs; `broker` is the broker end of the latest one."""

    def __init__(self, protocol: int = MQTT_5, connections: int = 3, **options: object) -> None:
        self.clock = Clock()
        self._clients, self._brokers = socket_pairs(connections)
        self._next = 0
        self.protocol = protocol
        options = {"timeout": 2.0, **options}
        self.client = MqttClient(
            "broker.invalid", client_id="c1", protocol=protocol, open_socket=self._open, clock=self.clock,
            **options,  # type: ignore[arg-type]
        )  # fmt: skip

    def _open(self) -> socket.socket:
        sock = self._clients[self._next]
        self._next += 1
        return sock

    @property
    def broker(self) -> BrokerEnd:
        return self._brokers[self._next - 1]

    def connect(self, connack: bytes | None = None) -> bool:
        """Queue the CONNACK first (the client waits for it inside connect())."""
        self._brokers[self._next].send(connack or (CONNACK_5 if self.protocol == MQTT_5 else CONNACK_311))
        present = self.client.connect()
        self.broker.read_packet()  # CONNECT
        return present

    def read_until(self, count: int) -> list[Publish]:
        got: list[Publish] = []
        for _ in range(50):
            got += self.client.poll(0.1)
            if len(got) >= count:
                break
        return got

    def close(self) -> None:
        self.client.close()
        for sock in self._clients:  # those the client never used, too
            sock.close()
        for broker in self._brokers:
            broker.close()


@pytest.fixture(params=[MQTT_5, MQTT_311], ids=["mqtt5", "mqtt311"])
def session(request: pytest.FixtureRequest) -> Iterator[Session]:
    s = Session(request.param)
    yield s
    s.close()


def test_connect_sends_connect_and_returns_session_present(session: Session) -> None:
    first, broker = session._clients[0], session._brokers[0]
    assert first  # the pair the client will get
    broker.send(b"\x20\x03\x01\x00\x00" if session.protocol == MQTT_5 else b"\x20\x02\x01\x00")
    assert session.client.connect() is True
    assert broker.read_packet() == encode_connect("c1", protocol=session.protocol)
    assert session.client.connected
    assert session.client.connections == 1


@pytest.mark.parametrize(("protocol", "connack", "code"), [(MQTT_5, b"\x20\x03\x00\x87\x00", 0x87),
                                                           (MQTT_311, b"\x20\x02\x00\x05", 5)])  # fmt: skip
def test_a_refused_connect_raises_with_the_reason_code(protocol: int, connack: bytes, code: int) -> None:
    s = Session(protocol)
    with pytest.raises(ConnectionRefused, match="not authori") as refused:
        s.connect(connack)
    assert refused.value.reason_code == code
    assert not s.client.connected
    s.close()


def test_a_311_broker_refusing_an_mqtt5_connect_is_a_refusal() -> None:
    s = Session(MQTT_5)
    with pytest.raises(ConnectionRefused, match="unacceptable protocol version") as refused:
        s.connect(b"\x20\x02\x00\x01")  # a 3.1.1 CONNACK, return code 1
    assert refused.value.reason_code == 1
    s.close()


def test_no_connack_within_the_timeout_raises_connection_closed() -> None:
    s = Session(timeout=0.2)
    with pytest.raises(ConnectionClosed, match="no CONNACK within"):
        s.client.connect()
    s.close()


def test_an_unreachable_broker_raises_connection_closed() -> None:
    def refuse() -> socket.socket:
        raise ConnectionRefusedError(111, "Connection refused")

    client = MqttClient("127.0.0.1", 1, client_id="c", open_socket=refuse)
    with pytest.raises(ConnectionClosed, match=r"cannot connect to 127\.0\.0\.1:1"):
        client.connect()


def test_subscribe_returns_granted_qos_and_keeps_publishes_that_came_first(session: Session) -> None:
    session.connect()
    publish = encode_publish("a/1", b"early", packet_id=9, protocol=session.protocol)
    suback = b"\x90\x04\x00\x01\x00\x01" if session.protocol == MQTT_5 else b"\x90\x03\x00\x01\x01"
    session.broker.send(publish + suback)
    assert session.client.subscribe(["a/#"], 1) == (1,)
    assert session.broker.read_packet() == encode_subscribe(1, ["a/#"], 1, protocol=session.protocol)
    assert session.client.read_available() == [Publish("a/1", b"early", 1, 9, False, False)]


def test_publishes_read_while_waiting_are_dropped_with_their_connection(session: Session) -> None:
    session.connect()
    suback = b"\x90\x04\x00\x01\x00\x01" if session.protocol == MQTT_5 else b"\x90\x03\x00\x01\x01"
    session.broker.send(encode_publish("a/1", b"early", packet_id=9, protocol=session.protocol) + suback)
    session.client.subscribe(["a/#"], 1)
    session.client.close()
    session.connect()
    assert session.client.read_available() == []  # not packet id 9 of the old connection


def test_refused_subscriptions_are_named(session: Session) -> None:
    session.connect()
    codes = b"\x01\x87" if session.protocol == MQTT_5 else b"\x01\x80"
    props = b"\x00" if session.protocol == MQTT_5 else b""
    session.broker.send(b"\x90" + bytes([2 + len(props) + 2]) + b"\x00\x01" + props + codes)
    with pytest.raises(SubscribeRefused, match="'secret/#'") as refused:
        session.client.subscribe(["ok/#", "secret/#"], 1)
    assert refused.value.refused == {"secret/#": codes[1]}
    assert session.client.connected  # the granted filter stays subscribed


def test_publishes_split_across_reads_are_returned_whole(session: Session) -> None:
    session.connect()
    packets = [encode_publish(f"d/{i}", b"x" * 150, packet_id=i, protocol=session.protocol) for i in (1, 2, 3)]
    stream = b"".join(packets)
    session.broker.send(stream[:200])
    got = session.read_until(1)
    session.broker.send(stream[200:])
    got += session.read_until(3 - len(got))
    assert [(p.topic, p.packet_id) for p in got] == [("d/1", 1), ("d/2", 2), ("d/3", 3)]


def test_acks_are_queued_and_flushed_together(session: Session) -> None:
    session.connect()
    session.client.ack([1, 2])
    session.client.ack([65535])
    assert session.client.want_write
    assert session.client.flush()
    assert [session.broker.read_packet() for _ in range(3)] == [b"\x40\x02\x00\x01", b"\x40\x02\x00\x02",
                                                                 b"\x40\x02\xff\xff"]  # fmt: skip


def test_acks_without_a_connection_are_dropped() -> None:
    client = MqttClient("127.0.0.1", 1, client_id="c")
    client.ack([1])
    assert not client.want_write
    with pytest.raises(ConnectionClosed, match="not connected"):
        client.fileno()


def test_our_publish_is_confirmed_by_puback(session: Session) -> None:
    session.connect()
    packet_id = session.client.publish("alerts/x", b"{}", retain=True)
    assert session.broker.read_packet() == encode_publish(
        "alerts/x", b"{}", packet_id=packet_id, retain=True, protocol=session.protocol
    )
    assert session.client.unconfirmed == 1
    refused = b"\x40\x03" + packet_id.to_bytes(2, "big") + b"\x87" if session.protocol == MQTT_5 else b""
    session.broker.send(b"\x40\x02" + packet_id.to_bytes(2, "big"))
    session.read_until(0)
    assert session.client.take_confirmed() == [(packet_id, 0)]
    assert session.client.unconfirmed == 0
    if refused:  # MQTT 5: a refusal comes back with its reason code
        second = session.client.publish("alerts/y", b"{}")
        session.broker.read_packet()
        session.broker.send(refused.replace(packet_id.to_bytes(2, "big"), second.to_bytes(2, "big")))
        session.read_until(0)
        assert session.client.take_confirmed() == [(second, 0x87)]


def test_confirmations_go_to_the_callback_when_there_is_one() -> None:
    confirmed: list[tuple[int, int]] = []
    s = Session(on_confirmed=lambda packet_id, code: confirmed.append((packet_id, code)))
    s.connect()
    packet_id = s.client.publish("a", b"")
    s.broker.send(b"\x40\x02" + packet_id.to_bytes(2, "big"))
    s.read_until(0)
    assert confirmed == [(packet_id, 0)]
    assert s.client.take_confirmed() == []
    s.close()


def test_unconfirmed_publishes_are_sent_again_with_dup_after_a_reconnect(session: Session) -> None:
    session.connect()
    first = session.client.publish("a", b"1")
    second = session.client.publish("b", b"2")
    session.broker.read_packet()
    session.broker.read_packet()
    session.client.close()  # as if the connection broke
    third = session.client.publish("c", b"3")  # queued while disconnected
    present = b"\x20\x03\x01\x00\x00" if session.protocol == MQTT_5 else b"\x20\x02\x01\x00"
    assert session.connect(present) is True
    again = [session.broker.read_packet() for _ in range(3)]
    protocol = session.protocol
    assert again == [
        encode_publish("a", b"1", packet_id=first, dup=True, protocol=protocol),
        encode_publish("b", b"2", packet_id=second, dup=True, protocol=protocol),
        encode_publish("c", b"3", packet_id=third, protocol=protocol),  # never sent before: no DUP
    ]


def test_the_brokers_receive_maximum_bounds_our_publishes_in_flight() -> None:
    s = Session()
    s.connect(b"\x20\x06\x00\x00\x03\x21\x00\x02")  # Receive Maximum 2
    ids = [s.client.publish("a", bytes([i])) for i in range(3)]
    assert [s.broker.read_packet()[-1] for _ in range(2)] == [0, 1]
    s.broker.send(b"\x40\x02" + ids[0].to_bytes(2, "big"))
    s.read_until(0)
    assert s.broker.read_packet()[-1] == 2
    s.close()


def test_packet_ids_skip_those_in_use_and_run_out_loudly() -> None:
    ids = PacketIds()
    taken = [ids.allocate() for _ in range(65535)]
    assert taken == list(range(1, 65536))
    with pytest.raises(MqttError, match="all 65535"):
        ids.allocate()
    ids.release(7)
    ids.release(3)
    assert ids.allocate() == 3  # the next free one after the last given out, wrapping around
    assert ids.allocate() == 7


def test_keepalive_pings_when_idle_and_gives_up_without_pingresp() -> None:
    s = Session(keepalive=10)
    s.connect()
    s.client.service()
    assert s.client.pings_sent == 0
    s.clock.now += 10
    assert s.client.service_due_in() == 0
    s.client.service()
    assert s.broker.read_packet() == b"\xc0\x00"
    s.broker.send(b"\xd0\x00")
    s.read_until(0)
    assert s.client.pings_answered == 1
    s.clock.now += 10
    s.client.service()
    assert s.broker.read_packet() == b"\xc0\x00"
    s.clock.now += 9.9
    s.client.service()
    s.clock.now += 0.1
    with pytest.raises(ConnectionClosed, match="no PINGRESP within the keepalive"):
        s.client.service()
    assert not s.client.connected
    s.close()


def test_the_server_keepalive_replaces_ours() -> None:
    s = Session(keepalive=60)
    s.connect(b"\x20\x06\x00\x00\x03\x13\x00\x05")  # Server Keep Alive 5
    s.clock.now += 5
    s.client.service()
    assert s.broker.read_packet() == b"\xc0\x00"
    s.close()


def test_a_large_publish_goes_out_in_partial_sends() -> None:
    s = Session()
    s.connect()
    s.broker.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    payload = bytes(range(256)) * 8192  # 2 MiB: far more than the socket pair buffers
    packet_id = s.client.publish("big", payload)
    assert s.client.want_write
    received = b""
    packet = encode_publish("big", payload, packet_id=packet_id)
    while len(received) < len(packet):
        received += s.broker.sock.recv(1 << 16)
        s.client.flush()
    assert received == packet
    assert not s.client.want_write
    s.close()


def test_a_disconnect_from_the_broker_carries_its_reason_code() -> None:
    s = Session()
    s.connect()
    s.broker.send(encode_publish("a", b"", packet_id=1) + b"\xe0\x01\x8e")
    with pytest.raises(ConnectionClosed, match="session taken over") as closed:
        s.read_until(1)
    assert closed.value.reason_code == 0x8E
    assert not s.client.connected
    s.close()


def test_malformed_input_ends_the_connection_with_protocol_error(session: Session) -> None:
    session.connect()
    session.broker.send(b"\x36\x06\x00\x01a\x00\x01\x00")  # QoS 3
    with pytest.raises(ProtocolError, match="QoS 3"):
        session.read_until(1)
    assert not session.client.connected
    if session.protocol == MQTT_5:
        assert session.broker.read_packet() == b"\xe0\x02\x81\x00"  # DISCONNECT, malformed packet
    assert session.broker.closed_by_client()


def test_the_broker_closing_the_connection_raises_connection_closed(session: Session) -> None:
    session.connect()
    session.broker.sock.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionClosed, match="the broker closed the connection"):
        session.read_until(1)


def test_disconnect_sends_disconnect_and_keeps_unconfirmed_publishes(session: Session) -> None:
    session.connect()
    session.client.publish("a", b"")
    session.broker.read_packet()
    session.client.disconnect()
    assert session.broker.read_packet() == b"\xe0\x00"
    assert session.broker.closed_by_client()
    assert session.client.unconfirmed == 1


def test_publish_refuses_what_the_broker_said_it_cannot_take() -> None:
    s = Session()
    s.connect(b"\x20\x0a\x00\x00\x07\x25\x00\x27\x00\x00\x00\x40")  # no retain, packets up to 64 bytes
    with pytest.raises(ValueError, match="retained"):
        s.client.publish("a", b"", retain=True)
    with pytest.raises(ValueError, match="maximum packet size"):
        s.client.publish("a", b"x" * 64)
    assert s.client.unconfirmed == 0  # nothing kept, and the packet id given back
    s.client.publish("a", b"x")
    assert s.client.unconfirmed == 1
    s.close()


def test_connack_must_come_first() -> None:
    s = Session()
    s._brokers[0].send(encode_publish("a", b"", packet_id=1))
    with pytest.raises(ProtocolError, match="before CONNACK"):
        s.client.connect()
    s.close()
