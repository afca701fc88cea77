"""A hypothesis fuzz of the MQTT decoder (gateway/mqtt/packets.py) and of the client's read path: whatever the
bytes (random, truncated, corrupted, oversized, a bad remaining length, a topic that is not UTF-8), the answer
is complete packets or one ProtocolError, in bounded time; the decoder never consumes past a complete packet."""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mqtt import MQTT_5, MQTT_311, ConnectionClosed, MqttClient, ProtocolError
from gateway.mqtt.packets import Packet, Publish, decode_packets, encode_publish, with_dup
from gateway.mqtt.properties import encode_varint
from tests.support.mqtt_peer import CONNACK_5, BrokerEnd

FUZZ = settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])
protocols = st.sampled_from([MQTT_5, MQTT_311])
topics = st.text(st.characters(blacklist_characters="\0+#", blacklist_categories=["Cs"]), min_size=1, max_size=40)
COMMON_CONTROL = [b"\x40\x02\x00\x05", b"\xd0\x00", b"\x20\x02\x01\x00"]
CONTROL = {
    MQTT_5: [*COMMON_CONTROL, b"\x90\x04\x00\x01\x00\x01", b"\xb0\x04\x00\x02\x00\x11", b"\xe0\x01\x8e"],
    MQTT_311: [*COMMON_CONTROL, b"\x90\x03\x00\x01\x01", b"\xb0\x02\x00\x02"],
}


@st.composite
def publish_packets(draw: st.DrawFn, protocol: int) -> bytes:
    qos = draw(st.sampled_from([0, 1]))
    packet = encode_publish(
        draw(topics),
        draw(st.binary(max_size=300)),
        qos=qos,
        packet_id=draw(st.integers(1, 65535)) if qos else None,
        retain=draw(st.booleans()),
        protocol=protocol,
    )
    return with_dup(packet) if qos and draw(st.booleans()) else packet


@st.composite
def streams(draw: st.DrawFn) -> tuple[int, list[bytes]]:
    """A protocol level and packets valid under it."""
    protocol = draw(protocols)
    packets = draw(st.lists(st.one_of(publish_packets(protocol), st.sampled_from(CONTROL[protocol])), max_size=20))
    return protocol, packets


def check_outcome(data: bytes, protocol: int, max_packet_size: int = 1 << 20) -> list[Packet] | None:
    """Decode `data`: complete packets and the bytes they take, or ProtocolError; None for the latter."""
    try:
        packets, used = decode_packets(bytearray(data), protocol, max_packet_size)
    except ProtocolError as error:
        assert error.reason
        return None
    assert 0 <= used <= len(data)
    # What was consumed is exactly those packets; what was left starts an incomplete one.
    assert decode_packets(data[:used], protocol, max_packet_size) == (packets, used)
    assert decode_packets(data[used:], protocol, max_packet_size) == ([], 0)
    return packets


@FUZZ
@given(protocols, st.binary(max_size=600))
def test_random_bytes_give_packets_or_protocol_error(protocol: int, data: bytes) -> None:
    check_outcome(data, protocol)


@FUZZ
@given(streams(), st.data())
def test_a_valid_stream_cut_anywhere_gives_exactly_the_packets_before_the_cut(
    stream: tuple[int, list[bytes]], data: st.DataObject
) -> None:
    protocol, packets = stream
    joined = b"".join(packets)
    cut = data.draw(st.integers(0, len(joined)))
    decoded = check_outcome(joined[:cut], protocol)
    ends = [sum(len(p) for p in packets[: i + 1]) for i in range(len(packets))]
    assert decoded is not None
    assert len(decoded) == sum(1 for end in ends if end <= cut)


@FUZZ
@given(streams(), st.data())
def test_a_corrupted_stream_gives_packets_or_protocol_error(
    stream: tuple[int, list[bytes]], data: st.DataObject
) -> None:
    protocol, packets = stream
    joined = bytearray(b"".join(packets) or b"\x30\x00")
    for _ in range(data.draw(st.integers(1, 4))):
        joined[data.draw(st.integers(0, len(joined) - 1))] = data.draw(st.integers(0, 255))
    check_outcome(bytes(joined), protocol)


@FUZZ
@given(protocols, st.binary(min_size=0, max_size=60), st.integers(0, 255))
def test_a_topic_is_decoded_exactly_when_it_is_a_valid_topic_name(protocol: int, raw: bytes, flags: int) -> None:
    body = len(raw).to_bytes(2, "big") + raw + (b"\x00" if protocol == MQTT_5 else b"") + b"payload"
    packet = b"\x30" + encode_varint(len(body)) + body
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        text = None
    valid = text is not None and text != "" and not {"\0", "+", "#"} & set(text)
    decoded = check_outcome(packet, protocol)
    assert (decoded is not None) == valid
    if decoded is not None:
        assert decoded == [Publish(text, b"payload", 0, None, False, False)]  # type: ignore[arg-type]


@FUZZ
@given(protocols, st.integers(0x10, 0xFF), st.binary(min_size=4, max_size=4))
def test_a_remaining_length_over_four_bytes_is_refused_whatever_follows(protocol: int, first: int, tail: bytes) -> None:
    with pytest.raises(ProtocolError, match="longer than 4 bytes"):
        decode_packets(bytes([first]) + b"\x80\x80\x80\x80" + tail, protocol)


@FUZZ
@given(protocols, st.integers(2, 1 << 20), st.integers(0, 8))
def test_a_packet_over_the_maximum_size_is_refused_without_waiting_for_it(
    protocol: int, limit: int, present: int
) -> None:
    header = b"\x30" + encode_varint(limit)  # a packet of limit + header bytes: one byte at least too many
    with pytest.raises(ProtocolError, match="over the maximum packet size"):
        decode_packets(header + b"\x00" * present, protocol, max_packet_size=limit)


@settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_the_client_read_path_ends_in_protocol_error_or_connection_closed_never_elsewhere(data: bytes) -> None:
    client_end, broker_sock = socket.socketpair()
    broker = BrokerEnd(broker_sock)
    client = MqttClient("fuzz.invalid", client_id="fuzz", open_socket=lambda: client_end, timeout=0.5)
    try:
        broker.send(CONNACK_5)
        client.connect()
        broker.send(data)
        broker.sock.shutdown(socket.SHUT_WR)  # the end of the stream, so a read never waits forever
        for _ in range(len(data) + 2):
            client.poll(0.05)
        raise AssertionError("the client read past the end of the stream")
    except (ProtocolError, ConnectionClosed):
        pass
    finally:
        client.close()
        client_end.close()
        broker.close()
