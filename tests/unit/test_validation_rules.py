"""Validation rules from the config: per-metric rules, per-mapping limits, clock-skew bounds, the device id taken
from the payload, and sequence tracking — all through the Ingestor, as the pipeline calls it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.config.schema import GatewayConfig
from gateway.ingest.ingestor import Ingestor
from gateway.ingest.sequence import SequenceTracker
from gateway.model import Reading
from tests.unit.test_validate import MakeIngestor, accepted, raw, rejected

NS = 1_000_000_000


def native(metrics: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"metrics": metrics, **extra}


# --- per-metric rules -------------------------------------------------------------------------------------

RULES = [
    {"name": "temperature", "type": "number", "min": -40, "max": 85},
    {"name": "battery*", "min": 0, "max": 100},
    {"name": "state", "type": "boolean"},
    {"name": "*", "type": "number"},  # everything else: numbers only
]


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        pytest.param({"temperature": 21.5, "battery": 80, "state": True, "x": 1}, None, id="all-within"),
        pytest.param({"temperature": 85.0}, None, id="max-is-inclusive"),
        pytest.param({"temperature": 85.01}, "out_of_range", id="above-max"),
        pytest.param({"temperature": -41}, "out_of_range", id="below-min"),
        pytest.param({"battery_pct": 101}, "out_of_range", id="glob-matches"),
        pytest.param({"temperature": "hot"}, "invalid_type", id="string-for-number"),
        pytest.param({"state": 1}, "invalid_type", id="number-for-boolean"),
        pytest.param({"label": "abc"}, "invalid_type", id="catch-all-glob"),
        pytest.param({"temperature": True}, "invalid_type", id="boolean-is-not-a-number"),
    ],
)
def test_metric_rules(make_ingestor: MakeIngestor, metrics: dict[str, Any], reason: str | None) -> None:
    ingestor = make_ingestor(validation={"metrics": RULES})
    outcome = ingestor.process(raw(native(metrics)))
    if reason is None:
        (reading,) = accepted(outcome)
        assert reading.fields == {k: float(v) if type(v) is int else v for k, v in metrics.items()}
    else:
        assert rejected(outcome) == reason
        assert outcome.rejection is not None
        assert next(iter(metrics)) in outcome.rejection.detail  # the message names the metric


def test_first_matching_rule_wins_and_mapping_rules_come_first(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(
        validation={"metrics": [{"name": "t*", "max": 10}]},
        mappings=[
            {"topic": "hot/{device}", "validation": {"metrics": [{"name": "temp", "max": 1000}]}},
            {"topic": "devices/{device}/telemetry"},
        ],
    )
    assert accepted(ingestor.process(raw(native({"temp": 500}), topic="hot/oven-1")))
    assert rejected(ingestor.process(raw(native({"temp": 500})))) == "out_of_range"
    # The mapping's rules extend the global ones: other t* metrics still meet the global rule there.
    assert rejected(ingestor.process(raw(native({"tx": 11}), topic="hot/oven-1"))) == "out_of_range"


def test_senml_unit_must_match_the_rule(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(
        validation={"metrics": [{"name": "temp", "unit": "Cel"}]},
        mappings=[{"topic": "senml/{device}", "format": "senml"}],
    )
    ok = [{"bn": "urn:dev:x:", "n": "temp", "u": "Cel", "v": 21.0}]
    (reading,) = accepted(ingestor.process(raw(ok, topic="senml/x")))
    assert reading.fields == {"temp": 21.0}
    wrong = [{"bn": "urn:dev:x:", "bu": "degF", "n": "temp", "v": 70.0}]
    outcome = ingestor.process(raw(wrong, topic="senml/x"))
    assert rejected(outcome) == "unit_mismatch"
    assert outcome.rejection is not None
    assert "degF" in outcome.rejection.detail
    # No unit given: nothing to contradict the rule.
    assert accepted(ingestor.process(raw([{"n": "temp", "v": 20.5}], topic="senml/x")))


# --- per-mapping limits -----------------------------------------------------------------------------------


def test_mapping_overrides_payload_size_depth_and_field_count(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(
        mappings=[
            {
                "topic": "small/{device}",
                "format": "json",
                "validation": {"max_payload_bytes": 100, "max_depth": 2, "max_fields": 3},
            },
            {"topic": "big/{device}", "format": "json"},
        ]
    )
    long_payload = {"a": 1, "pad": "x" * 200}
    assert rejected(ingestor.process(raw(long_payload, topic="small/d1"))) == "payload_too_large"
    assert accepted(ingestor.process(raw(long_payload, topic="big/d1")))

    three_deep = {"a": {"b": {"c": 1}}}
    assert rejected(ingestor.process(raw(three_deep, topic="small/d1"))) == "too_deep"
    assert accepted(ingestor.process(raw(three_deep, topic="big/d1")))[0].fields == {"a_b_c": 1.0}

    four_fields = {"a": 1, "b": 2, "c": 3, "d": 4}
    assert rejected(ingestor.process(raw(four_fields, topic="small/d1"))) == "too_many_fields"
    assert accepted(ingestor.process(raw(four_fields, topic="big/d1")))


def test_field_count_covers_all_readings_of_a_message(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(validation={"max_fields": 4})
    assert accepted(ingestor.process(raw([native({"a": 1, "b": 2}), native({"a": 3, "b": 4})])))
    outcome = ingestor.process(raw([native({"a": 1, "b": 2}), native({"a": 3, "b": 4, "c": 5})]))
    assert rejected(outcome) == "too_many_fields"


def test_device_id_length_and_pattern_per_mapping(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(
        validation={"device_id_max_length": 10},
        mappings=[
            {"topic": "strict/{device}", "validation": {"device_id_pattern": r"boiler-\d+"}},
            {"topic": "devices/{device}/telemetry"},
        ],
    )
    assert accepted(ingestor.process(raw(native({"t": 1}), topic="strict/boiler-7")))
    assert rejected(ingestor.process(raw(native({"t": 1}), topic="strict/pump-7"))) == "invalid_device_id"
    assert accepted(ingestor.process(raw(native({"t": 1}), topic="devices/pump-7/telemetry")))
    outcome = ingestor.process(raw(native({"t": 1}), topic="devices/pump-7777777/telemetry"))
    assert rejected(outcome) == "invalid_device_id"
    assert outcome.rejection is not None
    assert "device_id_max_length=10" in outcome.rejection.detail


# --- clock skew -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("late", "age_s", "expect"),
    [
        pytest.param("reject", 7200, "timestamp_too_old", id="old-rejected"),
        pytest.param("accept", 7200, "late", id="old-accepted-and-counted"),
        pytest.param("reject", 600, "on-time", id="within-the-bound"),
    ],
)
def test_late_readings(make_ingestor: MakeIngestor, late: str, age_s: int, expect: str) -> None:
    ingestor = make_ingestor(validation={"max_late_s": 3600, "late": late})
    outcome = ingestor.process(raw(native({"t": 1}, ts=time.time() - age_s)))
    if expect == "timestamp_too_old":
        assert rejected(outcome) == expect
        return
    assert accepted(outcome)
    assert outcome.late == (1 if expect == "late" else 0)


def test_receive_timestamped_readings_are_never_late(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(validation={"max_late_s": 1, "late": "reject"})
    outcome = ingestor.process(raw(native({"t": 1}), received_at_ns=time.time_ns() - 10 * NS))
    assert accepted(outcome)
    assert outcome.late == 0


def test_future_bound_per_mapping(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(
        mappings=[
            {"topic": "tight/{device}", "validation": {"max_future_s": 5}},
            {"topic": "devices/{device}/telemetry"},
        ]
    )
    soon = native({"t": 1}, ts=time.time() + 60)
    assert rejected(ingestor.process(raw(soon, topic="tight/d1"))) == "timestamp_in_future"
    assert accepted(ingestor.process(raw(soon)))


# --- device id from the payload, fields from a root -------------------------------------------------------

SHELLY = {
    "src": "shellyplus1pm-a8032ab12345",
    "dst": "shellyplus1pm-a8032ab12345/events",
    "method": "NotifyStatus",
    "params": {
        "ts": 1764238500.25,
        "switch:0": {"id": 0, "apower": 12.5, "voltage": 230.1, "aenergy": {"total": 1234.5, "by_minute": [1, 2]}},
    },
}


def test_shelly_gen2_notify_status_with_root_and_device_field(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(
        mappings=[
            {
                "topic": "{device}/events/rpc",
                "format": "json",
                "root": "params",
                "timestamp_field": "params.ts",
                "device_field": "src",
            }
        ]
    )
    (reading,) = accepted(ingestor.process(raw(SHELLY, topic="shellyplus1pm-a8032ab12345/events/rpc")))
    assert reading.device == "shellyplus1pm-a8032ab12345"
    assert reading.time_ns == 1764238500_250000000
    assert reading.time_from_device
    assert reading.fields == {
        "switch:0_id": 0.0,
        "switch:0_apower": 12.5,
        "switch:0_voltage": 230.1,
        "switch:0_aenergy_total": 1234.5,
    }
    # The payload cannot speak for another device than the topic's.
    spoofed = {**SHELLY, "src": "shellyplus1pm-other"}
    outcome = ingestor.process(raw(spoofed, topic="shellyplus1pm-a8032ab12345/events/rpc"))
    assert rejected(outcome) == "device_mismatch"


@pytest.mark.parametrize(
    ("payload", "expect"),
    [
        pytest.param({"id": "sensor-9", "t": 20.5}, "sensor-9", id="device-from-payload"),
        pytest.param({"t": 20.5}, "missing_device", id="no-device-field"),
        pytest.param({"id": 42, "t": 20.5}, "invalid_device_id", id="not-a-string"),
        pytest.param({"id": "bad id, x=1", "t": 20.5}, "invalid_device_id", id="fails-the-pattern"),
        pytest.param([{"id": "s-1", "t": 1}, {"id": "s-2", "t": 2}], "s-1,s-2", id="one-device-a-reading"),
    ],
)
def test_device_id_from_a_shared_topic(make_ingestor: MakeIngestor, payload: Any, expect: str) -> None:
    ingestor = make_ingestor(mappings=[{"topic": "plant/shared", "format": "json", "device_field": "id"}])
    outcome = ingestor.process(raw(payload, topic="plant/shared"))
    if "_" in expect:
        assert rejected(outcome) == expect
        return
    readings = accepted(outcome)
    assert [r.device for r in readings] == expect.split(",")
    assert all("id" not in r.fields for r in readings)


def test_a_topic_without_device_needs_device_field() -> None:
    with pytest.raises(ValueError, match="device_field"):
        GatewayConfig(sqlite={"path": "x.db"}, mappings=[{"topic": "plant/shared", "format": "json"}])


# --- sequence tracking ------------------------------------------------------------------------------------


def _reading(seq: int, time_s: float, device: str = "d1", from_device: bool = True) -> Reading:
    return Reading(device, "m", int(time_s * NS), {"t": 1.0}, {}, f"{device}#{seq}", seq, from_device)


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        pytest.param([(1, 1), (2, 2), (3, 3)], [], id="in-order"),
        pytest.param([(1, 1), (2, 2), (5, 5)], [("gap", 2)], id="gap-of-two"),
        pytest.param([(1, 1), (3, 3), (2, 2)], [("gap", 1), ("out_of_order", 1)], id="late-arrival"),
        pytest.param([(100, 1), (101, 2), (1, 3), (2, 4)], [("reset", 1)], id="reboot-newer-time"),
        pytest.param([(100, 10), (5, 3)], [("out_of_order", 1)], id="older-time-is-out-of-order"),
    ],
)
def test_sequence_events(sequence: list[tuple[int, float]], expected: list[tuple[str, int]]) -> None:
    tracker = SequenceTracker()
    events = [tracker.observe(_reading(seq, t)) for seq, t in sequence]
    assert [(e.kind, e.n) for e in events if e is not None] == expected
    for kind, n in expected:
        assert tracker.counts[kind]["d1"] >= n  # type: ignore[index]


def test_sequence_reset_without_device_time_uses_the_reorder_window() -> None:
    tracker = SequenceTracker(reorder_window=100)
    assert tracker.observe(_reading(5000, 1, from_device=False)) is None
    late = tracker.observe(_reading(4950, 2, from_device=False))
    reboot = tracker.observe(_reading(0, 3, from_device=False))
    assert late is not None and late.kind == "out_of_order"
    assert reboot is not None and reboot.kind == "reset"


def test_sequence_counts_per_device_are_bounded() -> None:
    tracker = SequenceTracker(max_devices=2)
    for device in ("a", "b", "c", "d"):
        tracker.observe(_reading(1, 1, device))
        tracker.observe(_reading(3, 2, device))
    assert dict(tracker.counts["gap"]) == {"a": 1, "b": 1, "_other": 2}


def test_ingestor_reports_sequence_events_of_new_readings_only(ingestor: Ingestor) -> None:
    first = ingestor.process(raw(native({"t": 1}, seq=1, ts=1_764_000_000)))
    gap = ingestor.process(raw(native({"t": 1}, seq=4, ts=1_764_000_003)))
    duplicate = ingestor.process(raw(native({"t": 1}, seq=4, ts=1_764_000_003)))
    assert first.sequence_events == ()
    assert [(e.kind, e.n, e.reading_id) for e in gap.sequence_events] == [("gap", 2, "boiler-17#4@1764000003000000000")]
    assert duplicate.duplicates == 1
    assert duplicate.sequence_events == ()
    assert ingestor.sequences.counts["gap"] == {"boiler-17": 2}
