"""MQTT 3.1.1 and 5 packets, as far as a publishing device needs them: encode CONNECT, PUBLISH, PINGREQ,
DISCONNECT; split a byte stream into packets; read CONNACK and PUBACK.

Pure functions over bytes, so the asyncio client (`aioclient`) only moves bytes and keeps state.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

V311 = 4
V5 = 5

CONNACK = 2
PUBLISH = 3
PUBACK = 4
PINGRESP = 13
DISCONNECT = 14

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # MQTT 5: reason 0 (normal), no properties; the same two bytes in 3.1.1

_PROP_SESSION_EXPIRY = 0x11
_PROP_RECEIVE_MAXIMUM = 0x21
# Property identifier -> size of its value (-1: UTF-8 string or binary data, -2: string pair, -4: varint).
_PROPERTY_SIZES = {
    0x01: 1, 0x02: 4, 0x03: -1, 0x08: -1, 0x09: -1, 0x0B: -4, 0x11: 4, 0x12: -1, 0x13: 2, 0x15: -1,
    0x16: -1, 0x17: 1, 0x18: 4, 0x19: 1, 0x1A: -1, 0x1C: -1, 0x1F: -1, 0x21: 2, 0x22: 2, 0x23: 2,
    0x24: 1, 0x25: 1, 0x26: -2, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1,
}  # fmt: skip

CONNACK_V5_REASONS = {
    0x80: "unspecified error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x95: "packet too large",
    0x97: "quota exceeded",
}
CONNACK_V311_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class ProtocolError(ValueError):
    """The broker sent bytes that are not MQTT as we speak it."""


def varint(n: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property lengths)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def connect_packet(
    client_id: str,
    *,
    version: int = V5,
    keepalive_s: int = 60,
    clean_start: bool = False,
    session_expiry_s: int = 0,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """CONNECT. A persistent session: clean_start False and (MQTT 5) a session expiry above 0."""
    flags = 0x02 if clean_start else 0
    payload = utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload_tail = utf8(username)
        if password is not None:
            flags |= 0x40
            payload_tail += utf8(password)
    else:
        payload_tail = b""
    header = utf8("MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive_s)
    if version == V5:
        props = bytes([_PROP_SESSION_EXPIRY]) + struct.pack("!I", session_expiry_s) if session_expiry_s else b""
        header += varint(len(props)) + props
    body = header + payload + payload_tail
    return b"\x10" + varint(len(body)) + body


def publish_packet(topic: str, payload: bytes, *, qos: int, packet_id: int = 0, version: int = V5) -> bytes:
    """PUBLISH (QoS 0 or 1); `with_dup` marks a resend."""
    variable = utf8(topic)
    if qos:
        variable += struct.pack("!H", packet_id)
    if version == V5:
        variable += b"\x00"  # no properties
    body_len = len(variable) + len(payload)
    return bytes([0x30 | (qos << 1)]) + varint(body_len) + variable + payload


def with_dup(packet: bytes) -> bytes:
    return bytes([packet[0] | 0x08]) + packet[1:]


class Packet(NamedTuple):
    kind: int  # the packet type, 1..15
    flags: int
    body: bytes


def split_packets(buffer: bytearray) -> list[Packet]:
    """Take every complete packet off the front of `buffer` (a partial one stays there)."""
    packets: list[Packet] = []
    pos = 0
    end = len(buffer)
    while end - pos >= 2:
        length = 0
        shift = 0
        i = pos + 1
        while True:
            if i >= end:
                del buffer[:pos]
                return packets
            byte = buffer[i]
            length |= (byte & 0x7F) << shift
            i += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise ProtocolError("remaining length longer than 4 bytes")
        if end - i < length:
            break
        first = buffer[pos]
        packets.append(Packet(first >> 4, first & 0x0F, bytes(buffer[i : i + length])))
        pos = i + length
    del buffer[:pos]
    return packets


class ConnAck(NamedTuple):
    session_present: bool
    reason: int  # 0: accepted
    receive_maximum: int | None  # MQTT 5: how many unacknowledged QoS 1 messages the broker takes

    def refusal(self, version: int) -> str | None:
        if self.reason == 0:
            return None
        if version == V5:
            return f"{CONNACK_V5_REASONS.get(self.reason, 'refused')} (reason code 0x{self.reason:02x})"
        return CONNACK_V311_REASONS.get(self.reason, f"return code {self.reason}")


def parse_connack(body: bytes, version: int) -> ConnAck:
    if len(body) < 2:
        raise ProtocolError(f"CONNACK of {len(body)} bytes")
    receive_maximum = None
    if version == V5 and len(body) > 2:
        receive_maximum = _properties(body, 2).get(_PROP_RECEIVE_MAXIMUM)
    return ConnAck(bool(body[0] & 1), body[1], receive_maximum)


def parse_puback(body: bytes) -> tuple[int, int]:
    """(packet id, reason code); 3.1.1 and a bare MQTT 5 PUBACK have no reason code: 0."""
    if len(body) < 2:
        raise ProtocolError(f"PUBACK of {len(body)} bytes")
    packet_id = (body[0] << 8) | body[1]
    return packet_id, body[2] if len(body) > 2 else 0


def _properties(body: bytes, pos: int) -> dict[int, int]:
    """Integer-valued properties starting at `pos` (the property length); others are skipped."""
    length, pos = _read_varint(body, pos)
    end = pos + length
    found: dict[int, int] = {}
    while pos < end:
        ident = body[pos]
        pos += 1
        size = _PROPERTY_SIZES.get(ident)
        if size is None:
            raise ProtocolError(f"unknown property 0x{ident:02x}")
        if size > 0:
            found[ident] = int.from_bytes(body[pos : pos + size], "big")
            pos += size
        elif size == -4:
            found[ident], pos = _read_varint(body, pos)
        else:
            for _ in range(-size):
                pos += 2 + int.from_bytes(body[pos : pos + 2], "big")
    return found


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
