"""The demo's private MQTT broker: what the demo needs of one, and how it picks which (amqtt or Mosquitto)."""

from __future__ import annotations

import socket
from pathlib import Path
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


def open_broker(kind: BrokerKind, workdir: Path) -> DemoBroker:
    """An unstarted broker of this kind; Mosquitto keeps its config, state and log in `workdir`."""
    if kind == "amqtt":
        from gateway.demo.amqtt_broker import AmqttBroker  # noqa: PLC0415 - amqtt loads only when used

        return AmqttBroker()
    from gateway.demo.mosquitto_broker import MosquittoBroker, require_mosquitto  # noqa: PLC0415

    return MosquittoBroker(require_mosquitto(), workdir)
