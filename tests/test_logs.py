"""Logs: JSON lines or readable lines, rate-limited per reason, and a correlation id that ties a rejected message's
log line to its dead-letter record; plus the latency and size histograms on /metrics."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.telemetry.logs import RateLimitFilter, configure
from tests.support.gateway_proc import GatewayProcess
from tests.support.servers import Mosquitto


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _record(key: str | None) -> logging.LogRecord:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "msg", None, None)
    if key is not None:
        record.rate_key = key
    return record


def test_rate_limit_is_per_key_and_reports_what_it_suppressed(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    limiter = RateLimitFilter(burst=3, interval_s=10)
    assert [limiter.filter(_record("a")) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.filter(_record("b"))  # another reason has its own budget
    assert all(limiter.filter(_record(None)) for _ in range(10))  # unkeyed lines are never limited
    clock[0] += 10
    first_after = _record("a")
    assert limiter.filter(first_after)
    assert first_after.suppressed == 2  # type: ignore[attr-defined]


def test_json_lines_carry_the_extra_fields(restore_logging: None) -> None:
    out = io.StringIO()
    configure("INFO", "json", out)
    logging.getLogger("gateway.x").info(
        "rejected %s", "m1", extra={"correlation_id": "rej-1", "reason": "malformed_json", "rate_key": "k"}
    )
    line = json.loads(out.getvalue())
    assert line["event"] == "rejected m1"
    assert line["level"] == "info"
    assert line["logger"] == "gateway.x"
    assert (line["correlation_id"], line["reason"]) == ("rej-1", "malformed_json")
    assert "rate_key" not in line
    assert line["timestamp"].endswith("Z")


def test_console_lines_are_readable(restore_logging: None) -> None:
    out = io.StringIO()
    configure("INFO", "console", out)
    logging.getLogger("gateway.x").warning("sink %s failing", "influx", extra={"correlation_id": "r-9"})
    text = out.getvalue()
    assert "sink influx failing" in text
    assert "correlation_id=r-9" in text
    assert not text.lstrip().startswith("{")


@pytest.mark.integration
def test_a_rejected_message_is_traceable_from_log_to_dead_letter(tmp_path: Path, mosquitto: Mosquitto) -> None:
    env = {
        "GATEWAY_MQTT__URL": mosquitto.url,
        "GATEWAY_MQTT__CLIENT_ID": "gw-logs",
        "GATEWAY_SQLITE__PATH": str(tmp_path / "g.db"),
        "GATEWAY_JOURNAL__PATH": str(tmp_path / "journal.db"),
        "GATEWAY_LOG__FORMAT": "json",
    }
    config = tmp_path / "gateway.yaml"
    config.write_text("sqlite:\n  path: g.db\n")
    records: list[dict[str, object]] = []
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "dl-watch", protocol=mqtt.MQTTv5)
    watcher.on_message = lambda _c, _u, msg: records.append(json.loads(msg.payload))
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.subscribe("gateway/deadletter/#", qos=1)
    watcher.loop_start()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "logs-pub", protocol=mqtt.MQTTv5)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    with GatewayProcess(tmp_path / "gw", env, config=config) as gateway:
        for i in range(20):  # a flood of one reason: rate-limited to a few lines
            publisher.publish("devices/d1/telemetry", f"{{not json {i}", qos=1).wait_for_publish(5)
        publisher.publish("devices/d1/telemetry", json.dumps({"metrics": {"t": 1}}), qos=1).wait_for_publish(5)
        gateway.wait_for('gateway_readings_stored{sink="sqlite"}', 1, timeout_s=10)
        deadline = time.monotonic() + 10
        while len(records) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        metrics = gateway.metrics()
    watcher.loop_stop()
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
