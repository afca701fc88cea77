"""The MQTT client's one exception tree.

MqttError
├── ProtocolError       the peer sent bytes that are not valid MQTT: drop the connection and reconnect
├── ConnectionClosed    the connection is gone: socket closed or failed, keepalive expired, DISCONNECT
│   └── ConnectionRefused   the broker answered CONNECT with a failure reason code
└── SubscribeRefused    the broker refused some of the topic filters of a SUBSCRIBE
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.mqtt.reason_codes import reason_name


class MqttError(Exception):
    """Base of every error the MQTT client raises."""


class ProtocolError(MqttError):
    """Malformed or unexpected input from the broker; `reason` says what was wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConnectionClosed(MqttError):
    """The network connection ended. `reason_code` is the broker's (MQTT 5 DISCONNECT, or CONNACK) when it gave one;
    `peer_closed`: the broker closed (or reset) the connection without a word, as Mosquitto does on a takeover."""

    def __init__(self, message: str, reason_code: int | None = None, *, peer_closed: bool = False) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.peer_closed = peer_closed


class ConnectionRefused(ConnectionClosed):
    """CONNACK with a failure code (MQTT 3.1.1 return code 1-5, MQTT 5 reason code >= 0x80)."""

    def __init__(self, reason_code: int, protocol: int, reason_string: str | None = None) -> None:
        name = reason_name(reason_code, protocol, connack=True)
        detail = f": {reason_string}" if reason_string else ""
        super().__init__(f"broker refused the connection: {name} ({reason_code:#04x}){detail}", reason_code)


class SubscribeRefused(MqttError):
    """SUBACK refused these filters (filter -> reason code); the others in the same SUBSCRIBE are subscribed."""

    def __init__(self, refused: Mapping[str, int], protocol: int) -> None:
        listed = ", ".join(f"{f!r}: {reason_name(code, protocol)} ({code:#04x})" for f, code in refused.items())
        super().__init__(f"broker refused subscriptions: {listed}")
        self.refused = dict(refused)
