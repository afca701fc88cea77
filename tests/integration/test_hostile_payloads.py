"""A 10 MB payload, JSON nested 10,000 deep and 1e309 go to a running gateway between other devices' readings:
each is rejected with its reason in bounded time, and the other readings keep flowing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.sinks.sqlite import read_readings
from tests.support.gateway_proc import ROOT, GatewayProcess, sqlite_env
from tests.support.servers import Mosquitto

pytestmark = pytest.mark.integration

HOSTILE = [
    ("devices/big/telemetry", b'{"metrics": {"t": 1}, "pad": "' + b"x" * 10_000_000 + b'"}', "payload_too_large"),
    ("zigbee2mqtt/deep", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "too_deep"),
    ("devices/huge/telemetry", b'{"metrics": {"t": 1e309}}', "non_finite_value"),
]


def test_hostile_payloads_are_rejected_while_others_flow(tmp_path: Path, mosquitto: Mosquitto) -> None:
    env = sqlite_env(mosquitto.url, "gw-hostile", tmp_path / "g.db")
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "hostile-pub", protocol=mqtt.MQTTv5)
    with GatewayProcess(tmp_path / "gw", env, config=ROOT / "config" / "devices.example.yaml") as gateway:
        publisher.connect(mosquitto.host, mosquitto.port)
        publisher.loop_start()
        now_ms = int(time.time() * 1000)
        sent = 0
        started = time.monotonic()
        for _round in range(3):
            for topic, payload, _reason in HOSTILE:
                publisher.publish(topic, payload, qos=1).wait_for_publish(30)
                for _ in range(100):
                    seq = sent
                    good = {"id": f"ok-{seq}", "ts": now_ms - 10_000 + seq, "metrics": {"t": float(seq)}}
                    publisher.publish("devices/steady/telemetry", json.dumps(good), qos=1)
                    sent += 1
        total = sent + 3 * len(HOSTILE)
        # Handled without stalling: the wait's timeout is the bound (how fast belongs in bench/).
        assert gateway.wait_for("gateway_messages_acknowledged", total, timeout_s=60) == total
        elapsed = time.monotonic() - started
        gateway.wait_for('gateway_readings_stored{sink="sqlite"}', sent, timeout_s=20)
        metrics = gateway.metrics()
        publisher.loop_stop()
    print(f"{total} messages incl. {3 * len(HOSTILE)} hostile ones handled in {elapsed:.1f} s")
    for _topic, _payload, reason in HOSTILE:
        assert metrics[f'gateway_messages_rejected{{reason="{reason}"}}'] == 3
    stored = [r for r in read_readings(tmp_path / "g.db") if r.device == "steady"]
    assert len(stored) == sent
