"""Several gateways share the load through an MQTT 5 shared subscription, each with its own id and journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_sim.fleet import FleetSpec, generate
from device_sim.publisher import publish
from tests.support.gateway_proc import GatewayProcess
from tests.support.servers import Mosquitto, VictoriaMetrics
from tests.support.storecheck import compare
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration


def test_two_replicas_split_the_stream_and_store_each_reading_once(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    fleet = generate(FleetSpec(devices=100, messages=10_000, seed=5))
    replicas = [
        GatewayProcess(
            tmp_path / f"gw{i}",
            {
                "GATEWAY_MQTT__URL": mosquitto.url,
                "GATEWAY_MQTT__CLIENT_ID": f"gateway-replica-{i}",
                "GATEWAY_MQTT__SHARED_GROUP": "gateways",
                "GATEWAY_INFLUX__URL": victoria.url,
                "GATEWAY_INFLUX__TOKEN": "t",
                "GATEWAY_SQLITE__PATH": str(tmp_path / f"gw{i}" / "g.db"),
                "GATEWAY_JOURNAL__PATH": str(tmp_path / f"gw{i}" / "journal.db"),
            },
        ).start()
        for i in range(2)
    ]
    try:
        publish(fleet.outgoing, mosquitto.url, qos=1)
        wait_until(
            lambda: sum(g.metrics()["gateway_messages_acknowledged"] for g in replicas) >= len(fleet.outgoing),
            30,
            f"{len(fleet.outgoing)} messages acknowledged by the two replicas",
            lambda: "\n".join(g.log_tail(10) for g in replicas),
        )
        received = [g.metrics()["gateway_messages_received"] for g in replicas]
    finally:
        for gateway in replicas:
            gateway.stop()
    assert sum(received) == len(fleet.outgoing)
    assert min(received) > 0.2 * len(fleet.outgoing), received  # the broker really split the stream
    victoria.wait_for_samples(len(fleet.outgoing) * 4, '{__name__=~"telemetry_.*"}', timeout=20)
    result = compare(fleet.manifest, victoria)
    assert (result.missing, result.extra, result.mismatched, result.duplicated_samples) == ([], [], [], 0)
