"""The demo's private MQTT broker: what the demo needs of one (amqtt_broker.py and mosquitto_broker.py are two;
open_broker.py picks which)."""

from __future__ import annotations

import socket
from typing import Literal, Protocol

LOCALHOST = "127.0.0.1"
BrokerKind = Literal["amqtt", "mosquitto"]
BROKER_KINDS: tuple[BrokerKind, ...] = ("amqtt", "mosquitto")


class DemoBroker(Protocol):
    """A broker on 127.0.0.1:<free port>, started and stopped by the demo."""

    name: str
    protocol: Literal["5", "3.1.1"]  # the MQTT version the gateway and the fleet speak to it

    @property
    def url(self) -> str: ...

    def describe(self) -> str:
        """One line for the demo's header: where it runs."""
        ...

    def start(self) -> None:
        """Listening when this returns; DemoError (exit 2) when it cannot start."""
        ...

    def subscribed(self, client_id: str, topic_filter: str) -> bool:
        """Whether `client_id` holds a subscription to `topic_filter` (messages before it would be lost)."""
        ...

    def log_tail(self) -> str:
        """What the broker said lately, for an error message."""
        ...

    def stop(self) -> None:
        """Idempotent; the demo calls it last, after the gateway stopped."""
        ...


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port
