"""The foundation's promises, end to end, with real processes: Mosquitto, the gateway, VictoriaMetrics."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from device_sim.fleet import FleetSpec, generate
from device_sim.publisher import publish
from tests.support.gateway_proc import GatewayProcess, store_env
from tests.support.mqtt import MqttTap
from tests.support.servers import Mosquitto, VictoriaMetrics
from tests.support.storecheck import GATEWAY_REASONS, compare

pytestmark = pytest.mark.integration


def _gateway(tmp_path: Path, broker: Mosquitto, vm: VictoriaMetrics) -> GatewayProcess:
    return GatewayProcess(tmp_path / "gateway", store_env(tmp_path, broker.url, vm.url, f"gw-test-{broker.port}"))


def test_stores_exactly_the_unique_valid_readings_and_dead_letters_the_rest(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    fleet = generate(FleetSpec(devices=1000, messages=100_000, seed=7, dup_rate=0.05, malformed_rate=0.02))
    summary = fleet.manifest.summary()
    assert summary.duplicates > 4000 and sum(summary.malformed.values()) > 1500  # the mix the test is about
    expected = Counter({(rej.topic, rej.reason): rej.count for rej in fleet.manifest.rejections})
    tap = MqttTap(mosquitto, "gateway/deadletter/#", "deadletter-tap")
    with _gateway(tmp_path, mosquitto, victoria) as gateway:
        stats = publish(fleet.outgoing, mosquitto.url, qos=1, connections=2)
        assert stats.sent == len(fleet.outgoing)
        acked = gateway.wait_for("gateway_messages_acknowledged", len(fleet.outgoing), timeout_s=120)
        assert acked == len(fleet.outgoing), gateway.log_tail()
        # Acknowledged once journaled; the sinks drain the journal right after.
        for sink in ("influx", "sqlite"):
            gateway.wait_for(f'gateway_readings_stored{{sink="{sink}"}}', summary.valid, timeout_s=60)
        gateway.wait_for("gateway_deadletters_published", expected.total(), timeout_s=30)
        metrics = gateway.metrics()
        tap.wait_for(expected.total(), timeout=10)
        tap.sync()  # the positive marker: every dead letter the broker took before it has arrived
        records = tap.records()
    tap.close()

    stored = victoria.wait_for_samples(summary.valid * 4, '{__name__=~"telemetry_.*"}', timeout=30)
    result = compare(fleet.manifest, victoria)
    assert (len(result.missing), len(result.extra), len(result.mismatched)) == (0, 0, 0), result.missing[:5]
    assert result.duplicated_samples == 0
    assert result.stored == summary.valid
    assert stored == summary.valid * 4  # temperature, humidity, battery, relay

    assert metrics["gateway_readings_duplicate"] == summary.duplicates
    assert metrics['gateway_readings_stored{sink="influx"}'] == summary.valid
    assert metrics['gateway_readings_stored{sink="sqlite"}'] == summary.valid
    # The accounting every message obeys (one reading a message here): received = stored + duplicates +
    # rejected + pending.
    rejected = sum(v for k, v in metrics.items() if k.startswith("gateway_messages_rejected{"))
    assert metrics["gateway_messages_received"] == (
        metrics['gateway_readings_stored{sink="sqlite"}']
        + metrics["gateway_readings_duplicate"]
        + rejected
        + metrics["gateway_messages_pending"]
    )
    assert rejected == sum(r.count for r in fleet.manifest.rejections)

    # Every malformed message is on the dead-letter topic, under its device, with a reason that fits.
    got = Counter((str(r["topic"])) for r in records)
    want: Counter[str] = Counter()
    for (topic, _reason), n in expected.items():
        want[topic] += n
    assert len(records) == expected.total(), (
        metrics["gateway_deadletters_published"],
        sorted(set(r for (t, r) in expected if got[t] < want[t])),
    )
    by_topic: Counter[str] = Counter()
    for record in records:
        assert record["published_on"] == f"gateway/deadletter/{record['device']}"
        assert record["reason"] and record["detail"] and record["received_at"]
        assert "payload" in record or "payload_base64" in record
        by_topic[str(record["topic"])] += 1
    expected_by_topic: Counter[str] = Counter()
    for (topic, _), n in expected.items():
        expected_by_topic[topic] += n
    assert by_topic == expected_by_topic
    reasons_by_topic = {(r["device"], r["reason"]) for r in records}
    for (topic, sim_reason), _ in expected.items():
        device = topic.split("/")[1]
        assert any((device, code) in reasons_by_topic for code in GATEWAY_REASONS[sim_reason]), (
            topic,
            sim_reason,
        )


def test_survives_a_broker_restart_mid_stream(tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics) -> None:
    fleet = generate(FleetSpec(devices=200, messages=20_000, seed=11))
    with _gateway(tmp_path, mosquitto, victoria) as gateway:
        result: dict[str, object] = {}
        sender = threading.Thread(
            target=lambda: result.update(stats=publish(fleet.outgoing, mosquitto.url, qos=1, rate=2500))
        )
        sender.start()
        gateway.wait_for("gateway_messages_acknowledged", 3000, timeout_s=30)
        mosquitto.stop()
        time.sleep(5)  # the outage itself: five seconds without a broker
        mosquitto.start()
        sender.join(120)
        assert not sender.is_alive()
        # The gateway found the broker again by itself and caught up.
        gateway.wait_for('gateway_readings_stored{sink="influx"}', len(fleet.outgoing), timeout_s=60)
        assert gateway.metrics()["gateway_broker_connected"] == 1
    victoria.wait_for_samples(len(fleet.outgoing) * 4, '{__name__=~"telemetry_.*"}', timeout=30)
    comparison = compare(fleet.manifest, victoria)
    assert comparison.missing == []
    assert comparison.extra == [] and comparison.mismatched == []
