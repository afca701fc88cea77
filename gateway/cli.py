"""Command line: `gateway run`, `gateway check-config`."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
import yaml

from gateway.config import GatewayConfig, load_config, masked_dump
from gateway.errors import ConfigError
from gateway.pipeline import Pipeline
from gateway.sinks import Sink

app = typer.Typer(add_completion=False, no_args_is_help=True, help="IoT telemetry ingestion gateway.")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file; GATEWAY_* environment variables override it."),
]
EXIT_CONFIG = 2


def _load(path: Path | None) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None


def build_sinks(config: GatewayConfig) -> list[Sink]:
    sinks: list[Sink] = []
    if config.influx is not None:
        from gateway.sinks.influx import InfluxSink  # noqa: PLC0415 - influxdb-client is slow to import

        sinks.append(InfluxSink(config.influx))
    if config.sqlite is not None:
        from gateway.sinks.sqlite import SqliteSink  # noqa: PLC0415

        sinks.append(SqliteSink(config.sqlite))
    return sinks


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validate the configuration and print the effective values, secrets masked."""
    loaded = _load(config)
    typer.echo(yaml.safe_dump(masked_dump(loaded), sort_keys=False).rstrip())
    typer.echo("# configuration is valid", err=True)


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    loaded = _load(config)
    logging.basicConfig(
        level=loaded.log.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("gateway").info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    Pipeline(loaded, build_sinks(loaded)).run(stop)


def main() -> None:
    app()
