"""Input at the edges, decided once and the same in every store: device times before 2000, a double quote in a
metric name, tag names a store reserves (real Mosquitto, VictoriaMetrics and gateway, both sinks). The parsers' side
(JSON nested past the limit, digits other than ASCII ones) is unit/test_parser_edges.py.

* A device time before 2000-01-01 is refused (`timestamp_out_of_range`): it is a clock that was never set, and
  the stores disagree on it (VictoriaMetrics stores `ts: 0` at the time of the write, SQLite at 1970).
* A metric name with a double quote is refused (`invalid_name`): line protocol cannot carry it to
  VictoriaMetrics (unescaped it corrupts the point, escaped the backslash stays in the name). Commas, spaces,
  equals signs and backslashes arrive intact in both stores.
* The tags `__name__` (VictoriaMetrics drops it: the metric name) and `time` (InfluxDB refuses the point) are
  refused like `device` (`reserved_tag`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import NamedTuple

import paho.mqtt.client as mqtt
import pytest

from gateway.sinks.sqlite import StoredReading, read_readings
from tests.support.gateway_proc import GatewayProcess, store_env
from tests.support.servers import Mosquitto, Series, VictoriaMetrics

Y2K_NS = 946_684_800 * 1_000_000_000
CONFIG = """
mappings:
  - {topic: "devices/{device}/telemetry", format: native}
  - {topic: "line/{device}", format: line}
"""
SPECIAL_NAME = "a b,c=d\\e"  # line protocol's specials, backslash included: escaped on the way, intact in the store
MESSAGES = [
    # device times (12c)
    ("devices/clock-zero/telemetry", {"id": "z", "ts": 0, "metrics": {"t": 1}}),
    ("devices/clock-1999/telemetry", {"id": "o", "ts": "1999-12-31T23:59:59.999Z", "metrics": {"t": 1}}),
    ("line/clock-zero-line", "telemetry t=1 0"),
    ("devices/clock-y2k/telemetry", {"id": "y", "ts": "2000-01-01T00:00:00Z", "metrics": {"t": 2}}),
    # metric names (12d)
    ("devices/names-quote/telemetry", {"id": "q", "metrics": {'a"b': 1}}),
    ("devices/names-special/telemetry", {"id": "s", "metrics": {SPECIAL_NAME: 3}}),
    # tag names (12e)
    ("devices/tags-name/telemetry", {"id": "n", "metrics": {"t": 1}, "tags": {"__name__": "x"}}),
    ("devices/tags-time/telemetry", {"id": "m", "metrics": {"t": 1}, "tags": {"time": "x"}}),
    ("devices/tags-fine/telemetry", {"id": "f", "metrics": {"t": 4}, "tags": {"__site": "a", "zone": "b"}}),
]


class Run(NamedTuple):
    metrics: dict[str, float]
    sqlite: dict[str, list[StoredReading]]  # by device
    victoria: dict[str, list[Series]]  # by device


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Every message of MESSAGES through one gateway, both sinks; what each store then holds."""
    tmp = tmp_path_factory.mktemp("fidelity")
    config = tmp / "gateway.yaml"
    config.write_text(CONFIG)
    with Mosquitto(tmp / "mosquitto") as broker, VictoriaMetrics(tmp / "vm") as vm:
        env = store_env(tmp, broker.url, vm.url, "gw-fidelity")
        with GatewayProcess(tmp / "gw", env, config=config) as gateway:
            publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "fidelity-publisher", protocol=mqtt.MQTTv5)
            publisher.connect(broker.host, broker.port)
            publisher.loop_start()
            for topic, body in MESSAGES:
                payload = body if isinstance(body, str) else json.dumps(body)
                publisher.publish(topic, payload, qos=1).wait_for_publish(10)
            publisher.loop_stop()
            publisher.disconnect()
            total = len(MESSAGES)
            assert gateway.wait_for("gateway_messages_acknowledged", total, timeout_s=15) == total
            stored = gateway.metrics()["gateway_readings_accepted"]
            for sink in ("influx", "sqlite"):
                gateway.wait_for(f'gateway_readings_stored{{sink="{sink}"}}', stored, timeout_s=15)
            metrics = gateway.metrics()
        vm.force_flush()
        victoria: dict[str, list[Series]] = {}
        for series in vm.export('{__name__=~"telemetry_.*"}'):
            victoria.setdefault(series.metric["device"], []).append(series)
    sqlite: dict[str, list[StoredReading]] = {}
    for reading in read_readings(tmp / "gateway.db"):
        sqlite.setdefault(reading.device, []).append(reading)
    yield Run(metrics, sqlite, victoria)


def _rejected(run: Run, reason: str) -> float:
    return run.metrics.get(f'gateway_messages_rejected{{reason="{reason}"}}', 0)


@pytest.mark.integration
def test_a_device_time_before_2000_is_refused_alike_by_every_store(run: Run) -> None:
    assert _rejected(run, "timestamp_out_of_range") == 3
    for device in ("clock-zero", "clock-1999", "clock-zero-line"):
        assert device not in run.sqlite
        assert device not in run.victoria
    # The first instant accepted is stored at that instant by both.
    ((stored,),) = [run.sqlite["clock-y2k"]]
    assert (stored.time_ns, stored.fields) == (Y2K_NS, {"t": 2.0})
    ((series,),) = [run.victoria["clock-y2k"]]
    assert (series.timestamps, series.values) == ([Y2K_NS // 1_000_000], [2.0])


@pytest.mark.integration
def test_a_metric_name_with_a_double_quote_is_refused_and_other_specials_arrive_intact(run: Run) -> None:
    assert _rejected(run, "invalid_name") == 1
    assert "names-quote" not in run.sqlite
    assert "names-quote" not in run.victoria
    ((stored,),) = [run.sqlite["names-special"]]
    assert stored.fields == {SPECIAL_NAME: 3.0}
    ((series,),) = [run.victoria["names-special"]]
    assert series.name == f"telemetry_{SPECIAL_NAME}"


@pytest.mark.integration
def test_a_tag_name_a_store_reserves_is_refused_not_dropped(run: Run) -> None:
    assert _rejected(run, "reserved_tag") == 2
    for device in ("tags-name", "tags-time"):
        assert device not in run.sqlite
        assert device not in run.victoria
    ((stored,),) = [run.sqlite["tags-fine"]]
    assert stored.tags == {"__site": "a", "zone": "b"}
    ((series,),) = [run.victoria["tags-fine"]]
    assert series.labels == {"device": "tags-fine", "__site": "a", "zone": "b"}
