"""Every sample in tests/support/data/devices.jsonl, published to a real Mosquitto, goes through the gateway with
config/devices.example.yaml and yields the readings its `expect` describes (or is rejected)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gateway.sinks.sqlite import read_readings
from tests.support import DATA
from tests.support.gateway_proc import ROOT, GatewayProcess, sqlite_env
from tests.support.servers import Mosquitto

pytestmark = pytest.mark.integration

# devices.jsonl is ../shared/samples/devices.jsonl as shipped; more_devices.jsonl adds families it lacks (Shelly).
SAMPLES = [
    json.loads(line)
    for name in ("devices.jsonl", "more_devices.jsonl")
    for line in (DATA / name).read_text().splitlines()
]


def _payload(sample: dict[str, Any]) -> bytes:
    if "payload_text" in sample:
        return str(sample["payload_text"]).encode()
    return json.dumps(sample["payload"]).encode()


def _expected_time_ns(text: str, published_ns: tuple[int, int]) -> tuple[int, int]:
    """A range: the receive time lies between publish and the end of the run; other times are exact."""
    if text == "<receive time>":
        return published_ns
    text = text.replace(" in the device's configured time zone", "Z")  # the example maps Tasmota with UTC
    instant = datetime.fromisoformat(text)
    ns = int(instant.timestamp()) * 1_000_000_000 + instant.microsecond * 1000
    return ns, ns


def test_every_device_family_sample_is_stored_as_expected(tmp_path: Path, mosquitto: Mosquitto) -> None:
    db = tmp_path / "devices.db"
    env = sqlite_env(mosquitto.url, "gw-families", db)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "families-pub", protocol=mqtt.MQTTv5)
    with GatewayProcess(tmp_path / "gw", env, config=ROOT / "config" / "devices.example.yaml") as gateway:
        publisher.connect(mosquitto.host, mosquitto.port)
        publisher.loop_start()
        started = time.time_ns()
        for sample in SAMPLES:
            publisher.publish(sample["topic"], _payload(sample), qos=1).wait_for_publish(5)
        gateway.wait_for("gateway_messages_acknowledged", len(SAMPLES), timeout_s=15)
        expected_readings = sum(len(s["expect"]) for s in SAMPLES if isinstance(s["expect"], list))
        gateway.wait_for('gateway_readings_stored{sink="sqlite"}', expected_readings, timeout_s=15)
        finished = time.time_ns()
        metrics = gateway.metrics()
        publisher.loop_stop()
    rejected = sum(v for k, v in metrics.items() if k.startswith("gateway_messages_rejected"))
    assert rejected == sum(1 for s in SAMPLES if not isinstance(s["expect"], list))

    stored = list(read_readings(db))
    assert len(stored) == expected_readings
    for sample in SAMPLES:
        if not isinstance(sample["expect"], list):
            continue
        for want in sample["expect"]:
            low, high = _expected_time_ns(want["time"], (started, finished))
            matches = [
                r
                for r in stored
                if r.device == want["device"] and low <= r.time_ns <= high and set(r.fields) == set(want["fields"])
            ]
            assert len(matches) == 1, (sample["source"], want, [r for r in stored if r.device == want["device"]])
            got = matches[0]
            for name, value in want["fields"].items():
                assert got.fields[name] == pytest.approx(float(value)), (sample["source"], name)
            for name, value in want.get("tags", {}).items():
                assert got.tags[name] == value
