"""Sinks store batches of readings. Each decides which of its errors are worth retrying."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from gateway.model import Reading

if TYPE_CHECKING:
    from gateway.config.schema import GatewayConfig


class Sink(Protocol):
    """Every sink passes tests/contract/test_sink_contract.py."""

    name: str

    def write(self, readings: Sequence[Reading]) -> None:
        """Store all of `readings` or raise RetryableSinkError / PermanentSinkError. Must be idempotent:
        writing the same reading twice leaves one copy (same series and timestamp overwrite)."""

    def close(self) -> None: ...


def build_sinks(config: GatewayConfig) -> list[Sink]:
    """The sinks the configuration names (`gateway run`, `gateway deadletter replay`)."""
    sinks: list[Sink] = []
    if config.influx is not None:
        from gateway.sinks.process import ProcessSink, SinkSpec  # noqa: PLC0415

        # In a child process of its own, on the other core (gateway/sinks/process.py); influxdb-client, slow to
        # import, is imported there only.
        sinks.append(ProcessSink("influx", SinkSpec("gateway.sinks.influx", "InfluxSink", (config.influx,))))
    if config.sqlite is not None:
        from gateway.sinks.sqlite import SqliteSink  # noqa: PLC0415

        sinks.append(SqliteSink(config.sqlite))
    if config.webhook is not None:
        from gateway.sinks.webhook import WebhookSink  # noqa: PLC0415

        sinks.append(WebhookSink(config.webhook))
    return sinks
