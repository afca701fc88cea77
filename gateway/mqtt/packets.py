"""MQTT 3.1.1 and 5 control packets, as bytes: encoders for what a client sends, and `decode_packets`, which turns
the bytes read from the socket into the complete packets among them. Pure: no I/O, no state.

Protocol levels are the wire values: 4 for MQTT 3.1.1, 5 for MQTT 5.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from gateway.mqtt import properties as prop
from gateway.mqtt.errors import ProtocolError
from gateway.mqtt.properties import encode_varint, read_varint

MQTT_311, MQTT_5 = 4, 5
MAX_PACKET_SIZE = 268_435_455 + 5  # the largest Remaining Length and its fixed header
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"  # MQTT 5: reason 0x00 (normal disconnection) and no properties may be left out

_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 0x10, 0x20, 0x30, 0x40
_SUBSCRIBE, _SUBACK, _UNSUBSCRIBE, _UNSUBACK = 0x82, 0x90, 0xA2, 0xB0
_PINGRESP, _DISCONNECT = 0xD0, 0xE0
_PACKET_NAMES = ("reserved", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE",
                 "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH")  # fmt: skip
_new_tuple = tuple.__new__  # a NamedTuple's own constructor costs ~0.5 us, a quarter of decoding a PUBLISH


class RetainHandling(IntEnum):
    """MQTT 5 subscription option: when the broker sends retained messages for a new subscription."""

    SEND_ON_SUBSCRIBE = 0
    SEND_IF_NEW_SUBSCRIPTION = 1
    DO_NOT_SEND = 2


class Publish(NamedTuple):
    """An incoming PUBLISH. `packet_id` is None at QoS 0. Its MQTT 5 properties are skipped, not decoded."""

    topic: str
    payload: bytes
    qos: int
    packet_id: int | None
    dup: bool
    retain: bool


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    reason_code: int
    receive_maximum: int = 65535  # how many of our QoS 1 publishes the broker takes unacknowledged
    maximum_packet_size: int | None = None
    server_keepalive: int | None = None  # MQTT 5: the broker overrides our keepalive with this
    assigned_client_id: str | None = None
    session_expiry: int | None = None
    maximum_qos: int = 2
    retain_available: bool = True
    reason_string: str | None = None


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    reason_codes: tuple[int, ...]  # one per filter, in the order subscribed: granted QoS, or a failure >= 0x80


@dataclass(frozen=True, slots=True)
class UnsubAck:
    packet_id: int
    reason_codes: tuple[int, ...]  # MQTT 5 only; empty under 3.1.1, which has none


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int
    reason_code: int = 0


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int = 0
    reason_string: str | None = None


Packet = Publish | ConnAck | SubAck | UnsubAck | PubAck | PingResp | Disconnect


# -- encoders --------------------------------------------------------------------------------------------------------


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_varint(len(body)) + body


def _utf8(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 0xFFFF or "\0" in text:
        raise ValueError(f"not an MQTT string (over 65535 bytes or contains U+0000): {text[:60]!r}")
    return struct.pack("!H", len(raw)) + raw


def _binary(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("binary field over 65535 bytes")
    return struct.pack("!H", len(data)) + data


def _packet_id(packet_id: int) -> bytes:
    if not 1 <= packet_id <= 0xFFFF:
        raise ValueError(f"packet identifier {packet_id} outside 1-65535")
    return struct.pack("!H", packet_id)


def _check_protocol(protocol: int) -> None:
    if protocol not in (MQTT_311, MQTT_5):
        raise ValueError(f"protocol level {protocol}: 4 (MQTT 3.1.1) or 5 (MQTT 5)")


def encode_connect(
    client_id: str,
    *,
    protocol: int = MQTT_5,
    keepalive: int = 60,
    clean_start: bool = False,
    username: str | None = None,
    password: bytes | None = None,
    session_expiry: int | None = None,
    receive_maximum: int | None = None,
    maximum_packet_size: int | None = None,
) -> bytes:
    """CONNECT without a will. 3.1.1 reads `clean_start` as Clean Session; the MQTT 5 properties are left out there."""
    _check_protocol(protocol)
    if not 0 <= keepalive <= 0xFFFF:
        raise ValueError(f"keepalive {keepalive} outside 0-65535")
    if password is not None and username is None and protocol == MQTT_311:
        raise ValueError("MQTT 3.1.1 allows a password only with a user name")
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0) | (0x02 * clean_start)
    body = _utf8("MQTT") + bytes((protocol, flags)) + struct.pack("!H", keepalive)
    if protocol == MQTT_5:
        wanted = [
            (prop.SESSION_EXPIRY_INTERVAL, session_expiry),
            (prop.RECEIVE_MAXIMUM, receive_maximum),
            (prop.MAXIMUM_PACKET_SIZE, maximum_packet_size),
        ]
        body += prop.encode_properties((k, v) for k, v in wanted if v is not None)
    body += _utf8(client_id)
    if username is not None:
        body += _utf8(username)
    if password is not None:
        body += _binary(password)
    return _packet(_CONNECT, body)


def check_topic_filter(topic_filter: str) -> None:
    """ValueError unless a valid filter (section 4.7): `#` only as the last level, `+` only as a whole level."""
    if not topic_filter:
        raise ValueError("empty topic filter")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if ("#" in level and (level != "#" or index != len(levels) - 1)) or ("+" in level and level != "+"):
            raise ValueError(f"invalid topic filter {topic_filter!r}: a wildcard must be a whole level, # the last")


def encode_subscribe(
    packet_id: int,
    topic_filters: Sequence[str],
    qos: int,
    *,
    protocol: int = MQTT_5,
    retain_handling: RetainHandling = RetainHandling.SEND_ON_SUBSCRIBE,
) -> bytes:
    """SUBSCRIBE, the same options for every filter. 3.1.1 has only the QoS byte (retain handling is MQTT 5)."""
    _check_protocol(protocol)
    if not topic_filters:
        raise ValueError("SUBSCRIBE needs at least one topic filter")
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS {qos}")
    options = qos | (int(retain_handling) << 4 if protocol == MQTT_5 else 0)
    body = _packet_id(packet_id) + (b"\x00" if protocol == MQTT_5 else b"")
    for topic_filter in topic_filters:
        check_topic_filter(topic_filter)
        body += _utf8(topic_filter) + bytes((options,))
    return _packet(_SUBSCRIBE, body)


def encode_unsubscribe(packet_id: int, topic_filters: Sequence[str], *, protocol: int = MQTT_5) -> bytes:
    _check_protocol(protocol)
    if not topic_filters:
        raise ValueError("UNSUBSCRIBE needs at least one topic filter")
    body = _packet_id(packet_id) + (b"\x00" if protocol == MQTT_5 else b"")
    for topic_filter in topic_filters:
        check_topic_filter(topic_filter)
        body += _utf8(topic_filter)
    return _packet(_UNSUBSCRIBE, body)


def check_topic_name(topic: str) -> None:
    """ValueError unless `topic` can be published to: not empty, no wildcard, a valid MQTT string."""
    if not topic or "+" in topic or "#" in topic:
        raise ValueError(f"cannot publish to {topic[:60]!r}: empty, or contains a wildcard")


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 1,
    packet_id: int | None = None,
    retain: bool = False,
    dup: bool = False,
    protocol: int = MQTT_5,
) -> bytes:
    """PUBLISH at QoS 0 or 1 (QoS 2's handshake is not implemented here), without MQTT 5 properties."""
    _check_protocol(protocol)
    check_topic_name(topic)
    if qos not in (0, 1):
        raise ValueError(f"QoS {qos}: this client publishes at QoS 0 or 1")
    if (qos == 0) != (packet_id is None):
        raise ValueError("a packet identifier is needed at QoS 1 and not allowed at QoS 0")
    if dup and qos == 0:
        raise ValueError("DUP is not allowed at QoS 0")
    head = _utf8(topic) + (_packet_id(packet_id) if packet_id is not None else b"")
    if protocol == MQTT_5:
        head += b"\x00"
    return _packet(_PUBLISH | 0x08 * dup | qos << 1 | retain, head + payload)


def encode_pubacks(packet_ids: Iterable[int]) -> bytes:
    """One PUBACK a packet id, joined: 4 bytes each, the same in 3.1.1 and 5 (success needs no reason code)."""
    return b"".join([b"\x40\x02" + _packet_id(packet_id) for packet_id in packet_ids])


def encode_disconnect(reason_code: int = 0, *, protocol: int = MQTT_5) -> bytes:
    _check_protocol(protocol)
    if reason_code == 0:
        return DISCONNECT
    if protocol == MQTT_311:
        raise ValueError("an MQTT 3.1.1 DISCONNECT has no reason code")
    return _packet(_DISCONNECT, bytes((reason_code, 0)))


def with_dup(packet: bytes) -> bytes:
    """The same QoS 1 PUBLISH with the DUP flag set, as MQTT requires when it is sent again."""
    return bytes((packet[0] | 0x08,)) + packet[1:]


# -- the decoder -----------------------------------------------------------------------------------------------------


def decode_packets(
    buffer: bytes | bytearray, protocol: int = MQTT_5, max_packet_size: int = MAX_PACKET_SIZE
) -> tuple[list[Packet], int]:
    """Every complete packet at the start of `buffer`, in order, and how many bytes they take; an incomplete
    packet at the end is left for the next read. Raises ProtocolError at the first malformed one."""
    data = buffer if type(buffer) is bytes else bytes(buffer)  # slices of bytes are bytes: one copy a read
    end = len(data)
    packets: list[Packet] = []
    append = packets.append
    v5 = protocol == MQTT_5
    pos = 0
    while end - pos >= 2:
        first = data[pos]
        length = data[pos + 1]
        start = pos + 2
        if length & 0x80:
            length, start = read_varint(data, pos + 1, end)
            if length < 0:
                break
        stop = start + length
        if stop - pos > max_packet_size:
            raise ProtocolError(f"packet of {stop - pos} bytes is over the maximum packet size {max_packet_size}")
        if stop > end:
            break
        if first & 0xF0 != _PUBLISH:
            append(_decode_control(first, data, start, stop, v5))
            pos = stop
            continue
        # PUBLISH, the hot path: fixed header, topic, packet id, property length; nothing else is looked at.
        qos = first >> 1 & 3
        topic_end = start + 2 + (data[start] << 8 | data[start + 1]) if length >= 2 else stop + 1
        if qos:
            if qos == 3:
                raise ProtocolError("PUBLISH with QoS 3")
            body = topic_end + 2
            if body > stop:
                raise ProtocolError("PUBLISH truncated before its packet identifier")
            packet_id: int | None = data[topic_end] << 8 | data[topic_end + 1]
            if not packet_id:
                raise ProtocolError("PUBLISH with packet identifier 0")
        elif first & 0x08:
            raise ProtocolError("PUBLISH at QoS 0 with the DUP flag set")
        else:
            body, packet_id = topic_end, None
        if v5:
            if body >= stop:
                raise ProtocolError("PUBLISH truncated before its properties")
            skip = data[body]
            body += 1 + skip if skip < 0x80 else prop.skip_properties(data, body, stop) - body
        if body > stop:
            raise ProtocolError("PUBLISH truncated inside its topic or properties")
        try:
            topic = data[start + 2 : topic_end].decode()
        except UnicodeDecodeError:
            raise ProtocolError("PUBLISH topic is not valid UTF-8") from None
        if "+" in topic or "#" in topic or "\0" in topic or not topic:
            # Empty: a topic alias, which this client never allows (Topic Alias Maximum stays 0).
            raise ProtocolError(f"PUBLISH topic {topic[:60]!r} is empty or has a wildcard or U+0000")
        append(_new_tuple(Publish, (topic, data[body:stop], qos, packet_id, first & 0x08 != 0, first & 1 != 0)))
        pos = stop
    return packets, pos


def _decode_control(first: int, data: bytes, start: int, stop: int, v5: bool) -> Packet:
    if first == _PUBACK:
        packet_id = _read_packet_id(data, start, stop, "PUBACK")
        if not v5 and stop != start + 2:
            raise ProtocolError(f"MQTT 3.1.1 PUBACK of {stop - start} bytes")
        # MQTT 5 may add a reason code and properties (a reason string); 2 bytes mean success.
        return PubAck(packet_id, data[start + 2] if v5 and stop > start + 2 else 0)
    if first == _PINGRESP:
        if stop != start:
            raise ProtocolError("PINGRESP with a body")
        return PingResp()
    if first in (_SUBACK, _UNSUBACK):
        packet_id = _read_packet_id(data, start, stop, _PACKET_NAMES[first >> 4])
        pos = prop.skip_properties(data, start + 2, stop) if v5 else start + 2
        codes = tuple(data[pos:stop])
        if first == _SUBACK:
            if not codes or any(c > 2 and c < 0x80 for c in codes):
                raise ProtocolError(f"SUBACK with reason codes {codes}")
            return SubAck(packet_id, codes)
        if not v5 and codes:
            raise ProtocolError(f"MQTT 3.1.1 UNSUBACK of {stop - start} bytes")
        return UnsubAck(packet_id, codes)
    if first == _CONNACK:
        return _decode_connack(data, start, stop, v5)
    if first == _DISCONNECT:
        if not v5 or stop == start:
            return Disconnect()
        reason_string = None
        if stop > start + 1:
            found, _ = prop.read_properties(data, start + 1, stop)
            reason_string = found.get(prop.REASON_STRING)
        return Disconnect(data[start], reason_string if isinstance(reason_string, str) else None)
    kind = first >> 4
    raise ProtocolError(f"unexpected packet from the broker: {_PACKET_NAMES[kind]} (first byte {first:#04x})")


def _read_packet_id(data: bytes, start: int, stop: int, what: str) -> int:
    if stop - start < 2:
        raise ProtocolError(f"{what} truncated before its packet identifier")
    return data[start] << 8 | data[start + 1]


def _decode_connack(data: bytes, start: int, stop: int, v5: bool) -> ConnAck:
    if stop - start < 2 or (not v5 and stop - start != 2):
        raise ProtocolError(f"CONNACK of {stop - start} bytes")
    flags, reason_code = data[start], data[start + 1]
    if flags & 0xFE:
        raise ProtocolError(f"CONNACK flags {flags:#04x}")
    if not v5:
        return ConnAck(bool(flags), reason_code)
    found, end = prop.read_properties(data, start + 2, stop) if stop > start + 2 else ({}, stop)
    if end != stop:
        raise ProtocolError("CONNACK has bytes after its properties")

    def number(identifier: int) -> int | None:
        value = found.get(identifier)
        return value if isinstance(value, int) else None

    text = found.get(prop.REASON_STRING)
    client_id = found.get(prop.ASSIGNED_CLIENT_IDENTIFIER)
    receive_maximum = number(prop.RECEIVE_MAXIMUM)
    if receive_maximum == 0:
        raise ProtocolError("CONNACK with Receive Maximum 0")
    maximum_qos, retain = number(prop.MAXIMUM_QOS), number(prop.RETAIN_AVAILABLE)
    return ConnAck(
        session_present=bool(flags),
        reason_code=reason_code,
        receive_maximum=receive_maximum or 65535,
        maximum_packet_size=number(prop.MAXIMUM_PACKET_SIZE),
        server_keepalive=number(prop.SERVER_KEEP_ALIVE),
        assigned_client_id=client_id if isinstance(client_id, str) else None,
        session_expiry=number(prop.SESSION_EXPIRY_INTERVAL),
        maximum_qos=2 if maximum_qos is None else maximum_qos,
        retain_available=retain is None or bool(retain),
        reason_string=text if isinstance(text, str) else None,
    )
