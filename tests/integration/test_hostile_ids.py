"""1,000 generated device ids, tag keys, tag values and field keys full of `,` `=` space newline `\\` `"`: each
round-trips exactly through the stores or is rejected with a reason, and no name adds a series.

Device ids come from the topic level and must match `validation.device_id_pattern`. With the default pattern
every such id is rejected (invalid_device_id); a permissive pattern lets them through so that escaping is
exercised. Tag keys, tag values and field keys come from a native payload's `tags` and `metrics`.

What each store can carry, measured:
* Mosquitto refuses a topic with a control character (it disconnects the publisher: "malformed packet"), so
  ids with a newline cannot reach a gateway through it; they go through the Ingestor in process instead.
* Line protocol has no escape for a newline in a name: InfluxDB semantics require such names to be rejected.
  Tag keys, tag values and field keys are (invalid_name); device ids are (invalid_device_id), whatever the
  pattern allows.
* VictoriaMetrics (the InfluxDB API stand-in) cannot take a `"` in a field key: escaped, it keeps the backslash
  (field `a"b` would become metric `telemetry_a\\"b`); unescaped, it corrupts the point. So the gateway rejects
  such field keys (invalid_name) and every store holds the same. VictoriaMetrics stores everything else exactly.
  Metric names are `<measurement>_<field>`, tags are labels, `device` among them.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from gateway.config.schema import GatewayConfig, SqliteConfig, ValidationConfig, load_config
from gateway.ingest.ingestor import Ingestor
from gateway.model import RawMessage, Reading
from gateway.sinks.lineprotocol import LineEncoder
from gateway.sinks.sqlite import SqliteSink
from tests.support.gateway_proc import ROOT, GatewayProcess, store_env
from tests.support.mqtt import MqttTap, publish_pipelined
from tests.support.servers import Mosquitto, VictoriaMetrics
from tests.support.strict_lineprotocol import parse_lines

SEED = 4_242
COUNT = 1_000
SPECIALS = ',= \n\\"'
FILLER = "abcXYZ019_-.:@\u00e9\u4e2d\U0001f600"
PERMISSIVE = r"^[^/+#\x00]{1,128}$"  # anything that is one topic level
DEVICES_CONFIG = ROOT / "config" / "devices.example.yaml"
T0_MS = 1_718_000_000_000  # 2024-06-10: one millisecond a message, so every reading has its own time
MEASUREMENT = "telemetry"


def hostile_names(rnd: random.Random, count: int) -> list[str]:
    """Distinct names of 1 to 12 characters, each with at least one special character; a newline in about
    one name in ten (so that most messages, which carry four such names, stay storable)."""
    specials = [",", "=", " ", "\\", '"'] * 6 + ["\n"]
    names: dict[str, None] = {}
    while len(names) < count:
        chars = [rnd.choice(specials) if rnd.random() < 0.35 else rnd.choice(FILLER) for _ in range(rnd.randint(1, 12))]
        chars[rnd.randrange(len(chars))] = rnd.choice(specials)
        names["".join(chars)] = None
    return list(names)


class Case(NamedTuple):
    n: int
    device: str
    tag_key: str
    tag_value: str
    field: str

    @property
    def topic(self) -> str:
        return f"devices/{self.device}/telemetry"

    @property
    def payload(self) -> bytes:
        body = {"id": f"h-{self.n}", "ts": T0_MS + self.n, "metrics": {self.field: self.value}}
        return json.dumps({**body, "tags": {self.tag_key: self.tag_value}}).encode()

    @property
    def value(self) -> float:
        return self.n + 0.5

    @property
    def time_ns(self) -> int:
        return (T0_MS + self.n) * 1_000_000

    def publishable(self) -> bool:
        return "\n" not in self.device  # see the module docstring: Mosquitto refuses control characters

    def storable(self) -> bool:
        """No newline in any name (line protocol cannot carry one), no `"` in the field key (VictoriaMetrics
        cannot take one)."""
        names = (self.device, self.tag_key, self.tag_value, self.field)
        return not any("\n" in name for name in names) and '"' not in self.field


def generate_cases(hostile_devices: bool) -> list[Case]:
    rnd = random.Random(SEED)
    devices, keys, values, fields = (hostile_names(rnd, COUNT) for _ in range(4))  # never "device": no special
    if not hostile_devices:
        devices = [f"dev-{i:04d}" for i in range(COUNT)]
    return [Case(i, *names) for i, names in enumerate(zip(devices, keys, values, fields, strict=True))]


CASES = generate_cases(hostile_devices=True)


def test_the_generated_names_hold_every_special_character() -> None:
    names = [name for case in CASES for name in case[1:]]
    assert len({case.device for case in CASES}) == COUNT
    for char in SPECIALS:
        assert sum(char in name for name in names) > 200, repr(char)
    assert all(any(c in name for c in SPECIALS) for name in names)
    storable = sum(case.storable() for case in CASES)
    assert COUNT // 4 < storable < COUNT  # both outcomes are exercised


# --- in process: the Ingestor, the line-protocol encoder read back strictly, the SQLite sink ----------------------


def config(tmp_path: Path, pattern: str | None) -> GatewayConfig:
    base = load_config(DEVICES_CONFIG)
    validation = ValidationConfig(device_id_pattern=pattern) if pattern else base.validation
    return base.model_copy(update={"sqlite": SqliteConfig(path=tmp_path / "ids.db"), "validation": validation})


Row = tuple[str, str, frozenset[tuple[str, str]], str, int, Any]


def expected_row(case: Case) -> Row:
    return (MEASUREMENT, case.device, frozenset({(case.tag_key, case.tag_value)}), case.field, case.time_ns, case.value)


def sqlite_rows(db: Path) -> set[Row]:
    conn = sqlite3.connect(db)
    try:
        query = "SELECT measurement, device, tags, field, time_ns, value FROM readings"
        return {(m, d, frozenset(json.loads(t).items()), f, ns, v) for m, d, t, f, ns, v in conn.execute(query)}
    finally:
        conn.close()


def ingest(cases: list[Case], config: GatewayConfig) -> tuple[list[Reading], Counter[str]]:
    ingestor = Ingestor(config)
    readings: list[Reading] = []
    rejected: Counter[str] = Counter()
    for case in cases:
        outcome = ingestor.process(RawMessage(case.topic, case.payload, 1, time.time_ns()))
        if outcome.rejection is not None:
            assert outcome.rejection.detail
            rejected[outcome.rejection.reason] += 1
        else:
            assert outcome.duplicates == 0
            [reading] = outcome.readings
            readings.append(reading)
    return readings, rejected


def check_round_trip(cases: list[Case], readings: list[Reading], db: Path) -> None:
    """Line protocol read back strictly: one point per reading with exactly its series; then the SQLite sink."""
    points = parse_lines(LineEncoder().encode(readings).decode()) if readings else []
    assert len(points) == len(readings)
    by_device = {case.device: case for case in cases}
    series = set()
    for reading, point in zip(readings, points, strict=True):
        case = by_device[reading.device]
        assert point.measurement == MEASUREMENT
        assert sorted(point.tags) == sorted([("device", case.device), (case.tag_key, case.tag_value)])
        assert point.fields == {case.field: case.value}
        assert point.time_ns == case.time_ns
        series.add((point.measurement, point.tags, tuple(point.fields)))
    assert len(series) == len(readings)  # no extra series, none merged
    sink = SqliteSink(SqliteConfig(path=db))
    sink.write(readings)
    sink.close()
    assert sqlite_rows(db) == {expected_row(by_device[r.device]) for r in readings}


@pytest.mark.parametrize(
    ("pattern", "hostile_devices"),
    [
        pytest.param(PERMISSIVE, True, id="permissive-pattern"),
        pytest.param(None, True, id="default-pattern"),
        pytest.param(None, False, id="default-pattern-plain-ids"),
    ],
)
def test_each_name_round_trips_or_is_rejected_in_process(
    tmp_path: Path, pattern: str | None, hostile_devices: bool
) -> None:
    cases = generate_cases(hostile_devices)
    if pattern == PERMISSIVE:  # newlines in device ids: test_newline_in_a_device_id_is_rejected
        cases = [case for case in cases if "\n" not in case.device]
    readings, rejected = ingest(cases, config(tmp_path, pattern))
    accepted = [case for case in cases if case.storable() and (pattern == PERMISSIVE or not hostile_devices)]
    assert [r.device for r in readings] == [case.device for case in accepted]
    if pattern is None and hostile_devices:
        assert rejected == Counter(invalid_device_id=len(cases))
    else:
        assert rejected == Counter(invalid_name=len(cases) - len(accepted))
    check_round_trip(cases, readings, tmp_path / "ids.db")
    print(f"\n{len(readings)} of {len(cases)} round-trip, {dict(rejected)}")


def test_newline_in_a_device_id_is_rejected_even_with_a_permissive_pattern(tmp_path: Path) -> None:
    cases = [case for case in CASES if "\n" in case.device]
    assert len(cases) > 50
    readings, rejected = ingest(cases, config(tmp_path, PERMISSIVE))
    assert readings == []
    assert set(rejected) <= {"invalid_device_id", "invalid_name"}


# --- through Mosquitto, a gateway process, VictoriaMetrics and SQLite ----------------------------------------------


def vm_series_name(field: str) -> str:
    return f"{MEASUREMENT}_{field}"


class Stored(NamedTuple):
    metrics: dict[str, float]
    deadletters: dict[str, list[dict[str, Any]]]
    vm_series: list[tuple[str, frozenset[tuple[str, str]], list[int], list[float]]]
    sqlite: set[Row]


@pytest.fixture
def run_gateway(tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics) -> Iterator[Any]:
    def run(cases: list[Case], pattern: str | None, expect_stored: int) -> Stored:
        env = store_env(tmp_path, mosquitto.url, victoria.url, "gw-ids")
        if pattern is not None:
            env["GATEWAY_VALIDATION__DEVICE_ID_PATTERN"] = pattern
        with MqttTap(mosquitto, "gateway/deadletter/#", "ids-deadletters") as tap:
            with GatewayProcess(tmp_path / "gw", env, config=DEVICES_CONFIG) as gateway:
                publish_pipelined(mosquitto, [(case.topic, case.payload) for case in cases], "ids-pub")
                gateway.wait_for("gateway_messages_acknowledged", len(cases), timeout_s=30)
                for sink in ("influx", "sqlite"):
                    gateway.wait_for(f'gateway_readings_stored{{sink="{sink}"}}', expect_stored, timeout_s=30)
                gateway.wait_for("gateway_deadletters_published", len(cases) - expect_stored, timeout_s=30)
                metrics = gateway.metrics()
                assert gateway.proc is not None and gateway.proc.poll() is None
            tap.wait_for(len(cases) - expect_stored, timeout=10)
            tap.sync()  # the positive marker: every dead letter the broker took before it has arrived
        deadletters: dict[str, list[dict[str, Any]]] = {}
        for record in tap.records():
            deadletters.setdefault(str(record["topic"]), []).append(record)
        victoria.wait_for_samples(expect_stored, timeout=10)
        series = [(s.name, frozenset(s.labels.items()), s.timestamps, s.values) for s in victoria.export()]
        return Stored(metrics, deadletters, series, sqlite_rows(tmp_path / "gateway.db"))

    yield run


def check_stores(cases: list[Case], accepted: list[Case], reason: str, stored: Stored) -> None:
    metrics = stored.metrics
    assert metrics["gateway_messages_received"] == metrics["gateway_messages_acknowledged"] == len(cases)
    rejected = {k: v for k, v in metrics.items() if k.startswith("gateway_messages_rejected{")}
    assert rejected == (
        {f'gateway_messages_rejected{{reason="{reason}"}}': len(cases) - len(accepted)}
        if len(cases) > len(accepted)
        else {}
    )
    assert metrics["gateway_readings_accepted"] == len(accepted)
    for sink in ("influx", "sqlite"):
        assert metrics.get(f'gateway_readings_stored{{sink="{sink}"}}', 0) == len(accepted)

    # Every rejected message has its dead-letter record, with the reason; no accepted one has.
    refused = [case for case in cases if case not in accepted]
    assert {topic: len(records) for topic, records in stored.deadletters.items()} == {case.topic: 1 for case in refused}
    for case in refused:
        [record] = stored.deadletters[case.topic]
        assert (record["reason"], record["payload"]) == (reason, case.payload.decode())

    # VictoriaMetrics: exactly one series per accepted reading, named and labelled exactly; 0 extra.
    expected_series = {
        (
            vm_series_name(c.field),
            frozenset({("device", c.device), (c.tag_key, c.tag_value)}),
            (T0_MS + c.n,),
            (c.value,),
        )
        for c in accepted
    }
    got = {(name, labels, tuple(ts), tuple(values)) for name, labels, ts, values in stored.vm_series}
    assert len(stored.vm_series) == len(expected_series)
    assert got == expected_series

    assert stored.sqlite == {expected_row(case) for case in accepted}


@pytest.mark.integration
def test_hostile_device_ids_round_trip_with_a_permissive_pattern(run_gateway: Any) -> None:
    cases = [case for case in CASES if case.publishable()]
    accepted = [case for case in cases if case.storable()]
    stored = run_gateway(cases, PERMISSIVE, len(accepted))
    check_stores(cases, accepted, "invalid_name", stored)
    print(f"\n{len(cases)} published, {len(accepted)} stored, {len(stored.vm_series)} series in VictoriaMetrics")


@pytest.mark.integration
def test_hostile_device_ids_are_rejected_with_the_default_pattern(run_gateway: Any) -> None:
    cases = [case for case in CASES if case.publishable()]
    stored = run_gateway(cases, None, 0)
    check_stores(cases, [], "invalid_device_id", stored)


@pytest.mark.integration
def test_hostile_tags_and_fields_round_trip_with_the_default_pattern(run_gateway: Any) -> None:
    cases = generate_cases(hostile_devices=False)
    accepted = [case for case in cases if case.storable()]
    stored = run_gateway(cases, None, len(accepted))
    check_stores(cases, accepted, "invalid_name", stored)
    print(f"\n{len(cases)} published, {len(accepted)} stored, {len(stored.vm_series)} series in VictoriaMetrics")
