"""Command line: `gateway run`, `check-config`, `demo`, `query`, `deadletter list|replay`, `rules check|test`."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
import yaml

from gateway.config.advisories import config_warnings
from gateway.config.masking import masked_dump
from gateway.config.paths import check_writable_paths
from gateway.errors import ConfigError, DemoError
from gateway.pipeline import Pipeline
from gateway.runtime import tune_garbage_collector
from gateway.sinks import build_sinks
from gateway.telemetry.logs import configure as configure_logging
from gateway.tools.commandline import DEMO_DB, EXIT_CONFIG, ConfigOption, exit_with_error, load_or_exit
from gateway.tools.deadletter_command import deadletter_app
from gateway.tools.query_command import query
from gateway.tools.rules import rules_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="IoT telemetry ingestion gateway.")


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validate the configuration and print the effective values, secrets masked."""
    loaded = load_or_exit(config)
    typer.echo(yaml.safe_dump(masked_dump(loaded), sort_keys=False).rstrip())
    for warning in config_warnings(loaded, os.environ):
        typer.echo(f"warning: {warning}", err=True)
    typer.echo("# configuration is valid", err=True)


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    loaded = load_or_exit(config)
    try:
        check_writable_paths(loaded)
    except ConfigError as exc:
        exit_with_error(exc, EXIT_CONFIG)
    configure_logging(loaded.log.level, loaded.log.format)
    for warning in config_warnings(loaded, os.environ):
        logging.getLogger("gateway").warning("configuration: %s", warning)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("gateway").info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        pipeline = Pipeline(loaded, build_sinks(loaded))
    except ConfigError as exc:  # e.g. the journal is another gateway's (gateway/journal/lock.py)
        exit_with_error(exc, EXIT_CONFIG)
    # SIGHUP re-reads the alert rules (an invalid file is refused and the old rules stay).
    signal.signal(signal.SIGHUP, lambda _signum, _frame: pipeline.request_rules_reload())
    tune_garbage_collector()
    status = pipeline.run(stop)
    if status:
        raise typer.Exit(status)


@app.command()
def demo(
    db: Annotated[
        Path, typer.Option(help="SQLite file the readings and alerts are stored in (replaced at start, kept after).")
    ] = DEMO_DB,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds; default: run until Ctrl-C.")
    ] = None,
    devices: Annotated[int, typer.Option(min=1, max=100_000, help="Simulated devices.")] = 50,
    rate: Annotated[float, typer.Option(min=0.01, max=1000, help="Messages per second per device.")] = 5.0,
    seed: Annotated[int, typer.Option(help="Seed of the simulated fleet.")] = 1,
    log_level: Annotated[str, typer.Option(help="Gateway log level (to stderr).")] = "WARNING",
    broker: Annotated[
        str, typer.Option(help="amqtt (in process, nothing to install) or mosquitto (must be installed).")
    ] = "amqtt",
    dashboard: Annotated[
        bool | None,
        typer.Option(
            "--dashboard/--no-dashboard", help="Live dashboard, or plain lines; default: dashboard on a terminal."
        ),
    ] = None,
) -> None:
    """Run the whole path on one machine: an MQTT broker, a simulated fleet with faults and anomalies, the gateway
    with alert rules, SQLite, and a live dashboard."""
    from gateway.demo import DemoOptions, run_demo  # noqa: PLC0415 - imports the simulator

    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter("must be DEBUG, INFO, WARNING or ERROR", param_hint="--log-level")
    if broker not in ("amqtt", "mosquitto"):
        raise typer.BadParameter("must be amqtt or mosquitto", param_hint="--broker")
    options = DemoOptions(
        db=db,
        duration_s=duration,
        devices=devices,
        rate_per_device=rate,
        seed=seed,
        log_level=level,
        broker="amqtt" if broker == "amqtt" else "mosquitto",
        dashboard=dashboard,
    )
    try:
        code = run_demo(options)
    except DemoError as exc:
        exit_with_error(exc, exc.exit_code)
    raise typer.Exit(code)


app.command()(query)
app.add_typer(deadletter_app, name="deadletter")
app.add_typer(rules_app, name="rules")


def main() -> None:
    app()
