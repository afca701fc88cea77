"""The simulator's fleets: the fleet file, sensor models, faults, determinism and the manifest's contents."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from device_sim.cli import app
from device_sim.fleetfile import FleetFile, FleetFileError, load_fleet
from device_sim.manifest import Manifest
from device_sim.scenario import Scenario, build, manifest
from device_sim.timeline import FAULTS
from tests.support import ROOT

EXAMPLE = ROOT / "config" / "fleet.example.yaml"
START = "2026-11-27T10:00:00Z"
START_MS = 1_795_773_600_000
ALL_FAULTS = {f"faults.{name}": 0.05 for name in FAULTS} | {"faults.silence_s": 3, "faults.reboot_s": 2}


def scenario(overrides: dict[str, Any] | None = None, path: Path | None = EXAMPLE) -> Scenario:
    return build(load_fleet(path, {"run.start": START, "run.duration_s": 60, **(overrides or {})}))


def events(sc: Scenario) -> list[tuple[str, Any]]:
    return [(t.plan.name, e) for t in sc.timelines() for e in t.events()]


# -- the fleet file ------------------------------------------------------------------------------------------


def test_example_fleet_file_parses_and_documents_every_key() -> None:
    fleet = load_fleet(EXAMPLE)
    assert {g.format for g in fleet.groups} == {"native", "senml", "zigbee2mqtt", "tasmota", "esphome"}
    text = EXAMPLE.read_text()
    for section in ("broker", "run"):
        for key in FleetFile.model_fields[section].annotation.model_fields:  # type: ignore[union-attr]
            assert f"  {key}:" in text or f"# {key}:" in text, f"{section}.{key} is not shown in {EXAMPLE.name}"
    native = next(g for g in fleet.groups if g.format == "native")
    for key in type(native.faults).model_fields:
        assert f"      {key}:" in text, f"faults.{key} is not shown in {EXAMPLE.name}"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"groups.*.rate": -1}, "groups[0].rate: Input should be greater than 0 (value -1)", id="rate"),
        pytest.param(
            {"faults.duplicate": 2},
            "groups[0].faults.duplicate: Input should be less than or equal to 1 (value 2)",
            id="fault-rate",
        ),
        pytest.param({"faults.typo": 0.1}, "groups[0].faults.typo: unknown key (value 0.1)", id="unknown-fault"),
        pytest.param({"broker.url": "http://x"}, "broker.url: broker URL 'http://x': scheme must be", id="url"),
        pytest.param({"broker.qos": 2}, "broker.qos: Input should be 0 or 1 (value 2)", id="qos"),
        pytest.param({"groups.*.format": "xml"}, "groups[0].format: Input should be 'native'", id="format"),
        pytest.param(
            {"groups.*.id_pattern": "d/{n}"},
            "groups[0].id_pattern: device name cannot be a topic level",
            id="pattern-slash",
        ),
        pytest.param(
            {"groups.*.id_pattern": "same"},
            "groups[0].id_pattern: device id 'same' is also made",
            id="pattern-collision",
        ),
        pytest.param({"groups.*.id_pattern": "dev {n}"}, "is not a device id the gateway accepts", id="pattern-space"),
        pytest.param(
            {"groups.*.format": "tasmota", "groups.*.rate": 5},
            "groups[0].rate: tasmota stamps whole seconds, at most 1 sample/s per device (value 5.0)",
            id="tasmota-rate",
        ),
    ],
)
def test_fleet_errors_name_the_key_and_the_value(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(FleetFileError) as caught:
        build(load_fleet(None, {"devices": 3, **overrides}))
    assert message in str(caught.value)


def test_fleet_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("groups:\n  - name: a\n    sensors: [{kind: wind}]\n    anomalies: []\n")
    with pytest.raises(FleetFileError, match=r"fleet\.yaml:\n  groups\[0\]\.sensors\[0\]\.kind: must be one of"):
        load_fleet(path)
    path.write_text("groups:\n  - name: a\n    anomalies: [{kind: spike, sensor: wind, rate: 0.1}]\n")
    with pytest.raises(FleetFileError, match=r"groups\[0\]\.anomalies\[0\]\.sensor: no sensor named 'wind'"):
        load_fleet(path)
    path.write_text("run: {duration_s: 5, messages: 10}\n")
    with pytest.raises(FleetFileError, match=r"run\.messages: give duration_s or messages, not both"):
        load_fleet(path)


def test_devices_flag_scales_the_groups_and_messages_replaces_duration() -> None:
    fleet = load_fleet(EXAMPLE, {"devices": 7, "run.messages": 70})
    assert fleet.devices == 7 and all(g.count >= 1 for g in fleet.groups)
    assert (fleet.run.messages, fleet.run.duration_s) == (70, None)
    sc = build(fleet)
    assert sc.scheduled == 70


# -- determinism -----------------------------------------------------------------------------------------------


def _dry_run(tmp_path: Path, name: str, *extra: str) -> bytes:
    path = tmp_path / name
    args = ["run", "--fleet", str(EXAMPLE), "--duration", "30", "--start", START, "--dry-run", "--manifest", str(path)]
    for fault in FAULTS:
        args += ["--fault", f"{fault}=0.05"]
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output
    return path.read_bytes()


def test_same_seed_gives_the_same_manifest_byte_for_byte(tmp_path: Path) -> None:
    one = _dry_run(tmp_path, "a.jsonl", "--seed", "5")
    two = _dry_run(tmp_path, "b.jsonl", "--seed", "5")
    assert one == two
    assert _dry_run(tmp_path, "c.jsonl", "--seed", "6") != one
    kinds = Counter(orjson.loads(line)["type"] for line in one.splitlines())
    assert kinds["header"] == 1 and kinds["reading"] > 1000 and kinds["rejection"] > 10 and kinds["alert"] > 0


def test_start_as_epoch_ms_is_the_same_start(tmp_path: Path) -> None:
    assert _dry_run(tmp_path, "a.jsonl") == _dry_run(tmp_path, "b.jsonl", "--start", str(START_MS))


def test_a_device_stream_does_not_depend_on_the_rest_of_the_fleet() -> None:
    small = scenario({"devices": 5}, None)
    large = scenario({"devices": 50}, None)
    first = [e for name, e in events(small) if name == "dev-00002"]
    assert first and first == [e for name, e in events(large) if name == "dev-00002"]


# -- what devices send -----------------------------------------------------------------------------------------


def test_every_fault_kind_happens_and_is_counted() -> None:
    sc = scenario(ALL_FAULTS)
    counts: Counter[str] = Counter()
    for timeline in sc.timelines():
        for _ in timeline.events():
            pass
        counts.update(timeline.counts)
    assert all(counts[name] > 0 for name in FAULTS), counts


def test_schedule_is_paced_per_device_and_ramped() -> None:
    sc = scenario({"run.ramp_up_s": 10, "devices": 20}, None)
    firsts = [p.connect_ms for p in sc.plans]
    assert firsts == sorted(firsts) and firsts[0] == 0 and firsts[-1] == 9500
    per_device: dict[str, list[int]] = defaultdict(list)
    for name, event in events(sc):
        per_device[name].append(event.at_ms)
    for times in per_device.values():
        assert len(times) == 60
        assert {b - a for a, b in itertools.pairwise(times)} == {1000}


def test_duplicates_follow_their_original_and_held_messages_follow_the_next() -> None:
    sc = scenario({"faults.duplicate": 0.2, "faults.out_of_order": 0.2, "groups.*.format": "native"}, None)
    late = 0
    for timeline in sc.timelines():
        seen: list[bytes] = []
        seqs: list[int] = []
        for event in timeline.events():
            for message in event.messages:
                if message.kind == "duplicate":
                    assert message.payload in seen  # an exact copy of something already sent
                seen.append(message.payload)
                if message.kind == "valid":
                    seqs.append(orjson.loads(message.payload)["seq"])
        late += sum(b < a for a, b in itertools.pairwise(seqs))
        assert len(set(seqs)) == len(seqs)
    assert late > 0
    readings = manifest(sc).readings
    assert sum(r.duplicates for r in readings) > 0


def test_sensor_values_are_plausible() -> None:
    sc = scenario({"devices": 20, "groups.*.format": "native"}, EXAMPLE)
    by_device: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for reading in manifest(sc).readings:
        if reading.device.startswith("boiler-"):
            by_device[reading.device].append(reading.fields)
    assert by_device
    for series in by_device.values():
        energy = [f["energy"] for f in series]
        battery = [f["battery"] for f in series]
        assert energy == sorted(energy), "an energy counter only grows"
        assert battery == sorted(battery, reverse=True), "a battery only drains"
        assert all(980 < f["pressure"] < 1045 for f in series)
        assert all(isinstance(f["pump_on"], bool) for f in series)
        assert len({f["temperature"] for f in series}) > 10


def test_spikes_fire_temperature_high_and_resolve() -> None:
    fleet = {"devices": 5, "groups.*.format": "native", "run.duration_s": 600}
    sc = build(load_fleet(EXAMPLE, {"run.start": START, **fleet}))
    spiky = sc._replace(
        plans=[
            p._replace(
                group=p.group.model_copy(
                    update={"anomalies": [a.model_copy(update={"rate": 0.02}) for a in p.group.anomalies[:1]]}
                )
            )
            for p in sc.plans
        ]
    )
    result = manifest(spiky)
    fired = [a for a in result.alerts if a.rule == "temperature_high"]
    assert fired and all(a.cause == "spike" and a.ends_at_ns is not None for a in fired)
    by_time = {(r.device, r.time_ns): r for r in result.readings}
    for alert in fired:
        assert by_time[(alert.device, alert.starts_at_ns)].fields["temperature"] > 45


def test_reboots_reset_seq_and_keep_ids_unique() -> None:
    sc = scenario({"faults.reboot": 0.05, "faults.reboot_s": 2, "groups.*.format": "native"}, None)
    result = manifest(sc)
    ids: Counter[tuple[str, str]] = Counter((r.device, r.id) for r in result.readings)
    assert max(ids.values()) == 1
    assert any(r.seq == 1 and not r.id.startswith("0-") for r in result.readings)
    assert any(a.rule == "device_rebooted" for a in result.alerts)


def test_manifest_round_trips_with_header_and_alerts(tmp_path: Path) -> None:
    expected = manifest(scenario(ALL_FAULTS))
    path = tmp_path / "m.jsonl"
    expected.write_jsonl(path)
    assert Manifest.read_jsonl(path) == expected
    assert any(r.received for r in expected.readings)
