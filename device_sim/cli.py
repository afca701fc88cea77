"""Command line: `device-sim run` publishes a simulated fleet live; `device-sim verify` checks a store against
the manifest of a run."""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from device_sim.fleetfile import FORMATS, FleetFileError, load_fleet
from device_sim.manifest import Manifest
from device_sim.progress import LiveView, header_lines, report, result_lines, tally_lines
from device_sim.runner import Runner, RunResult, Snapshot
from device_sim.scenario import Scenario, build, save_manifest, write_manifest
from device_sim.shards import run_sharded
from device_sim.stores import SqliteStore, Store, StoreError, http_store
from device_sim.verify import compare, summary_lines

PROTOCOLS = {"5": "5", "3.1.1": "3.1.1", "311": "3.1.1", "4": "3.1.1"}
EXIT_DIFFERENT = 1
EXIT_USAGE = 2

_HELP = {
    "fleet": "Fleet file (see config/fleet.example.yaml); flags override it.",
    "broker": "mqtt://[user[:password]@]host[:port], or mqtts://... for TLS.",
    "devices": "Devices in all (a fleet file's groups are scaled to it).",
    "id_pattern": "Device ids, str.format with n from 1, e.g. 'dev-{n:05d}'.",
    "rate": "Samples per second per device.",
    "duration": "Each device samples this many seconds (default 60).",
    "messages": "Or: this many samples over the fleet, then stop.",
    "ramp_up": "Devices come online spread over this many seconds.",
    "seed": "Same seed, fleet and --start: the same messages and manifest, byte for byte.",
    "start": "Timeline origin (RFC 3339 or epoch ms); default now.",
    "connections": "0: one MQTT connection per device; N: the devices share N connections.",
    "preload": "Generate every message before the clock starts (with --no-pace: the publisher's top speed).",
    "processes": "Deal the devices over this many processes (raw throughput); --connections is per process.",
    "pace": "--no-pace: as fast as the broker takes it (timestamps stay on the schedule).",
    "fault": "NAME=RATE for every group, e.g. duplicate=0.02 (repeatable); see the fleet file's faults.",
    "manifest": "Write what a correct gateway must store, reject and alert (JSON Lines).",
    "report": "Write the summary as JSON.",
    "dry_run": "Generate (and write --manifest) without publishing.",
}

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.callback()
def _root() -> None:
    """Simulate IoT device fleets over MQTT, and check what a gateway stored."""


@app.command()
def run(
    *,
    fleet: Annotated[Path | None, typer.Option(help=_HELP["fleet"])] = None,
    broker: Annotated[str | None, typer.Option(help=_HELP["broker"])] = None,
    username: Annotated[str | None, typer.Option(help="MQTT user name.")] = None,
    password: Annotated[str | None, typer.Option(envvar="DEVICE_SIM_PASSWORD", help="MQTT password.")] = None,
    devices: Annotated[int | None, typer.Option(min=1, help=_HELP["devices"])] = None,
    id_pattern: Annotated[str | None, typer.Option(help=_HELP["id_pattern"])] = None,
    rate: Annotated[float | None, typer.Option(help=_HELP["rate"])] = None,
    duration: Annotated[float | None, typer.Option(help=_HELP["duration"])] = None,
    messages: Annotated[int | None, typer.Option(help=_HELP["messages"])] = None,
    qos: Annotated[int | None, typer.Option(min=0, max=1, help="QoS 0 or 1.")] = None,
    protocol: Annotated[str | None, typer.Option(help="MQTT protocol: 5 or 3.1.1.")] = None,
    payload_format: Annotated[str | None, typer.Option("--format", help="|".join(FORMATS))] = None,
    ramp_up: Annotated[float | None, typer.Option(help=_HELP["ramp_up"])] = None,
    seed: Annotated[int | None, typer.Option(help=_HELP["seed"])] = None,
    start: Annotated[str | None, typer.Option(help=_HELP["start"])] = None,
    connections: Annotated[int | None, typer.Option(min=0, help=_HELP["connections"])] = None,
    processes: Annotated[int, typer.Option(min=1, max=64, help=_HELP["processes"])] = 1,
    pace: Annotated[bool | None, typer.Option("--pace/--no-pace", help=_HELP["pace"])] = None,
    preload: Annotated[bool | None, typer.Option("--preload", help=_HELP["preload"])] = None,
    fault: Annotated[list[str] | None, typer.Option(help=_HELP["fault"])] = None,
    dup_rate: Annotated[float | None, typer.Option(help="Shorthand for --fault duplicate=RATE.")] = None,
    malformed_rate: Annotated[float | None, typer.Option(help="Shorthand for --fault malformed=RATE.")] = None,
    client_id_prefix: Annotated[str | None, typer.Option(help="Client ids are <prefix><device id>.")] = None,
    manifest: Annotated[Path | None, typer.Option(help=_HELP["manifest"])] = None,
    report_path: Annotated[Path | None, typer.Option("--report", help=_HELP["report"])] = None,
    dry_run: Annotated[bool, typer.Option(help=_HELP["dry_run"])] = False,
) -> None:
    """Run a simulated fleet against a broker, live, and print what it sent."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise typer.BadParameter(f"must be 5 or 3.1.1, got {protocol!r}", param_hint="--protocol")
    if start is not None and start.isdigit():
        start = str(int(start) / 1000)  # epoch ms; pydantic reads a number string as epoch seconds
    overrides: dict[str, Any] = {
        "broker.url": broker,
        "broker.username": username,
        "broker.password": password,
        "broker.qos": qos,
        "broker.protocol": PROTOCOLS.get(protocol or ""),
        "broker.connections": connections,
        "broker.client_id_prefix": client_id_prefix,
        "devices": devices,
        "groups.*.id_pattern": id_pattern,
        "groups.*.rate": rate,
        "groups.*.format": payload_format,
        "run.duration_s": duration,
        "run.messages": messages,
        "run.ramp_up_s": ramp_up,
        "run.seed": seed,
        "run.start": start,
        "run.pace": pace,
        "run.preload": preload,
        "faults.duplicate": dup_rate,
        "faults.malformed": malformed_rate,
    }
    for item in fault or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected NAME=RATE, got {item!r}", param_hint="--fault")
        overrides[f"faults.{name.strip()}"] = value.strip()
    try:
        scenario = build(load_fleet(fleet, overrides))
    except FleetFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    out = sys.stdout
    for line in header_lines(scenario):
        typer.echo(line)
    tally = save_manifest(scenario, manifest) if manifest is not None else None
    if dry_run:
        tally = tally or write_manifest(scenario, None)
        for line in tally_lines(tally):
            typer.echo(line)
        _write_report(report_path, report(scenario, tally, None))
        return
    result = _publish(scenario, processes=processes, live=out.isatty())
    for line in tally_lines(result.tally) + result_lines(result, scenario):
        typer.echo(line)
    _write_report(report_path, report(scenario, tally or result.tally, result))
    if result.failure or result.errors:
        raise typer.Exit(EXIT_DIFFERENT)


def _publish(scenario: Scenario, *, processes: int, live: bool) -> RunResult:
    if not scenario.fleet.broker.connections:
        _raise_open_files_limit(len(scenario.plans) + 256)
    if not live:
        return _start(scenario, processes, None)
    with LiveView(scenario, sys.stdout) as view:
        return _start(scenario, processes, view.update)


def _start(scenario: Scenario, processes: int, on_tick: Callable[[Snapshot], None] | None) -> RunResult:
    if processes > 1:
        return run_sharded(scenario, processes, on_tick)
    return asyncio.run(Runner(scenario, on_tick=on_tick).run())


def _raise_open_files_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def _write_report(path: Path | None, data: dict[str, Any]) -> None:
    if path is not None:
        path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


@app.command()
def verify(
    *,
    manifest: Annotated[Path, typer.Option(help="The manifest `device-sim run --manifest` wrote.")],
    sqlite: Annotated[Path | None, typer.Option(help="The gateway's SQLite file (sqlite.path).")] = None,
    url: Annotated[str | None, typer.Option(help="InfluxDB 2.x or VictoriaMetrics URL.")] = None,
    org: Annotated[str, typer.Option(help="InfluxDB organisation.")] = "iot",
    bucket: Annotated[str, typer.Option(help="InfluxDB bucket.")] = "telemetry",
    token: Annotated[str, typer.Option(envvar="DEVICE_SIM_INFLUX_TOKEN", help="InfluxDB token.")] = "",
    store: Annotated[str, typer.Option(help="auto, influxdb or victoriametrics.")] = "auto",
    wait: Annotated[float, typer.Option(help="Check again until it matches, up to this many seconds.")] = 0.0,
    examples: Annotated[int, typer.Option(help="Examples printed per kind of difference.")] = 5,
    ignore_tags: Annotated[bool, typer.Option(help="Compare fields only (other mappings add other tags).")] = False,
    report_path: Annotated[Path | None, typer.Option("--report", help="Write the result as JSON.")] = None,
) -> None:
    """Compare a store with a manifest: missing, extra and mismatched readings; exit 1 on any difference."""
    if (sqlite is None) == (url is None):
        raise typer.BadParameter("give either --sqlite or --url", param_hint="--sqlite/--url")
    if store not in ("auto", "influxdb", "victoriametrics"):
        raise typer.BadParameter(f"must be auto, influxdb or victoriametrics, got {store!r}", param_hint="--store")
    try:
        expected = Manifest.read_jsonl(manifest)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot read manifest {manifest}: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    target: Store = SqliteStore(sqlite) if sqlite is not None else http_store(url or "", store, org, bucket, token)
    deadline = time.monotonic() + wait
    while True:
        try:
            result = compare(expected, target, check_tags=not ignore_tags)
        except StoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        if result.clean or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    for line in summary_lines(result, target.name, examples):
        typer.echo(line)
    _write_report(report_path, result.as_dict(examples))
    if not result.clean:
        raise typer.Exit(EXIT_DIFFERENT)


def main() -> None:
    app()
