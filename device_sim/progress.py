"""What a run shows: a live view while it runs (on a terminal), a plain summary at the end, a JSON report."""

from __future__ import annotations

import os
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from device_sim.runner import RunResult, Snapshot
from device_sim.scenario import Scenario, Tally


def _n(value: float) -> str:
    return f"{value:,.0f}"


def target_rate(scenario: Scenario) -> float:
    """Messages per second once every device is online (esphome sends one message per sensor)."""
    total = 0.0
    for group in scenario.fleet.groups:
        per_sample = len(group.sensors) if group.format == "esphome" else 1
        total += group.count * group.rate * per_sample
    return total


class LiveView:
    """A small table refreshed four times a second; only used when the output is a terminal."""

    def __init__(self, scenario: Scenario, stream: TextIO) -> None:
        self._target = target_rate(scenario) if scenario.fleet.run.pace else None
        self._live = Live(console=Console(file=stream), refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def update(self, s: Snapshot) -> None:
        table = Table(show_header=False, box=None, padding=(0, 2))
        target = f" (target {_n(self._target)})" if self._target else ""
        table.add_row("elapsed", f"{s.elapsed_s:6.1f} s")
        table.add_row("connected", f"{_n(s.connected)} / {_n(s.devices)} devices" if s.devices else "0")
        table.add_row("sent", f"{_n(s.published)} messages, {_n(s.acked)} acknowledged")
        table.add_row("rate", f"[bold]{_n(s.rate_per_s)}[/] msg/s{target}")
        errors = f"[red]{_n(s.refused)}[/]" if s.refused else "0"
        table.add_row("errors", f"{errors} refused, {_n(s.drops)} drops, {_n(s.resent)} resent")
        self._live.update(table)


def header_lines(scenario: Scenario) -> list[str]:
    fleet = scenario.fleet
    groups = ", ".join(f"{g.name} {g.count:,} x {g.format} @ {g.rate:g}/s" for g in fleet.groups)
    run = fleet.run
    length = f"{run.messages:,} samples" if run.messages is not None else f"{run.duration_s or 60:g} s"
    pace = "" if run.pace else ", unpaced"
    connections = (
        "one connection per device"
        if not fleet.broker.connections
        else (f"{fleet.broker.connections} shared connections")
    )
    return [
        f"device-sim: {len(scenario.plans):,} devices ({groups}) for {length}{pace}",
        f"  broker {fleet.broker.url} (MQTT {fleet.broker.protocol}, QoS {fleet.broker.qos}, {connections})",
        f"  seed {run.seed}, start {scenario.start_ms} (repeat with --seed {run.seed} --start {scenario.start_ms})",
    ]


def tally_lines(tally: Tally) -> list[str]:
    rejected = sum(tally.rejected.values())
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(tally.rejected.items()))
    lines = [
        f"  messages     {tally.messages:,} ({tally.valid:,} valid, {tally.duplicates:,} duplicates, "
        f"{rejected:,} to be rejected{': ' + reasons if reasons else ''})"
    ]
    faults = ", ".join(f"{k} {v:,}" for k, v in sorted(tally.faults.items()) if v)
    if faults:
        lines.append(f"  faults       {faults}")
    if tally.alerts:
        lines.append("  alerts       " + ", ".join(f"{k} {v:,}" for k, v in sorted(tally.alerts.items())))
    return lines


def result_lines(result: RunResult, scenario: Scenario) -> list[str]:
    s = result.snapshot
    rate = s.acked / result.elapsed_s if result.elapsed_s > 0 else 0.0
    cores = os.cpu_count() or 1
    lines = [
        f"  sent         {s.published:,} messages, {s.acked:,} acknowledged in {result.elapsed_s:.1f} s = "
        f"{rate:,.0f} msg/s",
        f"  errors       {result.errors:,} ({s.refused:,} refused, {result.unacknowledged:,} never acknowledged)",
        f"  connections  peak {s.peak_connected:,} of {len(scenario.plans):,} devices, {s.connects:,} connects, "
        f"{s.drops:,} drops, {s.resent:,} messages resent",
        f"  cpu          {result.cpu_s:.1f} s ({100 * result.cpu_s / max(result.elapsed_s, 1e-9):.0f}% of one core, "
        f"{cores} cores), max RSS {result.max_rss_mb:.0f} MB",
    ]
    if result.failure:
        lines.append(f"  failure      {result.failure}")
    return lines


def report(scenario: Scenario, tally: Tally, result: RunResult | None) -> dict[str, Any]:
    fleet = scenario.fleet
    data: dict[str, Any] = {
        "devices": len(scenario.plans),
        "seed": fleet.run.seed,
        "start_ms": scenario.start_ms,
        "target_rate_per_s": target_rate(scenario) if fleet.run.pace else None,
        "scheduled": tally.as_dict(),
    }
    if result is not None:
        data["run"] = result.as_dict()
    return data
