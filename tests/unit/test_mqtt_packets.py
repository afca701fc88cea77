"""gateway/mqtt/packets.py, packet type by packet type: what the encoders write, byte for byte against the layouts in
the MQTT 3.1.1 and 5 specifications; what the decoder makes of hand-made bytes; and which bytes it refuses."""

from __future__ import annotations

import pytest

from gateway.mqtt import ProtocolError
from gateway.mqtt.packets import (
    MQTT_5,
    MQTT_311,
    ConnAck,
    Disconnect,
    PingResp,
    PubAck,
    Publish,
    RetainHandling,
    SubAck,
    UnsubAck,
    decode_packets,
    encode_connect,
    encode_disconnect,
    encode_pubacks,
    encode_publish,
    encode_subscribe,
    encode_unsubscribe,
    with_dup,
)
from gateway.mqtt.properties import encode_varint, read_varint

MQTT = b"\x00\x04MQTT"


def one(data: bytes, protocol: int = MQTT_5) -> object:
    packets, used = decode_packets(data, protocol)
    assert used == len(data)
    assert len(packets) == 1
    return packets[0]


# -- Variable Byte Integer (MQTT 5 section 1.5.5: the table of sizes) ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_variable_byte_integers_match_the_table_of_the_specification(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert read_varint(encoded, 0, len(encoded)) == (value, len(encoded))
    assert read_varint(encoded, 0, len(encoded) - 1) == (-1, 0)  # incomplete: wait for more


def test_a_variable_byte_integer_past_four_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_varint(268_435_456)
    with pytest.raises(ProtocolError, match="longer than 4 bytes"):
        read_varint(b"\xff\xff\xff\xff\x01", 0, 5)


# -- CONNECT ---------------------------------------------------------------------------------------------------------


def test_connect_mqtt5_carries_credentials_session_expiry_and_receive_maximum() -> None:
    packet = encode_connect("gw", keepalive=30, username="u", password=b"p", session_expiry=3600, receive_maximum=1000)
    properties = b"\x08" + b"\x11\x00\x00\x0e\x10" + b"\x21\x03\xe8"
    body = MQTT + b"\x05" + b"\xc0" + b"\x00\x1e" + properties + b"\x00\x02gw" + b"\x00\x01u" + b"\x00\x01p"
    assert packet == b"\x10" + bytes([len(body)]) + body


def test_connect_mqtt5_announces_our_maximum_packet_size() -> None:
    packet = encode_connect("c", keepalive=0, maximum_packet_size=65536)
    assert packet == b"\x10\x13" + MQTT + b"\x05\x00\x00\x00" + b"\x05\x27\x00\x01\x00\x00" + b"\x00\x01c"


def test_connect_mqtt311_persistent_session_has_no_properties() -> None:
    packet = encode_connect("gw", protocol=MQTT_311, keepalive=60, session_expiry=3600, receive_maximum=10)
    assert packet == b"\x10\x0e" + MQTT + b"\x04\x00\x00\x3c" + b"\x00\x02gw"


def test_connect_clean_start_sets_bit_1() -> None:
    assert encode_connect("c", protocol=MQTT_311, clean_start=True)[9] == 0x02
    assert encode_connect("c", clean_start=True)[9] == 0x02


def test_connect_mqtt311_refuses_a_password_without_a_user_name() -> None:
    with pytest.raises(ValueError, match="password only with a user name"):
        encode_connect("c", protocol=MQTT_311, password=b"secret")
    assert encode_connect("c", password=b"pw")[9] == 0x40  # MQTT 5 allows it


def test_connect_refuses_what_mqtt_cannot_carry() -> None:
    with pytest.raises(ValueError, match="U\\+0000"):
        encode_connect("a\0b")
    with pytest.raises(ValueError, match="keepalive"):
        encode_connect("c", keepalive=70_000)
    with pytest.raises(ValueError, match="protocol level"):
        encode_connect("c", protocol=3)


# -- SUBSCRIBE / UNSUBSCRIBE -----------------------------------------------------------------------------------------


def test_subscribe_mqtt5_options_byte_holds_qos_and_retain_handling() -> None:
    packet = encode_subscribe(7, ["a/+", "b/#"], 1, retain_handling=RetainHandling.DO_NOT_SEND)
    body = b"\x00\x07" + b"\x00" + b"\x00\x03a/+" + b"\x21" + b"\x00\x03b/#" + b"\x21"
    assert packet == b"\x82" + bytes([len(body)]) + body


def test_subscribe_mqtt311_has_the_plain_qos_byte() -> None:
    packet = encode_subscribe(1, ["a/#"], 1, protocol=MQTT_311, retain_handling=RetainHandling.DO_NOT_SEND)
    assert packet == b"\x82\x08\x00\x01\x00\x03a/#\x01"


@pytest.mark.parametrize("bad", ["", "a/#/b", "a#", "a/b+", "+a"])
def test_subscribe_refuses_invalid_topic_filters(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_subscribe(1, [bad], 1)


def test_unsubscribe_layouts() -> None:
    assert encode_unsubscribe(2, ["a/#"]) == b"\xa2\x08\x00\x02\x00\x00\x03a/#"
    assert encode_unsubscribe(2, ["a/#"], protocol=MQTT_311) == b"\xa2\x07\x00\x02\x00\x03a/#"


# -- PUBLISH out -----------------------------------------------------------------------------------------------------


def test_publish_qos1_retained_mqtt5() -> None:
    assert encode_publish("a/b", b"hi", packet_id=7, retain=True) == b"\x33\x0a\x00\x03a/b\x00\x07\x00hi"


def test_publish_qos0_mqtt311() -> None:
    assert encode_publish("a/b", b"hi", qos=0, protocol=MQTT_311) == b"\x30\x07\x00\x03a/bhi"


def test_publish_sent_again_carries_dup() -> None:
    assert with_dup(encode_publish("a", b"", packet_id=1)) == b"\x3a\x06\x00\x01a\x00\x01\x00"


def test_publish_with_a_long_payload_has_a_multi_byte_remaining_length() -> None:
    packet = encode_publish("t", b"x" * 200, packet_id=1, protocol=MQTT_311)
    assert packet[:3] == b"\x32\xcd\x01"  # 3 + 2 + 200 = 205 = 0x4d + 1 * 128


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"topic": "a/+"}, "wildcard", id="wildcard"),
        pytest.param({"topic": ""}, "empty", id="empty topic"),
        pytest.param({"topic": "a\0"}, "U\\+0000", id="nul"),
        pytest.param({"qos": 2}, "QoS 2", id="qos 2"),
        pytest.param({"packet_id": None}, "packet identifier", id="qos 1 without id"),
        pytest.param({"packet_id": 0}, "outside 1-65535", id="id 0"),
        pytest.param({"qos": 0, "packet_id": None, "dup": True}, "DUP", id="dup at qos 0"),
    ],
)
def test_publish_refuses_what_mqtt_forbids(kwargs: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {"topic": "a/b", "payload": b"", "packet_id": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        encode_publish(**arguments)  # type: ignore[arg-type]


# -- PUBACK, PINGREQ, DISCONNECT out ---------------------------------------------------------------------------------


def test_pubacks_are_joined_four_bytes_each() -> None:
    assert encode_pubacks([1, 258, 65535]) == b"\x40\x02\x00\x01" + b"\x40\x02\x01\x02" + b"\x40\x02\xff\xff"
    assert encode_pubacks([]) == b""


def test_disconnect_layouts() -> None:
    assert encode_disconnect() == b"\xe0\x00"
    assert encode_disconnect(protocol=MQTT_311) == b"\xe0\x00"
    assert encode_disconnect(0x81) == b"\xe0\x02\x81\x00"
    with pytest.raises(ValueError):
        encode_disconnect(0x81, protocol=MQTT_311)


# -- CONNACK in ------------------------------------------------------------------------------------------------------


def test_connack_mqtt311_session_present_and_return_code() -> None:
    assert one(b"\x20\x02\x01\x00", MQTT_311) == ConnAck(session_present=True, reason_code=0)
    assert one(b"\x20\x02\x00\x05", MQTT_311) == ConnAck(session_present=False, reason_code=5)


def test_connack_mqtt5_properties_we_use() -> None:
    properties = (
        b"\x21\x00\x14"  # Receive Maximum 20
        b"\x27\x00\x01\x00\x00"  # Maximum Packet Size 65536
        b"\x13\x00\x0a"  # Server Keep Alive 10
        b"\x12\x00\x03abc"  # Assigned Client Identifier
        b"\x25\x00"  # Retain Available 0
        b"\x24\x01"  # Maximum QoS 1
        b"\x26\x00\x01k\x00\x01v"  # a User Property: read past, not kept
        b"\x1f\x00\x02ok"  # Reason String
    )
    body = b"\x00\x00" + bytes([len(properties)]) + properties
    assert one(b"\x20" + bytes([len(body)]) + body) == ConnAck(
        session_present=False,
        reason_code=0,
        receive_maximum=20,
        maximum_packet_size=65536,
        server_keepalive=10,
        assigned_client_id="abc",
        maximum_qos=1,
        retain_available=False,
        reason_string="ok",
    )


def test_connack_mqtt5_without_properties_gets_the_defaults() -> None:
    assert one(b"\x20\x03\x01\x00\x00") == ConnAck(session_present=True, reason_code=0, receive_maximum=65535)


# -- SUBACK, UNSUBACK, PUBACK, PINGRESP, DISCONNECT in ---------------------------------------------------------------


def test_suback_reports_a_code_per_filter_refusals_included() -> None:
    assert one(b"\x90\x05\x00\x07\x00\x01\x87") == SubAck(7, (1, 0x87))
    assert one(b"\x90\x04\x00\x07\x00\x80", MQTT_311) == SubAck(7, (0, 0x80))


def test_unsuback_mqtt5_has_codes_and_mqtt311_none() -> None:
    assert one(b"\xb0\x05\x00\x02\x00\x00\x11") == UnsubAck(2, (0, 0x11))
    assert one(b"\xb0\x02\x00\x02", MQTT_311) == UnsubAck(2, ())


def test_puback_reason_code_is_success_when_left_out() -> None:
    assert one(b"\x40\x02\x01\x02") == PubAck(258, 0)
    assert one(b"\x40\x03\x01\x02\x10") == PubAck(258, 0x10)  # no matching subscribers
    assert one(b"\x40\x08\x01\x02\x87\x04\x1f\x00\x01x") == PubAck(258, 0x87)  # with a reason string
    assert one(b"\x40\x02\x01\x02", MQTT_311) == PubAck(258, 0)


def test_pingresp_and_disconnect() -> None:
    assert one(b"\xd0\x00") == PingResp()
    assert one(b"\xe0\x00") == Disconnect(0)
    assert one(b"\xe0\x01\x8e") == Disconnect(0x8E)
    assert one(b"\xe0\x0a\x8e\x08\x1f\x00\x05taken") == Disconnect(0x8E, "taken")


# -- PUBLISH in ------------------------------------------------------------------------------------------------------


def test_publish_in_mqtt5_qos1() -> None:
    packet = b"\x32\x0b\x00\x03a/b\x00\x07\x00{}\x0a"
    assert one(packet) == Publish("a/b", b"{}\n", 1, 7, False, False)


def test_publish_in_flags_dup_and_retain() -> None:
    assert one(b"\x3b\x08\x00\x01a\x00\x07\x00xy") == Publish("a", b"xy", 1, 7, True, True)
    assert one(b"\x31\x05\x00\x01a\x00x") == Publish("a", b"x", 0, None, False, True)


def test_publish_in_mqtt311_has_no_property_length() -> None:
    assert one(b"\x32\x07\x00\x01a\x00\x07xy", MQTT_311) == Publish("a", b"xy", 1, 7, False, False)


def test_publish_in_properties_are_skipped_short_and_long() -> None:
    short = b"\x02\x00\x00\x00\x3c" + b"\x26\x00\x01k\x00\x01v"  # message expiry, a user property
    long = b"\x26\x00\x01k\x00\xc8" + b"v" * 200
    for properties in (short, long):
        body = b"\x00\x01a\x00\x09" + encode_varint(len(properties)) + properties + b"payload"
        assert one(b"\x32" + encode_varint(len(body)) + body) == Publish("a", b"payload", 1, 9, False, False)


def test_publish_in_topic_is_utf8() -> None:
    topic = "capteurs/étage-2/température".encode()
    body = len(topic).to_bytes(2, "big") + topic + b"\x00"
    assert one(b"\x30" + bytes([len(body)]) + body) == Publish(
        "capteurs/étage-2/température", b"", 0, None, False, False
    )


# -- the stream ------------------------------------------------------------------------------------------------------


def test_every_complete_packet_is_returned_and_an_incomplete_tail_is_left() -> None:
    first = encode_publish("a/b", b"1", packet_id=1)
    second = b"\x40\x02\x00\x05"
    third = encode_publish("a/b", b"x" * 300, packet_id=2)
    stream = first + second + third
    for cut in range(len(stream) + 1):
        packets, used = decode_packets(bytearray(stream[:cut]))
        expected = [p for p, end in ((first, len(first)), (second, len(first) + 4), (third, len(stream))) if end <= cut]
        assert len(packets) == len(expected)
        assert used == sum(len(p) for p in expected)


def test_a_packet_over_the_maximum_size_is_refused_before_it_is_complete() -> None:
    header = b"\x30" + encode_varint(1000)
    with pytest.raises(ProtocolError, match="over the maximum packet size 500"):
        decode_packets(header + b"\x00\x01a", max_packet_size=500)
    assert decode_packets(header + b"\x00\x01a", max_packet_size=1003) == ([], 0)


# -- malformed input: always ProtocolError ---------------------------------------------------------------------------

MALFORMED = [
    pytest.param(b"\x30\xff\xff\xff\xff\x01", "longer than 4 bytes", id="remaining length of 5 bytes"),
    pytest.param(b"\x30\x01\x00", "truncated", id="publish shorter than its topic length"),
    pytest.param(b"\x30\x03\x00\x05a", "truncated", id="topic runs past the packet"),
    pytest.param(b"\x32\x04\x00\x01a\x00", "packet identifier", id="packet id cut"),
    pytest.param(b"\x32\x06\x00\x01a\x00\x00\x00", "identifier 0", id="packet id 0"),
    pytest.param(b"\x36\x06\x00\x01a\x00\x01\x00", "QoS 3", id="qos 3"),
    pytest.param(b"\x38\x04\x00\x01a\x00", "DUP", id="dup at qos 0"),
    pytest.param(b"\x30\x04\x00\x01a\x05", "properties", id="properties past the end"),
    pytest.param(b"\x30\x03\x00\x01a", "properties", id="no property length"),
    pytest.param(b"\x30\x05\x00\x02\xc3\x28\x00", "UTF-8", id="invalid utf-8"),
    pytest.param(b"\x30\x06\x00\x03\xed\xa0\x80\x00", "UTF-8", id="utf-16 surrogate"),
    pytest.param(b"\x30\x04\x00\x01\x00\x00", "U\\+0000", id="nul in topic"),
    pytest.param(b"\x30\x04\x00\x01+\x00", "wildcard", id="plus in topic"),
    pytest.param(b"\x30\x06\x00\x03a/#\x00", "wildcard", id="hash in topic"),
    pytest.param(b"\x30\x03\x00\x00\x00", "empty", id="empty topic (an alias)"),
    pytest.param(b"\x10\x00", "CONNECT", id="connect from the broker"),
    pytest.param(b"\x62\x02\x00\x01", "PUBREL", id="qos 2 flow"),
    pytest.param(b"\xf0\x00", "AUTH", id="auth"),
    pytest.param(b"\x00\x00", "reserved", id="type 0"),
    pytest.param(b"\x41\x02\x00\x01", "first byte 0x41", id="reserved flags set"),
    pytest.param(b"\xd0\x01\x00", "PINGRESP with a body", id="pingresp with body"),
    pytest.param(b"\x20\x01\x00", "CONNACK of 1 bytes", id="connack too short"),
    pytest.param(b"\x20\x03\x02\x00\x00", "CONNACK flags", id="connack reserved flags"),
    pytest.param(b"\x20\x05\x00\x00\x02\x21\x00", "truncated", id="connack property cut"),
    pytest.param(b"\x20\x06\x00\x00\x03\x21\x00\x00", "Receive Maximum 0", id="receive maximum 0"),
    pytest.param(b"\x20\x06\x00\x00\x03\x7f\x00\x00", "unknown property", id="unknown property"),
    pytest.param(b"\x20\x07\x00\x00\x04\x24\x01\x24\x01", "twice", id="property twice"),
    pytest.param(b"\x90\x03\x00\x01\x00", "reason codes ()", id="suback without codes"),
    pytest.param(b"\x90\x04\x00\x01\x00\x05", "reason codes", id="suback code 5"),
    pytest.param(b"\x40\x01\x00", "packet identifier", id="puback cut"),
]


@pytest.mark.parametrize(("data", "match"), MALFORMED)
def test_malformed_input_raises_protocol_error(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_packets(data)


def test_mqtt311_refuses_mqtt5_only_layouts() -> None:
    with pytest.raises(ProtocolError, match=r"3\.1\.1 PUBACK"):
        decode_packets(b"\x40\x03\x00\x01\x10", MQTT_311)
    with pytest.raises(ProtocolError, match=r"3\.1\.1 UNSUBACK"):
        decode_packets(b"\xb0\x03\x00\x01\x00", MQTT_311)
    with pytest.raises(ProtocolError, match="CONNACK of 3 bytes"):
        decode_packets(b"\x20\x03\x00\x00\x00", MQTT_311)


def test_packets_before_a_malformed_one_do_not_hide_it() -> None:
    with pytest.raises(ProtocolError):
        decode_packets(encode_publish("a", b"ok", packet_id=1) + b"\x36\x06\x00\x01a\x00\x01\x00")
