"""MQTT 5 properties (section 2.2.2): the wire types, an encoder for the few we send, a strict reader for the
few packets whose properties we look at. PUBLISH properties are skipped by length, never read here."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from gateway.mqtt.errors import ProtocolError

# Property identifiers this client sends or reads.
SESSION_EXPIRY_INTERVAL = 0x11
ASSIGNED_CLIENT_IDENTIFIER = 0x12
SERVER_KEEP_ALIVE = 0x13
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
MAXIMUM_QOS = 0x24
RETAIN_AVAILABLE = 0x25
USER_PROPERTY = 0x26
MAXIMUM_PACKET_SIZE = 0x27
SUBSCRIPTION_IDENTIFIER = 0x0B

_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_TYPES = {
    0x01: _BYTE,  # Payload Format Indicator
    0x02: _FOUR,  # Message Expiry Interval
    0x03: _UTF8,  # Content Type
    0x08: _UTF8,  # Response Topic
    0x09: _BINARY,  # Correlation Data
    SUBSCRIPTION_IDENTIFIER: _VARINT,
    SESSION_EXPIRY_INTERVAL: _FOUR,
    ASSIGNED_CLIENT_IDENTIFIER: _UTF8,
    SERVER_KEEP_ALIVE: _TWO,
    0x15: _UTF8,  # Authentication Method
    0x16: _BINARY,  # Authentication Data
    0x17: _BYTE,  # Request Problem Information
    0x18: _FOUR,  # Will Delay Interval
    0x19: _BYTE,  # Request Response Information
    0x1A: _UTF8,  # Response Information
    0x1C: _UTF8,  # Server Reference
    REASON_STRING: _UTF8,
    RECEIVE_MAXIMUM: _TWO,
    TOPIC_ALIAS_MAXIMUM: _TWO,
    0x23: _TWO,  # Topic Alias
    MAXIMUM_QOS: _BYTE,
    RETAIN_AVAILABLE: _BYTE,
    USER_PROPERTY: _PAIR,
    MAXIMUM_PACKET_SIZE: _FOUR,
    0x28: _BYTE,  # Wildcard Subscription Available
    0x29: _BYTE,  # Subscription Identifier Available
    0x2A: _BYTE,  # Shared Subscription Available
}
_REPEATABLE = {USER_PROPERTY, SUBSCRIPTION_IDENTIFIER}
_FIXED_SIZE = {_BYTE: 1, _TWO: 2, _FOUR: 4}

PropertyValue = int | str | bytes | tuple[str, str]


def encode_varint(value: int) -> bytes:
    """Variable Byte Integer (section 1.5.5): 7 bits a byte, least significant first, at most 4 bytes."""
    if not 0 <= value <= 268_435_455:
        raise ValueError(f"{value} does not fit a variable byte integer")
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:  # two bytes: every PUBLISH of 128 bytes to 16 kB, a third of the cost of encoding one
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while True:
        value, byte = divmod(value, 0x80)
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it); (-1, pos) when `data` ends inside it; ProtocolError past 4 bytes."""
    value = 0
    for offset in range(4):
        if pos + offset >= end:
            return -1, pos
        byte = data[pos + offset]
        value |= (byte & 0x7F) << 7 * offset
        if not byte & 0x80:
            return value, pos + offset + 1
    raise ProtocolError("variable byte integer longer than 4 bytes")


def encode_properties(properties: Iterable[tuple[int, int]]) -> bytes:
    """Numeric properties (the only kind this client sends), with their length in front."""
    body = bytearray()
    for identifier, value in properties:
        kind = _TYPES[identifier]
        body.append(identifier)
        if kind == _VARINT:
            body += encode_varint(value)
        else:
            body += value.to_bytes(_FIXED_SIZE[kind], "big")
    return encode_varint(len(body)) + bytes(body)


def skip_properties(data: bytes, pos: int, stop: int) -> int:
    """The position after the property block at `pos` (its length and its bytes), checked against `stop`."""
    length, after = read_varint(data, pos, stop)
    if length < 0 or after + length > stop:
        raise ProtocolError("properties run past the end of the packet")
    return after + length


def read_properties(data: bytes, pos: int, stop: int) -> tuple[dict[int, PropertyValue], int]:
    """Every property of the block at `pos`: {identifier: value} (repeatable ones: the last), and the end."""
    end = skip_properties(data, pos, stop)
    pos = read_varint(data, pos, stop)[1]
    found: dict[int, PropertyValue] = {}
    while pos < end:
        identifier = data[pos]
        pos += 1
        kind = _TYPES.get(identifier)
        if kind is None:
            raise ProtocolError(f"unknown property identifier {identifier:#04x}")
        if identifier in found and identifier not in _REPEATABLE:
            raise ProtocolError(f"property {identifier:#04x} given twice")
        value: PropertyValue
        if kind in _FIXED_SIZE:
            size = _FIXED_SIZE[kind]
            if pos + size > end:
                raise ProtocolError(f"property {identifier:#04x} truncated")
            value = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        elif kind == _VARINT:
            value, pos = read_varint(data, pos, end)
            if value < 0:
                raise ProtocolError(f"property {identifier:#04x} truncated")
        elif kind == _BINARY:
            value, pos = read_binary(data, pos, end)
        elif kind == _UTF8:
            value, pos = read_utf8(data, pos, end)
        else:
            key, pos = read_utf8(data, pos, end)
            text, pos = read_utf8(data, pos, end)
            value = (key, text)
        found[identifier] = value
    return found, end


def read_binary(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise ProtocolError("length of a string or binary field truncated")
    (size,) = struct.unpack_from("!H", data, pos)
    pos += 2
    if pos + size > end:
        raise ProtocolError("string or binary field runs past the end of the packet")
    return data[pos : pos + size], pos + size


def read_utf8(data: bytes, pos: int, end: int) -> tuple[str, int]:
    raw, pos = read_binary(data, pos, end)
    return decode_utf8(raw), pos


def decode_utf8(raw: bytes) -> str:
    """A UTF-8 Encoded String (section 1.5.4): well-formed, no surrogates (the codec refuses them), no U+0000."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"string is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    if "\0" in text:
        raise ProtocolError("string contains U+0000")
    return text
