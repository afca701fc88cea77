"""Command line: `python -m device_sim run ...` generates a fleet, publishes it and prints a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from device_sim.fleet import FleetSpec, generate
from device_sim.link import LinkError
from device_sim.manifest import Summary
from device_sim.publisher import PublishStats, publish

PROTOCOL_NAMES = {"5": 5, "3.1.1": 4, "311": 4, "3.1": 3}

_HELP = {
    "broker": "mqtt://host:port, or mqtts://... for TLS; user:password@ before the host if needed.",
    "messages": "Messages in all, duplicates and malformed ones included.",
    "rate": "Messages per second over all connections; 0: as fast as possible.",
    "seed": "Same seed and start time: byte-identical messages.",
    "start_time_ns": "Timestamp origin (epoch ns); default: so the last reading is just past.",
    "client_id_prefix": "Client ids are <prefix>-<connection number>.",
    "manifest": "Write the expected readings and rejections here (JSON Lines).",
    "dry_run": "Generate (and write --manifest) but publish nothing.",
}

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.callback()
def _root() -> None:
    """Simulate IoT devices publishing telemetry to an MQTT broker."""
    # A callback keeps `run` a named subcommand even while it is the only one.


@app.command()
def run(
    *,
    broker: Annotated[str, typer.Option(help=_HELP["broker"])] = "mqtt://127.0.0.1:1883",
    devices: Annotated[int, typer.Option(min=1, help="Number of simulated devices.")] = 100,
    messages: Annotated[int, typer.Option(min=0, help=_HELP["messages"])] = 10_000,
    rate: Annotated[float, typer.Option(min=0, help=_HELP["rate"])] = 0,
    qos: Annotated[int, typer.Option(min=0, max=2)] = 1,
    protocol: Annotated[str, typer.Option(help="MQTT protocol version: 5 or 3.1.1.")] = "5",
    dup_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of exact resends.")] = 0.0,
    malformed_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of invalid messages.")] = 0.0,
    seed: Annotated[int, typer.Option(help=_HELP["seed"])] = 1,
    connections: Annotated[int, typer.Option(min=1, help="MQTT connections; a device keeps to one.")] = 1,
    interval_ms: Annotated[int, typer.Option(min=1, help="Time between a device's readings.")] = 1000,
    start_time_ns: Annotated[int | None, typer.Option(help=_HELP["start_time_ns"])] = None,
    id_pattern: Annotated[str, typer.Option(help="Device name pattern; n counts from 1.")] = "dev-{n:05d}",
    client_id_prefix: Annotated[str, typer.Option(help=_HELP["client_id_prefix"])] = "device-sim",
    manifest: Annotated[Path | None, typer.Option(help=_HELP["manifest"])] = None,
    report: Annotated[Path | None, typer.Option(help="Write the summary here as JSON.")] = None,
    dry_run: Annotated[bool, typer.Option(help=_HELP["dry_run"])] = False,
) -> None:
    """Generate a deterministic fleet and publish it, waiting for every acknowledgement."""
    console = Console(stderr=True)
    if protocol not in PROTOCOL_NAMES:
        raise typer.BadParameter(f"must be one of {', '.join(PROTOCOL_NAMES)}", param_hint="--protocol")
    try:
        spec = FleetSpec(
            devices=devices,
            messages=messages,
            seed=seed,
            id_pattern=id_pattern,
            dup_rate=dup_rate,
            malformed_rate=malformed_rate,
            start_time_ns=start_time_ns,
            interval_ms=interval_ms,
        )
        fleet = generate(spec)
    except (ValueError, KeyError, IndexError) as exc:  # str.format errors from a bad --id-pattern too
        raise typer.BadParameter(str(exc)) from exc
    if manifest is not None:
        fleet.manifest.write_jsonl(manifest)

    stats: PublishStats | None = None
    if not dry_run:
        try:
            stats = publish(
                fleet.outgoing,
                broker,
                qos=qos,
                connections=connections,
                rate=rate,
                protocol=PROTOCOL_NAMES[protocol],
                client_id_prefix=client_id_prefix,
            )
        except (LinkError, ValueError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc

    assert fleet.spec.start_time_ns is not None
    summary = _summary(fleet.manifest.summary(), stats, seed=seed, start_time_ns=fleet.spec.start_time_ns)
    _print(console, summary)
    if report is not None:
        report.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    if stats is not None and stats.errors:
        raise typer.Exit(1)


def _summary(counts: Summary, stats: PublishStats | None, *, seed: int, start_time_ns: int) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "messages": counts.total,
        "valid": counts.valid,
        "duplicates": counts.duplicates,
        "malformed": counts.malformed,
        "seed": seed,
        "start_time_ns": start_time_ns,  # with the seed, enough to regenerate the same fleet
    }
    if stats is not None:
        summary |= {
            "sent": stats.sent,
            "errors": stats.errors,
            "elapsed_s": round(stats.elapsed_s, 3),
            "rate_per_s": round(stats.rate_per_s, 1),
            "reconnects": stats.reconnects,
            "failure": stats.failure,
        }
    return summary


def _print(console: Console, summary: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    for key in ("sent", "errors", "elapsed_s", "rate_per_s", "reconnects", "valid", "duplicates"):
        if key in summary:
            table.add_row(key.replace("_per_s", " msg/s").replace("_s", " s"), str(summary[key]))
    for reason, count in summary["malformed"].items():
        table.add_row(f"malformed:{reason}", str(count))
    if summary.get("failure"):
        table.add_row("[red]failure[/red]", str(summary["failure"]))
    Console().print(table)


def main() -> None:
    app()
