"""Smoke tests of the server fixtures: they start real processes and prove the properties the
gateway tests rely on (Mosquitto session persistence across a restart, VictoriaMetrics accepting
InfluxDB line protocol with old timestamps and giving exact values back)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.servers import Mosquitto, Series, ServerError, VictoriaMetrics, free_port

pytestmark = pytest.mark.integration

TIMEOUT = 5.0
TS_2024 = 1_718_000_000_123  # 2024-06-10T06:13:20.123Z, in ms


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


class Subscriber:
    """Minimal threaded MQTT 5 subscriber that records what it receives across sessions."""

    def __init__(self, broker: Mosquitto, client_id: str) -> None:
        self.broker = broker
        self.client_id = client_id
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.session_present: bool | None = None
        self.messages: list[mqtt.MQTTMessage] = []
        self.got_message = threading.Event()

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason_code: Any, _p: Any) -> None:
        if not reason_code.is_failure:
            self.session_present = bool(flags.session_present)
            self.connected.set()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, _codes: Any, _p: Any) -> None:
        self.subscribed.set()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.append(message)
        self.got_message.set()

    @contextmanager
    def session(self) -> Iterator[mqtt.Client]:
        """Connect with Clean Start = 0 and a session expiry, as a durable consumer must.

        Mosquitto only writes sessions whose latest CONNECT had Clean Start = 0 to its db.
        """
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600  # 0 would end the session on disconnect
        self.connected.clear()
        client.connect(self.broker.host, self.broker.port, clean_start=False, properties=props)
        client.loop_start()
        try:
            assert self.connected.wait(TIMEOUT), "no CONNACK from broker"
            yield client
        finally:
            client.disconnect()
            client.loop_stop()


def publish_qos1(broker: Mosquitto, topic: str, payload: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="smoke-pub", protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), "no PUBACK from broker"
    finally:
        client.disconnect()
        client.loop_stop()


def write_lines(vm: VictoriaMetrics, lines: list[str], precision: str = WritePrecision.MS) -> None:
    with InfluxDBClient(url=vm.url, token="x", org="o") as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket="b", record="\n".join(lines), write_precision=precision
        )


def by_name(series: list[Series]) -> dict[str, Series]:
    return {f"{s.name}{sorted(s.labels.items())}": s for s in series}


# ---------------------------------------------------------------------------------------------------
# Mosquitto
# ---------------------------------------------------------------------------------------------------


def test_mosquitto_listens_on_private_port(mosquitto: Mosquitto) -> None:
    assert mosquitto.host == "127.0.0.1"
    assert mosquitto.port != 1883
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    assert mosquitto.running
    with socket.create_connection((mosquitto.host, mosquitto.port), timeout=TIMEOUT):
        pass


def test_mosquitto_persistent_session_survives_restart(mosquitto: Mosquitto) -> None:
    topic = "smoke/telemetry"
    sub = Subscriber(mosquitto, "smoke-sub")
    with sub.session() as client:
        client.subscribe(topic, qos=1)
        assert sub.subscribed.wait(TIMEOUT), "no SUBACK"

    # Subscriber offline: the broker must queue the QoS 1 message for its session ...
    publish_qos1(mosquitto, topic, b'{"t": 21.5}')
    # ... and keep it across a graceful restart (saved to mosquitto.db on SIGTERM).
    port = mosquitto.port
    mosquitto.restart()
    assert mosquitto.port == port
    assert mosquitto.db_path.is_file()

    with sub.session():
        assert sub.session_present is True
        assert sub.got_message.wait(TIMEOUT), f"queued message not delivered\n{mosquitto.log_tail()}"
    assert [(m.topic, m.payload, m.qos) for m in sub.messages] == [(topic, b'{"t": 21.5}', 1)]


def test_mosquitto_start_failure_reports_log(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "bad", extra_conf="this_is_not_an_option 1")
    broker.start_attempts = 1
    with pytest.raises(ServerError, match="this_is_not_an_option"):
        broker.start()
    assert not broker.running


# ---------------------------------------------------------------------------------------------------
# VictoriaMetrics
# ---------------------------------------------------------------------------------------------------


def test_victoria_roundtrip_influx_line_protocol(victoria: VictoriaMetrics) -> None:
    now_ms = int(time.time() * 1000)
    write_lines(
        victoria,
        [
            f"telemetry,device=d1 temperature=21.5,online=true {TS_2024}",
            f"telemetry,device=d1 temperature=-3.25,online=false {TS_2024 + 60_000}",
            f"telemetry,device=d2 temperature=0.1 {now_ms}",
        ],
    )
    assert victoria.wait_for_samples(5, timeout=TIMEOUT) == 5

    got = by_name(victoria.export('{__name__=~"telemetry_.*"}'))
    assert got == {
        "telemetry_temperature[('device', 'd1')]": Series(
            metric={"__name__": "telemetry_temperature", "device": "d1"},
            values=[21.5, -3.25],
            timestamps=[TS_2024, TS_2024 + 60_000],
        ),
        "telemetry_online[('device', 'd1')]": Series(
            metric={"__name__": "telemetry_online", "device": "d1"},
            values=[1.0, 0.0],
            timestamps=[TS_2024, TS_2024 + 60_000],
        ),
        "telemetry_temperature[('device', 'd2')]": Series(
            metric={"__name__": "telemetry_temperature", "device": "d2"},
            values=[0.1],
            timestamps=[now_ms],
        ),
    }


def test_victoria_facts_the_gateway_relies_on(victoria: VictoriaMetrics) -> None:
    """Duplicates are kept, no bucket label, ns truncated to ms; data survive a restart."""
    write_lines(victoria, [f"dup,device=d1 v=1 {TS_2024}"] * 2 + [f"dup,device=d1 v=2 {TS_2024}"])
    write_lines(victoria, [f"prec,device=d1 v=7 {TS_2024 * 1_000_000 + 456_789}"], WritePrecision.NS)
    assert victoria.wait_for_samples(4, timeout=TIMEOUT, settle=None) == 4

    victoria.restart()
    got = {s.name: s for s in victoria.export()}
    assert set(got) == {"dup_v", "prec_v"}
    assert got["dup_v"].metric == {"__name__": "dup_v", "device": "d1"}  # no db/bucket label
    assert got["dup_v"].timestamps == [TS_2024] * 3
    assert sorted(got["dup_v"].values) == [1.0, 1.0, 2.0]
    assert got["prec_v"].timestamps == [TS_2024]
    assert got["prec_v"].values == [7.0]

    victoria.delete_all()
    assert victoria.count_samples() == 0


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
