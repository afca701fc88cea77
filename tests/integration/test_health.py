"""What a running gateway tells about itself: /healthz, /readyz following the broker within seconds, and its
own counters written to the sinks as measurement `gateway`."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.sinks.sqlite import StoredReading, read_readings
from gateway.telemetry.self_metrics import FIELDS
from tests.support.gateway_proc import GatewayProcess, sqlite_env
from tests.support.servers import Mosquitto
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration

READY_WITHIN_S = 5.0


def _status(gateway: GatewayProcess, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.http_port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _seconds_until(gateway: GatewayProcess, want: int, limit_s: float) -> float:
    """Seconds until /readyz answers `want` (polled every 50 ms); fails after `limit_s`."""
    started = time.monotonic()
    wait_until(lambda: _status(gateway, "/readyz")[0] == want, limit_s, f"/readyz answering {want}", gateway.log_tail)
    return time.monotonic() - started


@pytest.mark.parametrize("kill", [pytest.param(False, id="broker-stopped"), pytest.param(True, id="broker-killed")])
def test_readyz_follows_the_broker(tmp_path: Path, mosquitto: Mosquitto, kill: bool) -> None:
    env = {**sqlite_env(mosquitto.url, "gw-health", tmp_path / "g.db"), "GATEWAY_MQTT__RECONNECT_MAX_S": "1"}
    config = tmp_path / "gateway.yaml"
    config.write_text("sqlite:\n  path: g.db\n")
    with GatewayProcess(tmp_path / "gw", env, config=config) as gateway:
        assert _status(gateway, "/healthz") == (200, "ok\n")
        assert _status(gateway, "/readyz") == (200, "ready\n")

        mosquitto.stop(kill=kill)
        went_down = _seconds_until(gateway, 503, READY_WITHIN_S)
        status, why = _status(gateway, "/readyz")
        assert (status, why) == (503, "broker not connected\n")
        assert _status(gateway, "/healthz")[0] == 200  # alive, just not ready

        mosquitto.start()
        came_back = _seconds_until(gateway, 200, READY_WITHIN_S)
    print(f"not ready {went_down:.2f} s after the broker went away, ready {came_back:.2f} s after it returned")


def test_own_counters_are_written_to_the_sinks_as_measurement_gateway(tmp_path: Path, mosquitto: Mosquitto) -> None:
    db = tmp_path / "g.db"
    env = {
        **sqlite_env(mosquitto.url, "gw-self", db),
        "GATEWAY_SQLITE__FLUSH_INTERVAL_MS": "20",
        "GATEWAY_SELF_METRICS__INTERVAL_S": "0.3",
    }
    config = tmp_path / "gateway.yaml"
    config.write_text("sqlite:\n  path: g.db\n")
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "self-pub", protocol=mqtt.MQTTv5)
    with GatewayProcess(tmp_path / "gw", env, config=config) as gateway:
        publisher.connect(mosquitto.host, mosquitto.port)
        publisher.loop_start()
        for i in range(5):
            body = {"id": f"m{i}", "metrics": {"t": i}} if i < 4 else {"metrics": {}}  # the last one is rejected
            publisher.publish("devices/d1/telemetry", json.dumps(body), qos=1).wait_for_publish(5)
        gateway.wait_for('gateway_readings_stored{sink="sqlite"}', 4, timeout_s=10)
        points: list[StoredReading] = []

        def two_points_the_last_counting_4() -> bool:
            points[:] = read_readings(db, "gateway")
            return len(points) >= 2 and points[-1].fields["readings_stored"] == 4

        wait_until(
            two_points_the_last_counting_4,
            10,
            "two of the gateway's own points, the last with readings_stored 4",
            lambda: f"points: {points}\n{gateway.log_tail()}",
        )
        metrics = gateway.metrics()
        publisher.loop_stop()
    last = points[-1]
    assert set(last.fields) == set(FIELDS)
    assert all(type(value) is float for value in last.fields.values())  # never a type change in InfluxDB
    assert last.tags == {"instance": "gw-self"}
    assert last.fields["messages_received"] == 5
    assert last.fields["messages_rejected"] == 1
    assert last.fields["readings_stored"] == 4
    assert last.fields["broker_connected"] == 1
    assert len({p.time_ns for p in points}) == len(points) >= 2  # one point every interval
    # The gateway's own points are not counted as stored device readings.
    assert metrics['gateway_readings_stored{sink="sqlite"}'] == 4
