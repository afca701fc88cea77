"""A device that reboots and starts over (sequence numbers from 1 again, new values) is not taken for a redelivery of
what it sent before, whatever identifies its readings: an id, seq and ts, ts only, seq only, or nothing, in every
payload format that derives reading ids. Real processes: Mosquitto and the gateway (SQLite sink).

The keys (README, "Duplicates"): the device's `id`; else (seq, ts); else (ts, hash of the values); where the
payload has no timestamp the receive time stands for ts. A reboot moves the device's clock on, or the receive time.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.sinks.sqlite import read_readings
from tests.support.gateway_proc import GatewayProcess
from tests.support.servers import Mosquitto

pytestmark = pytest.mark.integration

CONFIG = """
sqlite: {path: gateway.db, flush_interval_ms: 20}
mappings:
  - {topic: "devices/{device}/telemetry", format: native}
  - {topic: "json-ts/{device}", format: json, timestamp_field: ts}
  - {topic: "json/{device}", format: json}
  - {topic: "value/{device}/{metric}", format: value}
  - {topic: "senml/{device}", format: senml}
  - {topic: "tb/{device}", format: thingsboard}
  - {topic: "line/{device}", format: line}
"""
READINGS_PER_BOOT = 3
T0_S = int(time.time()) - 3600  # the device clock at the first boot
REBOOT_S = 600  # how far the device clock has moved on at the second boot


# (device, topic, payload for reading n of boot b): n counts from 1 again in each boot, the value is new.
Case = tuple[str, str, Callable[[int, int], bytes]]


def _json(document: object) -> bytes:
    return json.dumps(document).encode()


def _ts(n: int, boot: int) -> int:
    return T0_S + boot * REBOOT_S + n


def _value(n: int, boot: int) -> float:
    return boot * 100 + n


CASES: list[Case] = [
    # ids unique per device, as the README asks: a device that reuses an id within the window is deduplicated
    ("native-id", "devices/native-id/telemetry", lambda n, b: _json({"id": f"{b}.{n}", "metrics": {"v": b + n}})),
    (
        "native-seq-ts",
        "devices/native-seq-ts/telemetry",
        lambda n, b: _json({"seq": n, "ts": _ts(n, b), "metrics": {"v": _value(n, b)}}),
    ),
    ("native-ts", "devices/native-ts/telemetry", lambda n, b: _json({"ts": _ts(n, b), "metrics": {"v": _value(n, b)}})),
    ("native-seq", "devices/native-seq/telemetry", lambda n, b: _json({"seq": n, "metrics": {"v": _value(n, b)}})),
    ("native-none", "devices/native-none/telemetry", lambda n, b: _json({"metrics": {"v": _value(n, b)}})),
    ("json-ts", "json-ts/json-ts", lambda n, b: _json({"ts": _ts(n, b), "v": _value(n, b)})),
    ("json-none", "json/json-none", lambda n, b: _json({"v": _value(n, b)})),
    ("value-none", "value/value-none/v", lambda n, b: str(_value(n, b)).encode()),
    ("senml-ts", "senml/senml-ts", lambda n, b: _json([{"bn": "x:", "bt": _ts(n, b), "n": "v", "v": _value(n, b)}])),
    ("senml-none", "senml/senml-none", lambda n, b: _json([{"n": "v", "v": _value(n, b)}])),  # relative: now
    ("tb-ts", "tb/tb-ts", lambda n, b: _json({"ts": _ts(n, b) * 1000, "values": {"v": _value(n, b)}})),
    ("tb-none", "tb/tb-none", lambda n, b: _json({"v": _value(n, b)})),
    ("line-ts", "line/line-ts", lambda n, b: f"m v={_value(n, b)} {_ts(n, b) * 1_000_000_000}".encode()),
    ("line-none", "line/line-none", lambda n, b: f"m v={_value(n, b)}".encode()),
]


def test_a_rebooted_device_is_not_taken_for_a_redelivery_whatever_keys_its_readings(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG)
    env = {"GATEWAY_MQTT__URL": mosquitto.url, "GATEWAY_MQTT__CLIENT_ID": "gw-reboot"}
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "reboot-publisher", protocol=mqtt.MQTTv5)
    expected = len(CASES) * 2 * READINGS_PER_BOOT
    with GatewayProcess(tmp_path / "gw", env, config=config) as gateway:
        publisher.connect(mosquitto.host, mosquitto.port)
        publisher.loop_start()
        for boot in (0, 1):
            for n in range(1, READINGS_PER_BOOT + 1):
                for _device, topic, payload in CASES:
                    publisher.publish(topic, payload(n, boot), qos=1).wait_for_publish(10)
        publisher.loop_stop()
        publisher.disconnect()
        assert gateway.wait_for("gateway_messages_acknowledged", expected, timeout_s=20) == expected
        gateway.wait_for('gateway_readings_stored{sink="sqlite"}', expected, timeout_s=10)
        metrics = gateway.metrics()
    assert not [name for name in metrics if name.startswith("gateway_messages_rejected")], metrics
    stored = Counter(r.device for r in read_readings(tmp_path / "gw" / "gateway.db"))
    assert stored == {device: 2 * READINGS_PER_BOOT for device, _topic, _payload in CASES}
    assert metrics["gateway_readings_duplicate"] == 0
