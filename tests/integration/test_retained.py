"""Retained messages and the persistent session, with real Mosquitto and gateway processes: a retained message
is ingested once, when its filter is first subscribed, not again on every reconnect."""

from __future__ import annotations

from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.gateway_proc import sqlite_gateway, sqlite_rows
from tests.support.servers import Mosquitto
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration


def _publish_retained(broker: Mosquitto, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="retained-publisher", protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_retained_message_is_stored_once_across_restarts(tmp_path: Path, mosquitto: Mosquitto, protocol: str) -> None:
    """A retained status without `ts` gets the receive time: each repeat after a reconnect was a new row."""
    _publish_retained(mosquitto, "devices/lamp-1/telemetry", b'{"metrics": {"on": 1}}')
    workdir = tmp_path / "gw"
    gateway = sqlite_gateway(workdir, mosquitto.url, f"gw-retained-{protocol}", mqtt={"protocol": protocol})
    db = workdir / "gateway.db"
    with gateway:
        wait_until(lambda: sqlite_rows(db) == 1, 15, "the retained reading stored", gateway.log_tail)
    for restart in range(3):
        with gateway:
            # On a resumed session the retained message is either not sent (MQTT 5: Retain Handling) or sent
            # and skipped (3.1.1); a live reading published now proves the session is reading.
            _publish_retained(mosquitto, "devices/lamp-2/telemetry", b'{"metrics": {"on": %d}}' % restart)
            stored = restart + 2
            wait_until(lambda n=stored: sqlite_rows(db) == n, 15, "the live reading stored", gateway.log_tail)
            metrics = gateway.metrics()
            if protocol == "3.1.1":
                assert metrics['gateway_messages_ignored{reason="retained"}'] >= 1
    assert sqlite_rows(db) == 4  # one for lamp-1, three for lamp-2
