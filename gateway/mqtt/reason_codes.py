"""MQTT reason codes (MQTT 5 section 2.4) and MQTT 3.1.1 CONNACK return codes, named for messages."""

from __future__ import annotations

SUCCESS = 0x00
NO_MATCHING_SUBSCRIBERS = 0x10
UNSPECIFIED_ERROR = 0x80
SESSION_TAKEN_OVER = 0x8E
FAILURE_311 = 0x80  # the only failure code of an MQTT 3.1.1 SUBACK

_NAMES_5 = {
    0x00: "success",
    0x01: "granted QoS 1",
    0x02: "granted QoS 2",
    0x04: "disconnect with will message",
    0x10: "no matching subscribers",
    0x11: "no subscription existed",
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8C: "bad authentication method",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x90: "topic name invalid",
    0x91: "packet identifier in use",
    0x92: "packet identifier not found",
    0x93: "receive maximum exceeded",
    0x94: "topic alias invalid",
    0x95: "packet too large",
    0x96: "message rate too high",
    0x97: "quota exceeded",
    0x98: "administrative action",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
    0xA0: "maximum connect time",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}

_CONNACK_311 = {
    0: "connection accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def reason_name(code: int, protocol: int, *, connack: bool = False) -> str:
    """A readable name for `code` as the broker meant it (3.1.1 CONNACK return codes differ from MQTT 5's)."""
    if connack and (protocol == 4 or 0 < code < 0x80):  # the latter: a 3.1.1 broker refusing MQTT 5
        return _CONNACK_311.get(code, "unknown return code")
    if protocol == 4 and code == FAILURE_311:
        return "failure"
    return _NAMES_5.get(code, "unknown reason code")


def is_failure(code: int, protocol: int, *, connack: bool = False) -> bool:
    """Codes from 0x80 up fail. A CONNACK fails with any non-zero code: a broker that knows only 3.1.1 answers an
    MQTT 5 CONNECT with return code 1 (unacceptable protocol version)."""
    return code != 0 if connack else code >= 0x80
