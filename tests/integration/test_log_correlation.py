"""A correlation id ties a rejected message's log line to its dead-letter record; the latency and size histograms on
/metrics count what went through (real Mosquitto and gateway process)."""

from __future__ import annotations

import json
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.support.gateway_proc import GatewayProcess, sqlite_env
from tests.support.mqtt import MqttTap
from tests.support.servers import Mosquitto


@pytest.mark.integration
def test_a_rejected_message_is_traceable_from_log_to_dead_letter(tmp_path: Path, mosquitto: Mosquitto) -> None:
    env = {**sqlite_env(mosquitto.url, "gw-logs", tmp_path / "g.db"), "GATEWAY_LOG__FORMAT": "json"}
    config = tmp_path / "gateway.yaml"
    config.write_text("sqlite:\n  path: g.db\n")
    watcher = MqttTap(mosquitto, "gateway/deadletter/#", "dl-watch")
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "logs-pub", protocol=mqtt.MQTTv5)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    with GatewayProcess(tmp_path / "gw", env, config=config) as gateway:
        for i in range(20):  # a flood of one reason: rate-limited to a few lines
            publisher.publish("devices/d1/telemetry", f"{{not json {i}", qos=1).wait_for_publish(5)
        publisher.publish("devices/d1/telemetry", json.dumps({"metrics": {"t": 1}}), qos=1).wait_for_publish(5)
        gateway.wait_for('gateway_readings_stored{sink="sqlite"}', 1, timeout_s=10)
        watcher.wait_for(20, timeout=10)
        records = [message.json() for message in watcher.sync()]  # and no more than the 20
        metrics = gateway.metrics()
    watcher.close()
    publisher.loop_stop()

    lines = [json.loads(line) for line in gateway.log_path.read_text().splitlines() if line.startswith("{")]
    rejected = [line for line in lines if line.get("reason") == "malformed_json"]
    assert 1 <= len(rejected) <= 5, "20 rejections of one reason log at most a burst of lines"
    assert len(records) == 20
    ids = {record["correlation_id"] for record in records}
    assert len(ids) == 20
    assert {line["correlation_id"] for line in rejected} <= ids  # each logged one names its dead letter
    assert metrics["gateway_ingest_seconds_count"] == 21
    assert metrics['gateway_sink_write_seconds_count{sink="sqlite"}'] >= 1
    assert metrics['gateway_sink_batch_readings_sum{sink="sqlite"}'] == 1
    assert metrics["gateway_journal_commit_messages_sum"] == 21
