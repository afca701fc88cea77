"""Which broker the demo runs: amqtt (pure Python, always there) or Mosquitto (when installed)."""

from __future__ import annotations

from pathlib import Path

from gateway.demo.brokers.base import BrokerKind, DemoBroker


def open_broker(kind: BrokerKind, workdir: Path) -> DemoBroker:
    """An unstarted broker of this kind; Mosquitto keeps its config, state and log in `workdir`."""
    if kind == "amqtt":
        from gateway.demo.brokers.amqtt_broker import AmqttBroker  # noqa: PLC0415 - amqtt loads only when used

        return AmqttBroker()
    from gateway.demo.brokers.mosquitto_broker import MosquittoBroker, require_mosquitto  # noqa: PLC0415

    return MosquittoBroker(require_mosquitto(), workdir)
