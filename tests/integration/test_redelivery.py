"""Messages without `id` and `ts` are stored once when the broker redelivers them, and a device that repeats itself
keeps every reading.

A reading without a device timestamp, id or sequence number is keyed by its receive time, which a redelivery does
not share. Mosquitto (2.0.11, measured) resends a message whose PUBACK it never got with the DUP flag and its
original packet id, after a reconnect and after its own restart; the gateway remembers, per packet id, the message
it last committed (gateway/ingest/dedup.py), so the DUP copy is recognised. Real processes: Mosquitto,
VictoriaMetrics, the gateway, and a TCP proxy between gateway and broker that holds back the gateway's PUBACKs,
so that the gateway commits (and stores) messages the broker still counts as in flight when the gateway is killed.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.support.gateway_proc import GatewayProcess, store_env
from tests.support.servers import Mosquitto, VictoriaMetrics
from tests.support.tcp_proxy import TcpProxy
from tests.support.waits import wait_until

NS = 1_000_000_000
CONFIG = """
mappings:
  - {topic: "devices/{device}/telemetry", format: native}
  - {topic: "zigbee2mqtt/{device}", format: json}
  - {topic: "esphome/{device}/{metric}", format: value}
"""
# Payloads without id and ts: the same one several times over, as a sensor that reports an unchanged value does.
UNTIMED = [
    *[("devices/thermostat/telemetry", b'{"metrics": {"t": 21.5}}')] * 3,
    *[("devices/counter/telemetry", json.dumps({"seq": n, "metrics": {"n": n}}).encode()) for n in range(1, 4)],
    *[("zigbee2mqtt/plug", b'{"power": 12.5}')] * 3,
    *[("esphome/soil/moisture", b"37.5")] * 3,
]


def _sqlite_readings(path: Path) -> int:
    """Readings (series and instant) in the SQLite sink."""
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as conn:
        try:
            query = "SELECT count(*) FROM (SELECT DISTINCT measurement, device, tags, time_ns FROM readings)"
            return int(conn.execute(query).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def _publish(broker: Mosquitto, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "redelivery-publisher", protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.mark.integration
def test_messages_without_id_or_ts_are_stored_once_when_redelivered_after_kill_9(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG)
    db = tmp_path / "gateway.db"
    with TcpProxy(mosquitto.port) as proxy:
        env = store_env(tmp_path, proxy.url, victoria.url, "gw-redelivery")
        env["GATEWAY_SQLITE__FLUSH_INTERVAL_MS"] = "20"
        gateway = GatewayProcess(tmp_path / "gw", env, config=config).start()
        try:
            # The subscription reaches the broker and a first message is acknowledged: the session is set up.
            _publish(mosquitto, [("devices/warmup/telemetry", b'{"id": "w1", "metrics": {"t": 1}}')])
            wait_until(
                lambda: _sqlite_readings(db) == 1, 10, "warm-up stored", lambda: (gateway.metrics(), gateway.log_tail())
            )
            assert gateway.wait_for("gateway_messages_acknowledged", 1, timeout_s=5) == 1

            proxy.hold_upstream()  # the broker gets no PUBACK from here on
            _publish(mosquitto, UNTIMED)
            # Committed, "acknowledged" into the proxy, stored: and still in flight for the broker.
            total = 1 + len(UNTIMED)
            assert gateway.wait_for("gateway_messages_acknowledged", total, timeout_s=10) == total
            wait_until(
                lambda: _sqlite_readings(db) == total,
                10,
                "untimed readings stored",
                lambda: (gateway.metrics(), gateway.log_tail()),
            )
            gateway.kill()
            proxy.cut()
            proxy.release_upstream()

            gateway.start()  # same client id and journal: the broker resumes the session and redelivers
            redelivered = gateway.wait_for("gateway_messages_received", len(UNTIMED), timeout_s=10)
            assert redelivered == len(UNTIMED), gateway.log_tail()
            assert gateway.wait_for("gateway_readings_duplicate", len(UNTIMED), timeout_s=10) == len(UNTIMED)
            # A repeat published afresh after the crash is a new reading, however alike the one before it.
            _publish(mosquitto, [UNTIMED[0]])
            wait_until(
                lambda: _sqlite_readings(db) == total + 1,
                10,
                "the fresh repeat stored",
                lambda: (gateway.metrics(), gateway.log_tail()),
            )
            assert gateway.wait_for('gateway_readings_stored{sink="influx"}', 1, timeout_s=10) == 1
            metrics = gateway.metrics()
        finally:
            gateway.stop()
            gateway.kill()
    assert metrics["gateway_readings_duplicate"] == len(UNTIMED)
    assert metrics["gateway_readings_accepted"] == 1
    assert _sqlite_readings(db) == 1 + len(UNTIMED) + 1
    victoria.force_flush()
    assert victoria.count_samples('{__name__=~"telemetry_.*"}') == 1 + len(UNTIMED) + 1  # one field each
