"""`gateway query`: the latest readings of a SQLite store, readings per device, and the alert transitions."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from gateway.errors import DemoError
from gateway.rfc3339 import rfc3339
from gateway.sinks.sqlite import StoredReading
from gateway.tools.commandline import DEMO_DB, counted, exit_with_error
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
)


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
        exit_with_error(exc, exc.exit_code)
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
        f"alerts: {counted(len(transitions), 'transition')} stored, {len(firing)} firing now; "
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
