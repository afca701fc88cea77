"""Fuzzed MQTT messages: a topic, and a payload valid for the format the topic maps to, or for another one,
mutated, a random JSON tree, deep nesting, random bytes or invalid UTF-8; about half of them clean.
"""

from __future__ import annotations

from tests.support.fuzz.choices import Source, chance, dirty, pick
from tests.support.fuzz.payloads import (
    gen_json,
    gen_line,
    gen_native,
    gen_senml,
    gen_shelly,
    gen_thingsboard,
    gen_value,
)
from tests.support.fuzz.topics import FORMATS, PLAIN, ROUTER, gen_device, gen_topic
from tests.support.fuzz.values import dump, gen_tree

INVALID_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\xe2\x82"]


def format_payload(src: Source, fmt: str, device: str, shelly: bool = False) -> bytes:
    if fmt == "native":
        return gen_native(src, device).encode()
    if fmt == "json":
        if chance(src, 80 if shelly else 10):
            return dump(gen_shelly(src, device)).encode()
        return gen_json(src, tasmota=chance(src, 50)).encode()
    if fmt == "value":
        return gen_value(src)
    if fmt == "senml":
        return gen_senml(src).encode()
    if fmt == "thingsboard":
        return gen_thingsboard(src).encode()
    return gen_line(src, device).encode()


def mutate(src: Source, payload: bytes) -> bytes:
    at = src.integer(0, len(payload))
    how = src.integer(0, 5)
    if how == 0:
        return payload[:at]
    if how == 1:
        inserted = pick(src, [b'"', b"{", b"}", b"[", b",", b":", b"\\", b"\n", b"\x00", b"\xff"])
        return payload[:at] + inserted + payload[at:]
    if how == 2:
        return payload[:at] + payload[at + 1 :]
    if how == 3:
        return payload[:at] + payload[at:] * 2
    if how == 4:
        return payload[:at] + pick(src, INVALID_UTF8) + payload[at:]
    return payload.replace(b"1", b"9" * 400, 1)


def generic_payload(src: Source) -> bytes:
    kind = src.integer(0, 9)
    if kind < 3:
        return dump(gen_tree(src, 5)).encode()
    if kind < 5:  # deep nesting, within and far beyond the limit of 32
        depth = pick(src, [31, 32, 33, 100, 5_000])
        if chance(src, 50):
            return b'{"a":' * depth + b"1" + b"}" * depth
        return b'{"metrics": ' + b"[" * depth + b"]" * depth + b"}"
    if kind < 6:
        return src.binary(0, 40)
    if kind < 7:
        return pick(src, INVALID_UTF8) + src.text(PLAIN, 0, 5).encode()
    if kind < 8:  # beyond validation.max_payload_bytes, and just within it
        size = pick(src, [256 * 1024 + 1, 256 * 1024 - 40, 300_000])
        return b'{"metrics": {"t": 1}, "pad": "' + b"x" * size + b'"}'
    return pick(src, [b"", b" ", b"null", b"1", b'"s"', b"[]", b"{}", b"[[]]", b"[{}]", b"NaN", b"\xef\xbb\xbf{}"])


def gen_payload(src: Source, topic: str) -> bytes:
    match = ROUTER.route(topic)
    fmt = match.mapping.format if match is not None and not dirty(src, 15) else pick(src, FORMATS)
    device = match.device if match is not None and match.device is not None else gen_device(src)
    shelly = match is not None and match.mapping.device_field is not None
    kind = 0 if src.clean else src.integer(0, 99)
    if kind < 70:
        return format_payload(src, fmt, device, shelly)
    if kind < 85:
        return mutate(src, format_payload(src, fmt, device, shelly))
    return generic_payload(src)


def gen_message(src: Source) -> tuple[str, bytes]:
    """One (topic, payload); about half of them clean."""
    src.clean = chance(src, 50)
    try:
        topic = gen_topic(src)
        return topic, gen_payload(src, topic)
    finally:
        src.clean = False
