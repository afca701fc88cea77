"""The simulator's asyncio MQTT client and scheduler against a real Mosquitto: what the timelines say is
exactly what arrives, over per-device or shared connections, MQTT 5 or 3.1.1, QoS 0 or 1, through drops,
reboots and a broker restart."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from device_sim.fleetfile import load_fleet
from device_sim.runner import Runner, RunResult
from device_sim.scenario import Scenario, build
from tests.support.mqtt import MqttTap
from tests.support.servers import Mosquitto, write_password_file

pytestmark = pytest.mark.integration


def delivered(tap: MqttTap, total: int) -> Counter[tuple[str, bytes]]:
    """(topic, payload) as the tap received them, once `total` have arrived and its marker came back after them."""
    tap.wait_for(total, timeout=20)
    received = Counter((message.topic, message.payload) for message in tap.sync())
    tap.close()
    return received


def sent_by(scenario: Scenario) -> Counter[tuple[str, bytes]]:
    return Counter((m.topic, m.payload) for t in scenario.timelines() for e in t.events() for m in e.messages)


def make(broker: Mosquitto, **overrides: Any) -> Scenario:
    return build(load_fleet(None, {"broker.url": broker.url, "run.duration_s": 3, "groups.*.rate": 20, **overrides}))


def run(scenario: Scenario) -> RunResult:
    return asyncio.run(Runner(scenario, stall_timeout_s=15).run())


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="mqtt5-qos1-per-device"),
        pytest.param({"broker.protocol": "3.1.1"}, id="mqtt311-qos1"),
        pytest.param({"broker.qos": 0}, id="qos0"),
        pytest.param({"broker.connections": 3, "groups.*.format": "esphome"}, id="shared-connections"),
        pytest.param({"run.pace": False, "broker.connections": 2, "run.messages": 20_000}, id="unpaced"),
    ],
)
def test_every_message_arrives_exactly_as_the_timelines_say(mosquitto: Mosquitto, overrides: dict[str, Any]) -> None:
    scenario = make(mosquitto, devices=20, **overrides)
    expected = sent_by(scenario)
    tap = MqttTap(mosquitto, "#", "sim-tap")
    result = run(scenario)
    assert (result.failure, result.errors) == (None, 0)
    assert result.snapshot.acked == result.snapshot.published == expected.total()
    assert result.snapshot.peak_connected == min(20, overrides.get("broker.connections") or 20)
    assert delivered(tap, expected.total()) == expected


def test_drops_and_reboots_lose_nothing(mosquitto: Mosquitto) -> None:
    faults = {"faults.disconnect": 0.1, "faults.disconnect_s": 0.3, "faults.reboot": 0.05, "faults.reboot_s": 0.3}
    scenario = make(mosquitto, devices=20, **faults)
    expected = sent_by(scenario)
    tap = MqttTap(mosquitto, "#", "sim-tap")
    result = run(scenario)
    assert (result.failure, result.errors) == (None, 0)
    assert result.snapshot.drops > 20 and result.snapshot.connects == 20 + result.snapshot.drops
    received = delivered(tap, expected.total())
    # An abrupt drop may make the broker deliver a resent PUBLISH twice: at least once, never lost.
    assert set(received) == set(expected)
    assert all(received[k] >= n for k, n in expected.items())
    assert received.total() - expected.total() <= result.snapshot.resent


def test_a_broker_restart_is_ridden_out(mosquitto: Mosquitto) -> None:
    scenario = make(mosquitto, devices=10, **{"run.duration_s": 4})

    with mosquitto.outage(after_s=1.0, for_s=0.5):
        result = run(scenario)
    assert (result.failure, result.errors) == (None, 0)
    assert result.snapshot.acked == sent_by(scenario).total()
    assert result.snapshot.drops >= 10


def test_a_refusal_stops_the_run_with_the_reason(tmp_path: Path) -> None:
    users = write_password_file(tmp_path / "passwd", {"device": "right"})
    with Mosquitto(tmp_path / "mqtt", password_file=users) as broker:
        url = broker.url.replace("mqtt://", "mqtt://device:wrong@")
        result = run(build(load_fleet(None, {"broker.url": url, "devices": 2, "run.duration_s": 30})))
        assert result.failure is not None and "refused" in result.failure and "not authorized" in result.failure
        assert result.elapsed_s < 30  # stopped by the refusal, not by the end of its 30 s run
        ok = build(load_fleet(None, {"broker.url": broker.url, "broker.username": "device", "broker.password": "right",
                                     "devices": 2, "run.duration_s": 1}))  # fmt: skip
        assert run(ok).errors == 0


def test_cli_run_exits_non_zero_without_a_broker(tmp_path: Path) -> None:
    from tests.support.servers import free_port  # noqa: PLC0415

    args = [sys.executable, "-m", "device_sim", "run", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--devices", "2"]
    # It gives up by itself: well before the timeout (a run that kept retrying would hit it and fail).
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no connection to 127.0.0.1" in done.stdout


def test_devices_dealt_over_processes_send_the_same(mosquitto: Mosquitto) -> None:
    from device_sim.shards import run_sharded  # noqa: PLC0415

    overrides = {"run.pace": False, "run.preload": True, "broker.connections": 2, "run.messages": 6000}
    scenario = make(mosquitto, devices=30, **overrides, **{"faults.duplicate": 0.05, "faults.malformed": 0.05})
    expected = sent_by(scenario)
    tap = MqttTap(mosquitto, "#", "sim-tap")
    seen: list[int] = []
    result = run_sharded(scenario, 3, on_tick=lambda s: seen.append(s.published))
    assert (result.failure, result.errors) == (None, 0)
    assert result.snapshot.acked == expected.total() and result.tally.messages == expected.total()
    assert result.snapshot.peak_connected == 6  # 2 connections in each of 3 processes
    assert delivered(tap, expected.total()) == expected
