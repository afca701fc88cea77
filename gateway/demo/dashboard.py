"""What `gateway demo` shows while it runs: a live dashboard on a terminal (rich Live), plain lines otherwise.

Both are fed the same `Snapshot`, taken from the pipeline's counters (in this process) and from the SQLite
file the gateway writes (devices seen, alerts: what `gateway query` will show).
"""

from __future__ import annotations

import sqlite3
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gateway.telemetry.metrics import Stats
from gateway.tools.query import AlertRow, alert_rows, alert_time, count_devices, firing_now, format_number

ALERTS_SHOWN = 8


@dataclass(frozen=True)
class Snapshot:
    elapsed_s: float
    rate_per_s: float  # messages received per second, over the last few seconds
    received: int
    stored: int
    duplicates: int
    rejected: Counter[str]
    devices: int
    alerts: list[AlertRow] = field(default_factory=list)  # stored transitions, newest first
    firing: list[AlertRow] = field(default_factory=list)


class Sampler:
    """Takes Snapshots; remembers recent receive counts for the rate."""

    def __init__(self, stats: Stats, conn: sqlite3.Connection, measurement: str, window_s: float = 4.0) -> None:
        self._stats = stats
        self._conn = conn
        self._measurement = measurement
        self._window_s = window_s
        self._history: list[tuple[float, int]] = [(0.0, stats.messages_received)]

    def take(self, elapsed_s: float) -> Snapshot:
        stats = self._stats
        received = stats.messages_received
        self._history.append((elapsed_s, received))
        while len(self._history) > 2 and elapsed_s - self._history[1][0] >= self._window_s:
            self._history.pop(0)
        then_s, then = self._history[0]
        rate = (received - then) / (elapsed_s - then_s) if elapsed_s > then_s else 0.0
        alerts = alert_rows(self._conn)
        return Snapshot(
            elapsed_s=elapsed_s,
            rate_per_s=rate,
            received=received,
            stored=sum(stats.readings_stored.values()),
            duplicates=stats.readings_duplicate,
            rejected=Counter(stats.messages_rejected),
            devices=count_devices(self._conn, self._measurement),
            alerts=alerts,
            firing=firing_now(alerts),
        )


def n(count: int) -> str:
    return f"{count:,}"


def rejections_text(rejected: Counter[str]) -> str:
    total = sum(rejected.values())
    if not total:
        return "0"
    return f"{n(total)} (" + ", ".join(f"{reason} {n(k)}" for reason, k in sorted(rejected.items())) + ")"


_STATE_STYLE = {"firing": "bold red", "resolved": "green"}


def status_markup(s: Snapshot) -> str:
    return (
        f"[dim]{s.elapsed_s:5.0f}s[/]  [bold]{s.rate_per_s:,.0f}[/] msg/s  received [bold]{n(s.received)}[/]"
        f"  stored [green]{n(s.stored)}[/]  duplicates [yellow]{n(s.duplicates)}[/]  devices [bold]{s.devices}[/]"
        f"  alerts firing [red]{len(s.firing)}[/]  rejected [red]{escape(rejections_text(s.rejected))}[/]"
    )


def alert_markup(row: AlertRow) -> str:
    """One alert transition as a line: `  alert  firing    overheating  dev-00007  critical  value 37.2 ...`."""
    style = _STATE_STYLE.get(row.state, "")
    return (
        f"[dim]{alert_time(row.time_ns)}[/]  alert [{style}]{row.transition:<8}[/]  {escape(row.rule)}  "
        f"{escape(row.device)}  {row.severity}  value {format_number(row.value)}"
        f"  threshold {format_number(row.threshold)}"
    )


class Out:
    """Markup lines: styled by rich on a terminal, plain (and flushed at once) otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.rich = self.stream.isatty()
        # soft_wrap: a long line is left to the terminal to wrap, not broken into several by rich.
        self.console = Console(file=self.stream, highlight=False, soft_wrap=True) if self.rich else None

    def line(self, markup: str = "") -> None:
        if self.console is not None:
            self.console.print(markup)
        else:
            self.stream.write(Text.from_markup(markup).plain + "\n")
            self.stream.flush()


class PlainStatus:
    """Non-interactive output: a status line every few seconds and a line for every new alert transition."""

    def __init__(self, out: Out) -> None:
        self._out = out
        self._seen = 0  # alert transitions printed so far (they only grow)

    def show(self, s: Snapshot) -> None:
        new = s.alerts[: len(s.alerts) - self._seen]
        self._seen = len(s.alerts)
        for row in reversed(new):
            self._out.line(alert_markup(row))
        self._out.line(status_markup(s))


class Dashboard:
    """rich Live on the terminal: counters, rejections by reason, alerts firing and the latest transitions."""

    def __init__(self, out: Out, title: str, header: list[str], duration_s: float | None) -> None:
        assert out.console is not None
        self._title = title
        self._header = header
        self._duration_s = duration_s
        self._live = Live(console=out.console, refresh_per_second=4, transient=False, redirect_stderr=True)

    def __enter__(self) -> Dashboard:
        self._live.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._live.stop()

    def show(self, s: Snapshot) -> None:
        self._live.update(render_dashboard(s, self._title, self._header, self._duration_s))


def render_dashboard(s: Snapshot, title: str, header: list[str], duration_s: float | None) -> RenderableType:
    counters = Table.grid(padding=(0, 3))
    for _ in range(4):
        counters.add_column(justify="right")
        counters.add_column(justify="left")
    counters.add_row(
        f"[bold]{s.rate_per_s:,.0f}[/]", "msg/s",
        f"[bold]{n(s.received)}[/]", "received",
        f"[green]{n(s.stored)}[/]", "readings stored",
        f"[bold]{s.devices}[/]", "devices seen",
    )  # fmt: skip
    counters.add_row(
        f"[yellow]{n(s.duplicates)}[/]", "duplicates",
        f"[red]{n(sum(s.rejected.values()))}[/]", "rejected",
        f"[red]{len(s.firing)}[/]", "alerts firing",
        f"{len(s.alerts)}", "alert transitions",
    )  # fmt: skip

    reasons = Table(title="rejections by reason", title_justify="left", box=None, pad_edge=False)
    reasons.add_column("reason")
    reasons.add_column("messages", justify="right")
    for reason, count in sorted(s.rejected.items()):  # a fixed order: rows do not jump as counts grow
        reasons.add_row(reason, n(count))

    alerts = Table(title="alerts, latest first", title_justify="left", box=None, pad_edge=False)
    for column in ("time (UTC)", "transition", "rule", "device", "severity", "value", "threshold"):
        alerts.add_column(column, justify="right" if column in ("value", "threshold") else "left")
    for row in s.alerts[:ALERTS_SHOWN]:
        style = _STATE_STYLE.get(row.state, "")
        alerts.add_row(
            alert_time(row.time_ns)[11:],
            f"[{style}]{row.transition}[/]",
            escape(row.rule),
            escape(row.device),
            row.severity,
            format_number(row.value),
            format_number(row.threshold),
        )
    if not s.alerts:
        alerts.add_row("[dim]none yet[/]", "", "", "", "", "", "")

    clock = f"{s.elapsed_s:.0f} s" + (f" of {duration_s:g} s" if duration_s is not None else "")
    body = Group(
        Text.from_markup("\n".join(header)),
        Text(),
        counters,
        Text(),
        _side_by_side(reasons, alerts),
    )
    return Panel(body, title=f"[bold]{escape(title)}[/]  {clock}", title_align="left")


def _side_by_side(left: RenderableType, right: RenderableType) -> Table:
    grid = Table.grid(padding=(0, 6))
    grid.add_column(vertical="top")
    grid.add_column(vertical="top")
    grid.add_row(left, right)
    return grid
