"""Command line: `gateway run`, `gateway check-config`, `gateway demo`, `gateway query`."""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
import yaml

from gateway.config import GatewayConfig, load_config, masked_dump
from gateway.errors import ConfigError, DemoError
from gateway.pipeline import Pipeline
from gateway.query import device_counts, format_pairs, iter_table_lines, latest_readings, open_readonly, rfc3339
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


DEMO_DB = Path("data/demo.db")


@app.command()
def demo(
    db: Annotated[Path, typer.Option(help="SQLite file the readings are stored in (kept after the demo).")] = DEMO_DB,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds; default: run until Ctrl-C.")
    ] = None,
    devices: Annotated[int, typer.Option(min=1, max=100_000, help="Simulated devices.")] = 50,
    rate: Annotated[float, typer.Option(min=0.01, max=1000, help="Messages per second per device.")] = 5.0,
    seed: Annotated[int, typer.Option(help="Seed of the simulated fleet.")] = 1,
    log_level: Annotated[str, typer.Option(help="Gateway log level (to stderr).")] = "WARNING",
) -> None:
    """Run the whole path on embedded defaults: a private Mosquitto, a simulated fleet, the gateway, SQLite."""
    from gateway.demo import DemoOptions, run_demo  # noqa: PLC0415 - imports the simulator

    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter("must be DEBUG, INFO, WARNING or ERROR", param_hint="--log-level")
    options = DemoOptions(db=db, duration_s=duration, devices=devices, rate_per_device=rate, seed=seed, log_level=level)
    try:
        code = run_demo(options)
    except DemoError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    raise typer.Exit(code)


@app.command()
def query(
    db: Annotated[Path, typer.Option(help="SQLite file written by the gateway's sqlite sink.")] = DEMO_DB,
    device: Annotated[str | None, typer.Option(help="Only this device.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many of the latest readings to show.")] = 20,
) -> None:
    """Print the latest stored readings of a SQLite file, and how many readings each device has."""
    try:
        conn = open_readonly(db)
    except DemoError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    try:
        latest = latest_readings(conn, device, limit)
        counts = device_counts(conn, device)
    finally:
        conn.close()
    total = sum(c.readings for c in counts)
    scope = f"device {device}" if device else f"{len(counts)} devices"
    rich = sys.stdout.isatty()
    # A narrow terminal gets one field per line rather than fields cut into pieces.
    sep = "\n" if rich and shutil.get_terminal_size().columns < 150 else " "
    if not latest:
        typer.echo(f"no readings in {db}" + (f" for device {device}" if device else ""))
        return
    typer.echo(f"{len(latest)} latest of {total:,} readings from {scope} in {db}, newest first:")
    _print_table(
        ["time (UTC)", "device", "fields", "tags", "reading id"],
        [
            [rfc3339(r.time_ns), r.device, format_pairs(r.fields, sep), format_pairs(r.tags, sep), r.reading_id]
            for r in latest
        ],
        rich,
        # On a narrow terminal tags and ids may fold; times, devices and fields (one per line) stay whole.
        wrapping=frozenset({3, 4}) if sep == "\n" else frozenset({2, 3}),
    )
    typer.echo("")
    typer.echo("readings per device:")
    _print_table(
        ["device", "readings", "first", "last"],
        [[c.device, f"{c.readings:,}", rfc3339(c.first_ns), rfc3339(c.last_ns)] for c in counts],
        rich,
        right_aligned=frozenset({1}),
    )


def _print_table(
    headers: list[str],
    rows: list[list[str]],
    rich: bool,
    right_aligned: frozenset[int] = frozenset(),
    wrapping: frozenset[int] = frozenset(),
) -> None:
    if rich:
        from rich.console import Console  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415

        table = Table(box=None, header_style="bold", pad_edge=False)
        for i, header in enumerate(headers):
            table.add_column(
                header,
                justify="right" if i in right_aligned else "left",
                no_wrap=i not in wrapping,
                overflow="fold",
            )
        for row in rows:
            table.add_row(*row)
        Console(highlight=False).print(table)
        return
    for line in iter_table_lines(headers, rows, right_aligned):
        typer.echo(line)


def main() -> None:
    app()
