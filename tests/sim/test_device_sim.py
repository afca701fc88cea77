"""Tests for the device simulator: deterministic fleets, honest malformed messages, and publishing.

The publishing tests start their own Mosquitto on a free loopback port (never the system one on 1883).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_sim.brokerurl import BrokerAddress, parse_broker_url
from device_sim.fleet import FleetSpec, generate
from device_sim.malform import FUTURE_SHIFT_NS
from device_sim.manifest import ExpectedReading, ExpectedRejection, Manifest
from device_sim.pacing import Pacer
from device_sim.publisher import _route_by_topic
from device_sim.wire import MALFORMED_REASONS, MAX_PAYLOAD_BYTES, Outgoing, device_of, rfc3339_ms
from tests.support.fleets import MS, START_NS, spec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- helpers --------------------------------------------------------------------------------------


def ts_to_ns(ts: object) -> int:
    """The gateway's reading of `ts`, written independently of device_sim."""
    if isinstance(ts, str):
        parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        return (parsed - EPOCH) // timedelta(microseconds=1) * 1000
    assert isinstance(ts, int) and not isinstance(ts, bool)
    assert 10**11 < ts < 10**14, "simulator ts should be epoch milliseconds"
    return ts * MS


def assert_well_formed(body: dict[str, Any], topic: str) -> None:
    """Everything the gateway checks, except payload size and how far ts is in the future."""
    device = device_of(topic)
    assert isinstance(body["metrics"], dict) and body["metrics"]
    for value in body["metrics"].values():
        assert isinstance(value, bool | str) or (isinstance(value, int | float) and math.isfinite(value))
    assert body.get("device_id", device) == device
    assert body["id"] == f"{device}-{body['seq']:08d}"
    ts_to_ns(body["ts"])
    assert all(isinstance(v, str) for v in body.get("tags", {}).values())


@pytest.fixture(scope="module")
def mixed_fleet() -> Any:
    # Enough malformed messages that the rare oversized ones (1 in 200) show up too.
    return generate(spec(messages=5000, dup_rate=0.1, malformed_rate=0.5))


# -- determinism ----------------------------------------------------------------------------------


def test_same_spec_gives_identical_bytes_and_manifest() -> None:
    one = generate(spec(dup_rate=0.1, malformed_rate=0.1))
    two = generate(spec(dup_rate=0.1, malformed_rate=0.1))
    assert one.outgoing == two.outgoing
    assert one.manifest == two.manifest


def test_different_seed_gives_different_fleet() -> None:
    one = generate(spec(seed=1, dup_rate=0.1, malformed_rate=0.1))
    two = generate(spec(seed=2, dup_rate=0.1, malformed_rate=0.1))
    assert [m.payload for m in one.outgoing] != [m.payload for m in two.outgoing]
    assert one.manifest != two.manifest


def test_default_start_time_keeps_every_reading_in_the_past() -> None:
    before = time.time_ns()
    fleet = generate(FleetSpec(devices=3, messages=300, seed=1))
    assert fleet.spec.start_time_ns is not None
    assert fleet.spec.start_time_ns % 1_000_000_000 == 0
    assert max(r.time_ns for r in fleet.manifest.readings) < before
    # The resolved spec reproduces the fleet exactly.
    assert generate(fleet.spec).outgoing == fleet.outgoing


def test_resolved_start_time_formula() -> None:
    now = START_NS + 123_456_789
    resolved = FleetSpec(devices=4, messages=10, seed=1, interval_ms=500).resolved(now_ns=now)
    # ceil(10/4) = 3 seqs at most, plus 10 spare intervals of 0.5 s, rounded down to the second.
    assert resolved.start_time_ns == (now - 13 * 500 * MS) // 10**9 * 10**9


@pytest.mark.parametrize(
    "bad",
    [
        {"devices": 0},
        {"messages": -1},
        {"dup_rate": 1.5},
        {"malformed_rate": -0.1},
        {"dup_rate": 0.6, "malformed_rate": 0.6},
        {"interval_ms": 0},
    ],
)
def test_spec_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        spec(**bad)


def test_id_pattern_must_give_distinct_topic_safe_names() -> None:
    with pytest.raises(ValueError, match="topic level"):
        generate(spec(id_pattern="site/{n}"))
    with pytest.raises(ValueError, match="same name"):
        generate(spec(id_pattern="dev"))


# -- the stream's shape ---------------------------------------------------------------------------


def test_counts_by_kind_match_rates(mixed_fleet: Any) -> None:
    kinds = Counter(m.kind.split(":")[0] for m in mixed_fleet.outgoing)
    assert len(mixed_fleet.outgoing) == 5000
    assert kinds["malformed"] == 2500
    assert abs(kinds["duplicate"] - 500) <= 5  # a few may be owed at the very end
    summary = mixed_fleet.manifest.summary()
    assert summary.total == 5000
    assert (summary.valid, summary.duplicates) == (kinds["valid"], kinds["duplicate"])
    assert set(summary.malformed) == set(MALFORMED_REASONS)
    assert summary.malformed["oversized"] <= 2500 // 200
    common = [n for reason, n in summary.malformed.items() if reason != "oversized"]
    assert max(common) - min(common) <= 1  # dealt evenly


def test_rates_are_exact_for_small_fleets() -> None:
    fleet = generate(spec(devices=5, messages=1000, dup_rate=0.05, malformed_rate=0.02))
    summary = fleet.manifest.summary()
    assert sum(summary.malformed.values()) == 20
    assert summary.duplicates == 50
    assert "oversized" not in summary.malformed


def test_devices_take_turns() -> None:
    fleet = generate(spec(devices=7, messages=100))
    per_device = Counter(m.device for m in fleet.outgoing)
    assert len(per_device) == 7
    assert max(per_device.values()) - min(per_device.values()) <= 1
    # Within every round of 7, each device speaks once.
    for start in range(0, 98, 7):
        assert len({m.device for m in fleet.outgoing[start : start + 7]}) == 7


def test_valid_messages_match_manifest(mixed_fleet: Any) -> None:
    valid = [m for m in mixed_fleet.outgoing if m.kind == "valid"]
    readings = mixed_fleet.manifest.readings
    assert len(valid) == len(readings)
    encodings: Counter[object] = Counter()
    for message, reading in zip(valid, readings, strict=True):
        body = orjson.loads(message.payload)
        assert_well_formed(body, message.topic)
        assert reading.device == message.device
        assert (reading.id, reading.seq) == (body["id"], body["seq"])
        assert reading.time_ns == ts_to_ns(body["ts"]) == START_NS + body["seq"] * 1000 * MS
        metrics = body["metrics"]
        assert reading.fields == {k: v if isinstance(v, bool) else float(v) for k, v in metrics.items()}
        assert all(type(v) in (float, bool) for v in reading.fields.values())
        assert reading.tags == body["tags"] == {"site": f"site-{int(reading.device[-5:]) % 10}"}
        assert set(reading.fields) == {"temperature", "humidity", "battery", "relay"}
        encodings[type(body["ts"]).__name__] += 1
        encodings["device_id" in body] += 1
    assert encodings["int"] > encodings["str"] > 0  # mostly epoch ms, some RFC 3339
    assert encodings[True] > 0 and encodings[False] > 0


def test_ids_unique_and_times_distinct_per_device(mixed_fleet: Any) -> None:
    first_seen: dict[tuple[str, str], bytes] = {}
    for message in mixed_fleet.outgoing:
        if message.kind not in ("duplicate", "malformed:malformed_json"):
            body = json.loads(message.payload)
            key = (message.device, body["id"])
            assert key not in first_seen, "only duplicates may repeat an id"
            first_seen[key] = message.payload
    times: dict[str, set[int]] = defaultdict(set)
    for reading in mixed_fleet.manifest.readings:
        assert reading.time_ns not in times[reading.device]
        times[reading.device].add(reading.time_ns)


def test_seq_counts_up_from_one_per_device() -> None:
    fleet = generate(spec(devices=3, messages=300, malformed_rate=0.2))
    seqs: dict[str, list[int]] = defaultdict(list)
    for message in fleet.outgoing:
        payload = message.payload
        if message.kind == "malformed:malformed_json":
            continue
        seqs[message.device].append(json.loads(payload)["seq"])
    for device_seqs in seqs.values():
        assert device_seqs == sorted(device_seqs)
        assert device_seqs[0] == 1


def test_duplicates_are_exact_copies_of_earlier_valid_messages_of_the_device(mixed_fleet: Any) -> None:
    earlier_valid: dict[str, set[bytes]] = defaultdict(set)
    resends: Counter[bytes] = Counter()
    for message in mixed_fleet.outgoing:
        if message.kind == "valid":
            earlier_valid[message.device].add(message.payload)
        elif message.kind == "duplicate":
            assert message.payload in earlier_valid[message.device]
            resends[message.payload] += 1
    valid = [m for m in mixed_fleet.outgoing if m.kind == "valid"]
    assert [resends[m.payload] for m in valid] == [r.duplicates for r in mixed_fleet.manifest.readings]


# -- malformed messages are malformed in exactly the stated way -----------------------------------


def _malformed(fleet: Any, reason: str) -> list[Outgoing]:
    found = [m for m in fleet.outgoing if m.kind == f"malformed:{reason}"]
    assert found, f"no {reason} messages generated"
    return found


def test_malformed_json_does_not_parse(mixed_fleet: Any) -> None:
    for message in _malformed(mixed_fleet, "malformed_json"):
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(message.payload)
        with pytest.raises(json.JSONDecodeError):
            json.loads(message.payload)


def test_non_finite_has_one_nan_or_infinite_metric(mixed_fleet: Any) -> None:
    literals: Counter[bool] = Counter()
    for message in _malformed(mixed_fleet, "non_finite"):
        with pytest.raises(orjson.JSONDecodeError):  # strict parsers refuse it outright
            orjson.loads(message.payload)
        body = json.loads(message.payload)  # the stdlib accepts NaN/Infinity/1e999
        bad = [k for k, v in body["metrics"].items() if isinstance(v, float) and not math.isfinite(v)]
        assert len(bad) == 1
        literals["1e999" in message.payload.decode()] += 1
        body["metrics"][bad[0]] = 1.0
        assert_well_formed(body, message.topic)
    assert literals[True] and literals[False]  # both NaN/Infinity literals and overflowing numbers


def test_empty_metrics(mixed_fleet: Any) -> None:
    for message in _malformed(mixed_fleet, "empty_metrics"):
        body = orjson.loads(message.payload)
        assert body["metrics"] == {}
        assert_well_formed({**body, "metrics": {"x": 1}}, message.topic)


def test_wrong_type_has_one_object_or_list_metric(mixed_fleet: Any) -> None:
    shapes: Counter[str] = Counter()
    for message in _malformed(mixed_fleet, "wrong_type"):
        body = orjson.loads(message.payload)
        bad = [k for k, v in body["metrics"].items() if isinstance(v, dict | list)]
        assert len(bad) == 1
        shapes[type(body["metrics"][bad[0]]).__name__] += 1
        body["metrics"][bad[0]] = 1.0
        assert_well_formed(body, message.topic)
    assert shapes["dict"] and shapes["list"]


def test_device_mismatch_names_another_device(mixed_fleet: Any) -> None:
    for message in _malformed(mixed_fleet, "device_mismatch"):
        body = orjson.loads(message.payload)
        assert body["device_id"] != message.device
        assert_well_formed({**body, "device_id": message.device}, message.topic)


def test_oversized_is_over_the_limit_and_otherwise_valid(mixed_fleet: Any) -> None:
    oversized = _malformed(mixed_fleet, "oversized")
    assert len(oversized) == 2500 // 200
    for message in oversized:
        assert len(message.payload) > MAX_PAYLOAD_BYTES
        assert_well_formed(orjson.loads(message.payload), message.topic)
    assert all(len(m.payload) < 1024 for m in mixed_fleet.outgoing if m not in oversized)


def test_future_ts_is_a_day_ahead(mixed_fleet: Any) -> None:
    for message in _malformed(mixed_fleet, "future_ts"):
        body = orjson.loads(message.payload)
        assert ts_to_ns(body["ts"]) == START_NS + body["seq"] * 1000 * MS + FUTURE_SHIFT_NS
        assert_well_formed(body, message.topic)


def test_default_start_future_ts_is_really_in_the_future() -> None:
    fleet = generate(FleetSpec(devices=2, messages=200, seed=3, malformed_rate=0.2))
    now = time.time_ns()
    for message in _malformed(fleet, "future_ts"):
        assert ts_to_ns(orjson.loads(message.payload)["ts"]) > now + 23 * 3600 * 10**9


def test_rejections_aggregate_by_topic_and_reason(mixed_fleet: Any) -> None:
    counted = Counter(
        (m.topic, m.kind.removeprefix("malformed:")) for m in mixed_fleet.outgoing if m.kind.startswith("mal")
    )
    assert {(r.topic, r.reason): r.count for r in mixed_fleet.manifest.rejections} == counted


# -- manifest files -------------------------------------------------------------------------------


def test_manifest_round_trips_through_jsonl(mixed_fleet: Any, tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    mixed_fleet.manifest.write_jsonl(path)
    assert Manifest.read_jsonl(path) == mixed_fleet.manifest
    types = Counter(orjson.loads(line)["type"] for line in path.read_bytes().splitlines())
    manifest = mixed_fleet.manifest
    assert types == {"reading": len(manifest.readings), "rejection": len(manifest.rejections)}


_names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
_field_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.text(st.characters(codec="utf-8"))
)
_readings = st.builds(
    ExpectedReading,
    device=_names,
    time_ns=st.integers(min_value=-(2**62), max_value=2**62),
    fields=st.dictionaries(_names, _field_values, min_size=1, max_size=4),
    tags=st.dictionaries(_names, st.text(max_size=5), max_size=3),
    id=_names,
    seq=st.integers(min_value=0, max_value=2**40),
    duplicates=st.integers(min_value=0, max_value=5),
)
_rejections = st.builds(
    ExpectedRejection, topic=_names, reason=st.sampled_from(MALFORMED_REASONS), count=st.integers(1, 10**6)
)


@settings(max_examples=40, deadline=None)
@given(readings=st.lists(_readings, max_size=5), rejections=st.lists(_rejections, max_size=3))
def test_manifest_round_trip_property(
    readings: list[ExpectedReading], rejections: list[ExpectedRejection], tmp_path_factory: Any
) -> None:
    manifest = Manifest(readings=readings, rejections=rejections)
    path = tmp_path_factory.mktemp("m") / "m.jsonl"
    manifest.write_jsonl(path)
    assert Manifest.read_jsonl(path) == manifest


@pytest.mark.parametrize(
    "line",
    [
        b'{"type": "reading"}',
        b'{"type": "nonsense"}',
        b'{"type": "rejection", "topic": "t", "reason": "r", "count": "3"}',
        b'{"type": "rejection", "topic": "t", "reason": "r", "count": true}',
        b'{"type":"reading","device":"d","time_ns":1,"fields":{"x":null},"tags":{},"id":"i","seq":1}',
        b"[1, 2]",
    ],
)
def test_manifest_reader_refuses_broken_records(line: bytes, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(line + b"\n")
    with pytest.raises(ValueError, match="record 1"):
        Manifest.read_jsonl(path)


def test_manifest_reader_turns_integers_into_floats(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"type":"reading","device":"d","time_ns":1,"fields":{"x":3},"id":"i","seq":1}\n\n')
    (reading,) = Manifest.read_jsonl(path).readings
    assert reading.fields == {"x": 3.0} and isinstance(reading.fields["x"], float)
    assert (reading.tags, reading.duplicates) == ({}, 0)


# -- small parts ----------------------------------------------------------------------------------


def test_rfc3339_ms() -> None:
    assert rfc3339_ms(START_NS + 250 * MS + 999) == "2026-11-27T10:15:00.250Z"
    assert ts_to_ns(rfc3339_ms(START_NS + 7 * MS)) == START_NS + 7 * MS


def test_parse_broker_url() -> None:
    assert parse_broker_url("mqtt://127.0.0.1:1884") == BrokerAddress("127.0.0.1", 1884)
    assert parse_broker_url("mqtts://u%40x:p%3A@broker") == BrokerAddress("broker", 8883, True, "u@x", "p:")
    for bad in ("http://h", "mqtt://", "mqtt://h/path", "mqtt://h:99999"):
        with pytest.raises(ValueError):
            parse_broker_url(bad)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_pacer_is_exact_over_time_and_sleeps_in_small_steps() -> None:
    clock = FakeClock()
    pacer = Pacer(5000, granularity_s=0.002, clock=clock, sleep=clock.sleep)
    for _ in range(5000):
        pacer.wait()
    assert clock.now - 100.0 == pytest.approx(1.0, abs=0.003)
    # It sleeps every ~10 messages (2 ms at 5000/s), never once per message, never in long gaps.
    assert 450 <= len(clock.sleeps) <= 510
    assert max(clock.sleeps) < 0.0025


def test_pacer_does_not_burst_to_catch_up_after_a_stall() -> None:
    clock = FakeClock()
    pacer = Pacer(1000, clock=clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += 5.0  # the sender was stuck for 5 s
    for _ in range(1000):
        pacer.wait()
    assert clock.now - 105.0 == pytest.approx(1.0, abs=0.005)


def test_pacer_rate_zero_never_sleeps() -> None:
    clock = FakeClock()
    pacer = Pacer(0, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        pacer.wait()
    assert clock.sleeps == []


def test_routing_keeps_each_device_on_one_connection() -> None:
    fleet = generate(spec(devices=10, messages=200))
    route = _route_by_topic(fleet.outgoing, 3)
    by_topic: dict[str, set[int]] = defaultdict(set)
    for message, n in zip(fleet.outgoing, route, strict=True):
        by_topic[message.topic].add(n)
    assert all(len(ns) == 1 for ns in by_topic.values())
    assert Counter(next(iter(ns)) for ns in by_topic.values()) == {0: 4, 1: 3, 2: 3}
