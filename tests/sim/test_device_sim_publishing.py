"""The simulator's publishing and command line against a real Mosquitto started on a free loopback port
(never the system one on 1883).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from device_sim.cli import app
from device_sim.fleet import generate
from device_sim.link import LinkError
from device_sim.manifest import Manifest
from device_sim.publisher import publish
from tests.support.fleets import MS, START_NS, spec
from tests.support.mqtt import MqttTap
from tests.support.servers import Mosquitto, free_port

# -- against a real broker ------------------------------------------------------------------------


def collected(tap: MqttTap, count: int) -> list[tuple[str, bytes]]:
    """(topic, payload) in arrival order, once `count` have arrived and the tap's marker came back after them
    (so a stray extra copy would be among them)."""
    tap.wait_for(count, timeout=10)
    return [(message.topic, message.payload) for message in tap.sync()]


def _by_topic(messages: list[tuple[str, bytes]]) -> dict[str, list[bytes]]:
    grouped: dict[str, list[bytes]] = defaultdict(list)
    for topic, payload in messages:
        grouped[topic].append(payload)
    return dict(grouped)


@pytest.mark.integration
def test_publish_delivers_every_payload_exactly_once_in_device_order(mosquitto: Mosquitto) -> None:
    fleet = generate(spec(devices=50, messages=3000, dup_rate=0.05, malformed_rate=0.1))
    collector = MqttTap(mosquitto, "devices/+/telemetry", "collector")
    try:
        stats = publish(fleet.outgoing, mosquitto.url, qos=1, connections=2)
        received = collected(collector, len(fleet.outgoing))
    finally:
        collector.close()
    assert (stats.sent, stats.errors, stats.failure) == (3000, 0, None)
    assert stats.rate_per_s > 0
    expected = _by_topic([(m.topic, m.payload) for m in fleet.outgoing])
    assert _by_topic(received) == expected


@pytest.mark.integration
@pytest.mark.parametrize(("qos", "protocol"), [(0, 5), (1, 4), (2, 4)])
def test_publish_other_qos_and_protocols(mosquitto: Mosquitto, qos: int, protocol: int) -> None:
    fleet = generate(spec(devices=5, messages=500))
    collector = MqttTap(mosquitto, "devices/+/telemetry", "collector")
    try:
        stats = publish(fleet.outgoing, mosquitto.url, qos=qos, protocol=protocol, client_id_prefix=f"q{qos}")
        received = collected(collector, 500)
    finally:
        collector.close()
    assert (stats.sent, stats.errors) == (500, 0)
    assert _by_topic(received) == _by_topic([(m.topic, m.payload) for m in fleet.outgoing])


@pytest.mark.integration
def test_publish_rate_limit_spreads_messages_out(mosquitto: Mosquitto) -> None:
    """400 messages at 1000/s take at least 0.35 s and arrive spread over that time, not in a burst at one end.
    How exactly the pacer keeps the rate is test_pacer_is_exact_over_time_and_sleeps_in_small_steps (a fake
    clock): a speed bound here would be a claim about this machine."""
    fleet = generate(spec(devices=5, messages=400))
    with MqttTap(mosquitto, "devices/+/telemetry", "collector") as tap:
        stats = publish(fleet.outgoing, mosquitto.url, rate=1000)
        arrivals = [message.at for message in tap.wait_for(400, timeout=10)]
    assert stats.sent == 400
    assert stats.elapsed_s >= 0.35
    # Spread out: each half takes a share of the time (~0.2 s; a burst would take ~0 s).
    assert arrivals[199] - arrivals[0] >= 0.1, arrivals[:200]
    assert arrivals[399] - arrivals[200] >= 0.1, arrivals[200:]


@pytest.mark.integration
def test_publish_survives_a_broker_restart(mosquitto: Mosquitto) -> None:
    fleet = generate(spec(devices=10, messages=1500))

    with mosquitto.outage(after_s=0.3, for_s=0.3):
        stats = publish(fleet.outgoing, mosquitto.url, rate=1500, stall_timeout_s=10)
    assert (stats.sent, stats.errors, stats.failure) == (1500, 0, None)
    assert stats.reconnects >= 1


def test_publish_to_nowhere_fails_fast() -> None:
    fleet = generate(spec(devices=1, messages=5))
    with pytest.raises(LinkError, match="no connection"):
        publish(fleet.outgoing, f"mqtt://127.0.0.1:{free_port()}", connect_timeout_s=0.3)


# -- command line ---------------------------------------------------------------------------------


def test_cli_dry_run_writes_manifest_and_report(tmp_path: Path) -> None:
    args = ["run", "--devices", "4", "--messages", "400", "--dup-rate", "0.1", "--malformed-rate", "0.1"]
    args += ["--seed", "5", "--start", str(START_NS // MS), "--dry-run"]
    args += ["--manifest", str(tmp_path / "m.jsonl"), "--report", str(tmp_path / "r.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = orjson.loads((tmp_path / "r.json").read_bytes())
    manifest = Manifest.read_jsonl(tmp_path / "m.jsonl")
    scheduled = report["scheduled"]
    assert scheduled["valid"] == len(manifest.readings)
    assert scheduled["valid"] + sum(scheduled["rejected"].values()) == 400
    assert scheduled["duplicates"] == sum(r.duplicates for r in manifest.readings) > 0
    assert report["start_ms"] == START_NS // MS and "run" not in report
    assert "duplicates" in result.output


@pytest.mark.integration
def test_cli_run_publishes_and_reports(mosquitto: Mosquitto, tmp_path: Path) -> None:
    args = ["run", "--broker", mosquitto.url, "--devices", "3", "--messages", "300", "--protocol", "3.1.1"]
    args += ["--malformed-rate", "0.1", "--connections", "2", "--no-pace", "--report", str(tmp_path / "r.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = orjson.loads((tmp_path / "r.json").read_bytes())
    assert (report["run"]["published"], report["run"]["acknowledged"], report["run"]["errors"]) == (300, 300, 0)
    assert report["run"]["sent"]["valid"] + sum(report["run"]["sent"]["rejected"].values()) == 300
    assert "msg/s" in result.output


def test_cli_refuses_unknown_protocol() -> None:
    result = CliRunner().invoke(app, ["run", "--protocol", "4.0", "--dry-run"])
    assert result.exit_code == 2
