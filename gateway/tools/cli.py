"""Command line: `gateway run`, `check-config`, `demo`, `query`, `deadletter list|replay`, `rules check|test`."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
import yaml

from gateway.config.advisories import config_warnings
from gateway.config.schema import GatewayConfig, check_writable_paths, load_config, masked_dump
from gateway.errors import ConfigError, DemoError, ReplayError
from gateway.pipeline import Pipeline
from gateway.sinks import build_sinks
from gateway.sinks.sqlite import StoredReading
from gateway.telemetry.logs import configure as configure_logging
from gateway.tools.query import (
    AlertRow,
    DeviceCount,
    alert_rows,
    alert_time,
    device_counts,
    firing_now,
    format_number,
    format_pairs,
    iter_table_lines,
    latest_readings,
    open_readonly,
    rfc3339,
)
from gateway.tools.replay import Example, ReplayReport, list_rejected, parse_since, replay
from gateway.tools.rules import rules_app

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


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validate the configuration and print the effective values, secrets masked."""
    loaded = _load(config)
    typer.echo(yaml.safe_dump(masked_dump(loaded), sort_keys=False).rstrip())
    for warning in config_warnings(loaded, os.environ):
        typer.echo(f"warning: {warning}", err=True)
    typer.echo("# configuration is valid", err=True)


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    loaded = _load(config)
    try:
        check_writable_paths(loaded)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
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
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    # SIGHUP re-reads the alert rules (an invalid file is refused and the old rules stay).
    signal.signal(signal.SIGHUP, lambda _signum, _frame: pipeline.request_rules_reload())
    status = pipeline.run(stop)
    if status:
        raise typer.Exit(status)


DEMO_DB = Path("data/demo.db")


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
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    raise typer.Exit(code)


@app.command()
def query(
    db: Annotated[Path, typer.Option(help="SQLite file written by the gateway's sqlite sink.")] = DEMO_DB,
    device: Annotated[str | None, typer.Option(help="Only this device.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many of the latest readings to show.")] = 20,
    alerts: Annotated[int, typer.Option(min=0, help="How many of the latest alert transitions to show.")] = 10,
) -> None:
    """Print the latest stored readings of a SQLite file, how many readings each device has, and the latest
    alert transitions with the alerts firing now."""
    try:
        conn = open_readonly(db)
    except DemoError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    try:
        latest = latest_readings(conn, device, limit)
        counts = device_counts(conn, device)
        transitions = alert_rows(conn, device)
    finally:
        conn.close()
    total = sum(c.readings for c in counts)
    scope = f"device {device}" if device else f"{len(counts)} devices"
    rich = sys.stdout.isatty()
    # A narrow terminal gets one field per line rather than fields cut into pieces.
    sep = "\n" if rich and shutil.get_terminal_size().columns < 150 else " "
    if latest:
        _print_readings(db, latest, counts, scope, total, rich, sep)
    else:
        typer.echo(f"no readings in {db}" + (f" for device {device}" if device else ""))
    if alerts:
        typer.echo("")
        _print_alerts(transitions, alerts, rich)


def _print_readings(
    db: Path, latest: list[StoredReading], counts: list[DeviceCount], scope: str, total: int, rich: bool, sep: str
) -> None:
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


def _print_alerts(transitions: list[AlertRow], limit: int, rich: bool) -> None:
    if not transitions:
        typer.echo("alerts: none stored")
        return
    firing = firing_now(transitions)
    shown = transitions[:limit]
    typer.echo(
        f"alerts: {_count(len(transitions), 'transition')} stored, {len(firing)} firing now; "
        f"the latest {len(shown)}, newest first:"
    )
    _print_table(
        ["time (UTC)", "rule", "device", "severity", "state", "value", "threshold"],
        [
            [
                alert_time(a.time_ns),
                a.rule,
                a.device,
                a.severity,
                a.state + (" (repeat)" if a.transition == "repeat" else ""),
                format_number(a.value),
                format_number(a.threshold),
            ]
            for a in shown
        ],
        rich,
        right_aligned=frozenset({5, 6}),
    )
    if firing:
        typer.echo("firing now: " + ", ".join(f"{a.rule} on {a.device}" for a in firing))


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


deadletter_app = typer.Typer(
    no_args_is_help=True, help="Rejected messages kept in the journal: list them, replay them through the config."
)
app.add_typer(deadletter_app, name="deadletter")
app.add_typer(rules_app, name="rules")

ReasonOption = Annotated[str | None, typer.Option(help="Only messages rejected for this reason (e.g. invalid_schema).")]
SinceOption = Annotated[
    str | None,
    typer.Option(
        help="Only messages received since then: RFC 3339 (2026-11-27T10:00:00Z) or a duration (30m, 1h, 2d)."
    ),
]


def _since_ns(since: str | None) -> int | None:
    if since is None:
        return None
    try:
        return parse_since(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None


def _filters_text(reason: str | None, since: str | None) -> str:
    shown = [f"reason {reason}"] if reason else []
    shown += [f"since {since}"] if since else []
    return f" ({', '.join(shown)})" if shown else ""


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _echo_examples(examples: list[Example], more: int) -> None:
    for example in examples:
        typer.echo(f"    {rfc3339(example.received_ns)}  {example.topic}  {example.detail}")
        typer.echo(f"      payload: {example.payload}")
    if more > 0:
        typer.echo(f"    ... and {more:,} more")


@deadletter_app.command("list")
def deadletter_list(
    config: ConfigOption = None,
    reason: ReasonOption = None,
    since: SinceOption = None,
    examples: Annotated[int, typer.Option(min=0, help="Examples shown per reason (the newest).")] = 3,
) -> None:
    """Show the rejected messages kept in the journal, grouped by reason, with examples."""
    loaded = _load(config)
    since_ns = _since_ns(since)
    try:
        summaries = list_rejected(loaded.journal.path, reason, since_ns, examples)
    except ReplayError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    path = loaded.journal.path
    if not summaries:
        typer.echo(f"no rejected messages in {path}{_filters_text(reason, since)}")
        return
    total = sum(s.messages for s in summaries)
    typer.echo(
        f"{_count(total, 'rejected message')} in {path}{_filters_text(reason, since)} "
        f"(at most journal.max_rejected={loaded.journal.max_rejected:,} are kept, the oldest dropped first):"
    )
    for summary in summaries:
        unreplayable = (
            f", {summary.not_replayable:,} too large to replay (only their first bytes are kept)"
            if summary.not_replayable
            else ""
        )
        typer.echo("")
        typer.echo(
            f"  {summary.reason}: {_count(summary.messages, 'message')}, first {rfc3339(summary.first_ns)}, "
            f"last {rfc3339(summary.last_ns)}{unreplayable}"
        )
        _echo_examples(summary.examples, summary.messages - len(summary.examples))


@deadletter_app.command("replay")
def deadletter_replay(
    config: ConfigOption = None,
    reason: ReasonOption = None,
    since: SinceOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen; write nothing.")] = False,
) -> None:
    """Run the rejected messages kept in the journal through the current config; store what now passes, once."""
    loaded = _load(config)
    since_ns = _since_ns(since)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        report = replay(loaded, reason, since_ns, dry_run=dry_run)
    except ReplayError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _echo_replay(report, loaded.journal.path, _filters_text(reason, since))


def _echo_replay(report: ReplayReport, path: Path, filters: str) -> None:
    if report.matched == 0:
        typer.echo(f"nothing to replay: no rejected messages in {path}{filters}")
        return
    matched = _count(report.matched, "rejected message")
    duplicates = _count(report.duplicates, "duplicate reading")
    if report.dry_run:
        typer.echo(
            f"dry run, nothing written: of {matched} in {path}{filters}, {report.replayed:,} would be stored as "
            f"{_count(report.readings_stored, 'reading')} ({duplicates} dropped)"
        )
    else:
        typer.echo(
            f"replayed {report.replayed:,} of {matched} in {path}{filters} -> "
            f"{_count(report.readings_stored, 'reading')} stored ({', '.join(report.sinks)}), {duplicates} dropped"
            + ("; the replayed messages are removed from the journal" if report.replayed else "")
        )
    if report.not_replayable:
        typer.echo(
            f"skipped {_count(report.not_replayable, 'message')} larger than validation.max_payload_bytes: only "
            "their first bytes are kept, so they cannot be replayed"
        )
    still = sum(report.still_rejected.values())
    if not still:
        typer.echo("still rejected: none")
        return
    verb = "would stay" if report.dry_run else "kept"
    typer.echo(f"still rejected ({verb} in the journal, with the reason the current config gives): {still:,}")
    for reason, count in report.still_rejected.most_common():
        typer.echo(f"  {reason}: {count:,}")
        examples = report.examples.get(reason, [])
        _echo_examples(examples, count - len(examples))


def main() -> None:
    app()
