"""The native payload format and device timestamps: bytes -> readings, or a rejection with a stable reason."""

from __future__ import annotations

import calendar
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import PayloadRejected
from gateway.ingest.formats.native import decode
from gateway.ingest.formats.timestamps import epoch_to_ns, parse_rfc3339, to_ns
from gateway.model import Reading
from tests.support import DATA

SAMPLES = DATA / "devices.jsonl"
DEVICE = "boiler-17"
MEASUREMENT = "telemetry"
RECEIVED = 1_700_000_000_123_456_789  # an arbitrary receive time, distinct from every device time below
NS = 1_000_000_000

# 2026-11-27T10:15:00Z; the sample file pairs it with 1795774500 ("ts": 1795774500.25 is 10:15:00.250Z).
BASE_S = calendar.timegm((2026, 11, 27, 10, 15, 0))
BASE_NS = BASE_S * NS


def test_base_instant_agrees_with_the_sample_file() -> None:
    assert BASE_S == 1_795_774_500


def _decode(payload: bytes | dict[str, Any] | list[Any], device: str = DEVICE) -> list[Reading]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode(raw, device, MEASUREMENT, RECEIVED)


def _reason(payload: bytes | dict[str, Any] | list[Any], device: str = DEVICE) -> str:
    with pytest.raises(PayloadRejected) as info:
        _decode(payload, device)
    assert info.value.detail  # a human explanation always comes with the code
    return info.value.reason


# --- the shared samples -----------------------------------------------------------------------------------


def _native_samples() -> list[Any]:
    if not SAMPLES.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{SAMPLES} not present"), id="no-samples")]
    params = []
    for number, line in enumerate(SAMPLES.read_text(encoding="utf-8").splitlines(), start=1):
        sample = json.loads(line)
        if sample["topic"].startswith("devices/"):
            params.append(pytest.param(sample, id=f"line{number}"))
    return params


def _expected_ns(text: str) -> int:
    """The sample's expected time, through Python's own ISO parser (independent of the code under test)."""
    instant = datetime.fromisoformat(text)
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def _payload_bytes(sample: dict[str, Any]) -> bytes:
    if "payload_text" in sample:
        return str(sample["payload_text"]).encode()
    return json.dumps(sample["payload"]).encode()


@pytest.mark.parametrize("sample", _native_samples())
def test_sample_decodes_to_its_expectation(sample: dict[str, Any]) -> None:
    device = sample["topic"].split("/")[1]
    payload = _payload_bytes(sample)
    expect = sample["expect"]
    if isinstance(expect, str):  # "rejected: ..."
        assert expect.startswith("rejected")
        with pytest.raises(PayloadRejected):
            decode(payload, device, MEASUREMENT, RECEIVED)
        return
    readings = decode(payload, device, MEASUREMENT, RECEIVED)
    assert len(readings) == len(expect)
    for reading, want in zip(readings, expect, strict=True):
        assert reading.device == want["device"]
        assert reading.measurement == MEASUREMENT
        assert reading.time_ns == _expected_ns(want["time"])
        assert reading.time_from_device
        assert reading.tags == want.get("tags", {})
        assert reading.fields == want["fields"]
        for name, value in want["fields"].items():
            # JSON numbers become floats (InfluxDB would reject a field switching between int and float).
            assert type(reading.fields[name]) is (bool if isinstance(value, bool) else float)


@pytest.mark.parametrize(
    ("sample_source", "reason"),
    [
        pytest.param("bad input: device id in the payload", "device_mismatch", id="spoofed-device"),
        pytest.param("bad input: NaN", "non_finite_value", id="nan"),
    ],
)
def test_bad_samples_have_their_reason(sample_source: str, reason: str) -> None:
    if not SAMPLES.exists():
        pytest.skip(f"{SAMPLES} not present")
    samples = [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines()]
    (sample,) = [s for s in samples if s["source"].startswith(sample_source)]
    with pytest.raises(PayloadRejected) as info:
        decode(_payload_bytes(sample), sample["topic"].split("/")[1], MEASUREMENT, RECEIVED)
    assert info.value.reason == reason


def test_first_sample_in_detail() -> None:
    payload = {
        "id": "boiler-17-000042",
        "seq": 42,
        "ts": "2026-11-27T10:15:00.250Z",
        "metrics": {"temperature": 71.5, "pressure": 1.82, "pump_on": True, "mode": "eco"},
        "tags": {"site": "plant-a"},
    }
    (reading,) = _decode(payload)
    assert reading == Reading(
        device=DEVICE,
        measurement=MEASUREMENT,
        time_ns=BASE_NS + 250_000_000,
        fields={"temperature": 71.5, "pressure": 1.82, "pump_on": True, "mode": "eco"},
        tags={"site": "plant-a"},
        reading_id="boiler-17-000042",
        seq=42,
        time_from_device=True,
    )


# --- timestamps -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected_ns"),
    [
        pytest.param("2026-11-27T10:15:00Z", BASE_NS, id="whole-seconds"),
        pytest.param("2026-11-27T10:15:00.250Z", BASE_NS + 250_000_000, id="millis"),
        pytest.param("2026-11-27T10:15:00.2Z", BASE_NS + 200_000_000, id="one-digit"),
        pytest.param("2026-11-27T10:15:00.123456Z", BASE_NS + 123_456_000, id="micros"),
        pytest.param("2026-11-27T10:15:00.123456789Z", BASE_NS + 123_456_789, id="nine-digits-exact"),
        pytest.param("2026-11-27T10:15:00.000000001Z", BASE_NS + 1, id="one-nanosecond"),
        pytest.param("2026-11-27T10:15:00.999999999Z", BASE_NS + 999_999_999, id="last-nanosecond"),
        pytest.param("2026-11-27T11:15:00.250+01:00", BASE_NS + 250_000_000, id="positive-offset"),
        pytest.param("2026-11-27T04:45:00.250-05:30", BASE_NS + 250_000_000, id="negative-half-hour-offset"),
        pytest.param("2026-11-27T10:15:00+00:00", BASE_NS, id="plus-zero-offset"),
        pytest.param("2026-11-27T10:15:00-00:00", BASE_NS, id="minus-zero-offset"),
        pytest.param("2026-11-28T00:15:00+14:00", BASE_NS, id="offset-crosses-the-date"),
        pytest.param("2026-11-27T23:30:00-01:00", BASE_NS + (14 * 3600 + 15 * 60) * NS, id="next-day-utc"),
        pytest.param("2026-11-27t10:15:00z", BASE_NS, id="lowercase-t-and-z"),
        pytest.param("2026-11-27 10:15:00Z", BASE_NS, id="space-separator"),
        pytest.param("1970-01-01T00:00:00Z", 0, id="epoch"),
        pytest.param("1969-12-31T23:59:59.5Z", -500_000_000, id="before-epoch"),
        pytest.param("2016-12-31T23:59:60Z", 1_483_228_800 * NS, id="leap-second"),
    ],
)
def test_rfc3339(text: str, expected_ns: int) -> None:
    assert parse_rfc3339(text) == expected_ns
    (reading,) = _decode({"ts": text, "metrics": {"t": 1}})
    assert reading.time_ns == expected_ns
    assert reading.time_from_device


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2026-11-27T10:15:00", id="no-zone"),
        pytest.param("2026-11-27T10:15:00.250", id="no-zone-fraction"),
        pytest.param("2026-11-27", id="date-only"),
        pytest.param("10:15:00Z", id="time-only"),
        pytest.param("2026-11-27T10:15:00.1234567891Z", id="ten-fraction-digits"),
        pytest.param("2026-11-27T10:15:00.Z", id="empty-fraction"),
        pytest.param("2026-02-30T00:00:00Z", id="no-such-day"),
        pytest.param("2026-11-27T24:00:00Z", id="hour-24"),
        pytest.param("2026-11-27T10:60:00Z", id="minute-60"),
        pytest.param("2026-11-27T10:15:00+24:00", id="offset-24h"),
        pytest.param("2026-11-27T10:15:00+05:99", id="offset-minutes-99"),
        pytest.param("2026-11-27T10:15:00+0100", id="offset-without-colon"),
        pytest.param("2026-11-27T10:15:00Zjunk", id="trailing-garbage"),
        pytest.param("1795774500", id="number-in-a-string"),
        pytest.param("", id="empty"),
        pytest.param("tomorrow", id="words"),
    ],
)
def test_bad_rfc3339_is_rejected(text: str) -> None:
    with pytest.raises(PayloadRejected) as info:
        parse_rfc3339(text)
    assert info.value.reason == "invalid_timestamp"
    assert _reason({"ts": text, "metrics": {"t": 1}}) == "invalid_timestamp"


@pytest.mark.parametrize(
    ("literal", "expected_ns"),
    [
        pytest.param("1795774500", BASE_NS, id="seconds"),
        pytest.param("1795774500.25", BASE_NS + 250_000_000, id="float-seconds"),
        pytest.param("1795774500.123", BASE_NS + 123_000_000, id="float-seconds-micro-exact"),
        pytest.param("1795774500.000001", BASE_NS + 1_000, id="float-seconds-one-micro"),
        pytest.param("1795774500.999999", BASE_NS + 999_999_000, id="float-seconds-last-micro"),
        pytest.param("1795774500250", BASE_NS + 250_000_000, id="millis"),
        pytest.param("1795774500250.5", BASE_NS + 250_500_000, id="float-millis"),
        pytest.param("1795774500250000", BASE_NS + 250_000_000, id="micros"),
        pytest.param("1795774500250001", BASE_NS + 250_001_000, id="micros-odd"),
        pytest.param("1795774500250000123", BASE_NS + 250_000_123, id="nanos-exact"),
        pytest.param("0", 0, id="zero"),
        pytest.param("-1", -NS, id="negative-seconds"),
        pytest.param("99999999999", 99_999_999_999 * NS, id="largest-seconds"),
        pytest.param("100000000000", 100_000_000_000 * 1_000_000, id="smallest-millis"),
        pytest.param("99999999999999", 99_999_999_999_999 * 1_000_000, id="largest-millis"),
        pytest.param("100000000000000", 100_000_000_000_000 * 1_000, id="smallest-micros"),
        pytest.param("99999999999999999", 99_999_999_999_999_999 * 1_000, id="largest-micros"),
        pytest.param("100000000000000000", 100_000_000_000_000_000, id="smallest-nanos"),
    ],
)
def test_epoch_numbers_by_magnitude(literal: str, expected_ns: int) -> None:
    (reading,) = _decode(f'{{"ts": {literal}, "metrics": {{"t": 1}}}}'.encode())
    assert reading.time_ns == expected_ns
    assert type(reading.time_ns) is int
    assert reading.time_from_device


def test_to_ns_dispatches_on_type() -> None:
    assert to_ns("2026-11-27T10:15:00Z") == BASE_NS
    assert to_ns(BASE_S) == BASE_NS
    assert to_ns(BASE_S + 0.5) == BASE_NS + 500_000_000
    assert epoch_to_ns(BASE_S * 1000) == BASE_NS


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"metrics": {"t": 1}}, id="absent"),
        pytest.param({"metrics": {"t": 1}, "ts": None}, id="null"),
    ],
)
def test_missing_ts_means_receive_time(payload: dict[str, Any]) -> None:
    (reading,) = _decode(payload)
    assert reading.time_ns == RECEIVED
    assert reading.time_from_device is False


def test_array_mixes_device_and_receive_times() -> None:
    readings = _decode([{"metrics": {"t": 1}, "ts": BASE_S}, {"metrics": {"t": 2}}])
    assert [(r.time_ns, r.time_from_device) for r in readings] == [(BASE_NS, True), (RECEIVED, False)]


# --- rejections -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(b'{"metrics": {"t": 1}', "malformed_json", id="truncated"),
        pytest.param(b"not json", "malformed_json", id="not-json"),
        pytest.param(b"", "malformed_json", id="empty-payload"),
        pytest.param(b'{"metrics": {"t": 1}} trailing', "malformed_json", id="trailing-text"),
        pytest.param(b'{"metrics": {"t": "\xff\xfe"}}', "malformed_json", id="invalid-utf8-in-value"),
        pytest.param(b'{"metrics": {"t\xc3": 1}}', "malformed_json", id="invalid-utf8-in-key"),
        pytest.param(b'\xff{"metrics": {"t": 1}}', "malformed_json", id="invalid-utf8-leading"),
        pytest.param(b'{"metrics": {"t": NaN}}', "non_finite_value", id="nan"),
        pytest.param(b'{"metrics": {"t": Infinity}}', "non_finite_value", id="infinity"),
        pytest.param(b'{"metrics": {"t": -Infinity}}', "non_finite_value", id="minus-infinity"),
        pytest.param(b'{"metrics": {"t": 1e999}}', "non_finite_value", id="overflowing-1e999"),
        pytest.param(b'{"metrics": {"t": 1}, "ts": NaN}', "non_finite_value", id="nan-ts"),
        pytest.param(b'[{"metrics": {"a": 1}}, {"metrics": {"b": NaN}}]', "non_finite_value", id="nan-in-array"),
        pytest.param(b'{"metrics": {}}', "empty_metrics", id="empty-metrics"),
        pytest.param(b"[]", "empty_metrics", id="empty-array"),
        pytest.param(b"  [ ]  ", "empty_metrics", id="empty-array-whitespace"),
        pytest.param(b'[{"metrics": {"a": 1}}, {"metrics": {}}]', "empty_metrics", id="empty-metrics-in-array"),
        pytest.param(b'{"metrics": {"t": null}}', "invalid_schema", id="value-null"),
        pytest.param(b'{"metrics": {"t": [1, 2]}}', "invalid_schema", id="value-list"),
        pytest.param(b'{"metrics": {"t": {"x": 1}}}', "invalid_schema", id="value-object"),
        pytest.param(b'{"ts": 1795774500}', "invalid_schema", id="metrics-missing"),
        pytest.param(b'{"metrics": 5}', "invalid_schema", id="metrics-not-an-object"),
        pytest.param(b'{"metrics": [1]}', "invalid_schema", id="metrics-a-list"),
        pytest.param(b'{"metrics": {"t": 1}, "ts": true}', "invalid_schema", id="ts-true"),
        pytest.param(b'{"metrics": {"t": 1}, "ts": {}}', "invalid_schema", id="ts-object"),
        pytest.param(b'{"metrics": {"t": 1}, "ts": [1]}', "invalid_schema", id="ts-list"),
        pytest.param(b'{"metrics": {"t": 1}, "seq": "42"}', "invalid_schema", id="seq-string"),
        pytest.param(b'{"metrics": {"t": 1}, "seq": true}', "invalid_schema", id="seq-true"),
        pytest.param(b'{"metrics": {"t": 1}, "id": ""}', "invalid_schema", id="id-empty"),
        pytest.param(b'{"metrics": {"t": 1}, "id": 7}', "invalid_schema", id="id-number"),
        pytest.param(b'{"metrics": {"t": 1}, "tags": {"site": 1}}', "invalid_schema", id="tag-value-number"),
        pytest.param(b'{"metrics": {"t": 1}, "tags": ["a"]}', "invalid_schema", id="tags-a-list"),
        pytest.param(b"42", "invalid_schema", id="bare-number"),
        pytest.param(b'"text"', "invalid_schema", id="bare-string"),
        pytest.param(b"[1, 2]", "invalid_schema", id="array-of-numbers"),
        pytest.param(b'{"metrics": {"t": 1}, "ts": "2026-11-27T10:15:00"}', "invalid_timestamp", id="zoneless-ts"),
        pytest.param(b'{"metrics": {"t": 1}, "device_id": "boiler-99"}', "device_mismatch", id="device-id-mismatch"),
        pytest.param(
            b'[{"metrics": {"t": 1}}, {"metrics": {"t": 1}, "device_id": "x"}]',
            "device_mismatch",
            id="device-id-mismatch-in-array",
        ),
    ],
)
def test_rejection_reason(payload: bytes, reason: str) -> None:
    assert _reason(payload) == reason


def test_too_many_readings_in_one_payload() -> None:
    one = b'{"metrics":{"t":1}}'
    assert len(_decode(b"[" + b",".join([one] * 10_000) + b"]")) == 10_000
    assert _reason(b"[" + b",".join([one] * 10_001) + b"]") == "too_many_readings"


def test_matching_device_id_is_accepted() -> None:
    (reading,) = _decode({"metrics": {"t": 1}, "device_id": DEVICE})
    assert reading.device == DEVICE


def test_rejection_detail_names_the_bad_metric() -> None:
    with pytest.raises(PayloadRejected) as info:
        _decode(b'{"metrics": {"good": 1, "pressure": null}}')
    assert "metrics.pressure" in info.value.detail
    assert ".float" not in info.value.detail  # pydantic's union branch names are not the user's business


# --- reading ids ------------------------------------------------------------------------------------------


def test_payload_id_wins_over_seq() -> None:
    (reading,) = _decode({"metrics": {"t": 1}, "id": "msg-7", "seq": 5})
    assert reading.reading_id == "msg-7"
    assert reading.seq == 5


def test_seq_gives_device_hash_seq() -> None:
    (reading,) = _decode({"metrics": {"t": 1}, "seq": 42})
    assert reading.reading_id == f"{DEVICE}#42@{RECEIVED}"  # without ts, the receive time stands for it
    assert reading.seq == 42


def test_seq_without_a_timestamp_is_not_taken_for_the_same_reading_after_a_reboot() -> None:
    # seq 1 before a reboot and seq 1 after it, with new values: two readings (the broker's redelivery of one
    # of them is recognised by the ingestor from MQTT's DUP flag, tests/unit/test_dup_redelivery.py).
    (before,) = decode(b'{"metrics": {"t": 1}, "seq": 1}', DEVICE, MEASUREMENT, RECEIVED)
    (after,) = decode(b'{"metrics": {"t": 7}, "seq": 1}', DEVICE, MEASUREMENT, RECEIVED + 60 * NS)
    assert before.reading_id != after.reading_id


def test_seq_with_a_timestamp_tells_a_reboot_from_a_redelivery() -> None:
    (first,) = _decode({"metrics": {"t": 1}, "seq": 1, "ts": 1_795_000_000_000})
    (again,) = _decode({"metrics": {"t": 1}, "seq": 1, "ts": 1_795_000_000_000})
    (after_reboot,) = _decode({"metrics": {"t": 1}, "seq": 1, "ts": 1_795_000_600_000})
    assert first.reading_id == again.reading_id == f"{DEVICE}#1@1795000000000000000"
    assert after_reboot.reading_id != first.reading_id


def test_seq_ids_differ_between_devices() -> None:
    (a,) = _decode({"metrics": {"t": 1}, "seq": 1}, device="dev-a")
    (b,) = _decode({"metrics": {"t": 1}, "seq": 1}, device="dev-b")
    assert a.reading_id != b.reading_id


def _content_id(payload: dict[str, Any], device: str = DEVICE, received: int = RECEIVED) -> str:
    (reading,) = decode(json.dumps(payload).encode(), device, MEASUREMENT, received)
    assert reading.seq is None
    return reading.reading_id


def test_content_id_is_stable_for_identical_content() -> None:
    payload = {"ts": BASE_S, "metrics": {"t": 21.5, "on": True, "mode": "eco"}}
    first = _content_id(payload)
    assert first == _content_id(payload)
    assert first == _content_id(payload, received=RECEIVED + 5 * NS)  # a re-send later is the same reading
    # Key order and number spelling do not change the content.
    assert first == _content_id({"metrics": {"mode": "eco", "on": True, "t": 21.50}, "ts": BASE_S * 1000})
    assert first == _content_id({"ts": BASE_S, "metrics": {"t": 21.5, "on": True, "mode": "eco"}, "tags": {}})


@pytest.mark.parametrize(
    ("other", "device"),
    [
        pytest.param({"ts": BASE_S + 1, "metrics": {"t": 21.5}}, DEVICE, id="other-time"),
        pytest.param({"ts": BASE_S + 0.000001, "metrics": {"t": 21.5}}, DEVICE, id="one-microsecond-later"),
        pytest.param({"ts": BASE_S, "metrics": {"t": 21.6}}, DEVICE, id="other-value"),
        pytest.param({"ts": BASE_S, "metrics": {"u": 21.5}}, DEVICE, id="other-name"),
        pytest.param({"ts": BASE_S, "metrics": {"t": "21.5"}}, DEVICE, id="string-not-number"),
        pytest.param({"ts": BASE_S, "metrics": {"t": 21.5, "u": 1}}, DEVICE, id="extra-metric"),
        pytest.param({"ts": BASE_S, "metrics": {"t": 21.5}}, "other-device", id="other-device"),
    ],
)
def test_content_id_differs_for_other_content(other: dict[str, Any], device: str) -> None:
    base = _content_id({"ts": BASE_S, "metrics": {"t": 21.5}})
    assert _content_id(other, device=device) != base


def test_true_and_one_have_different_content_ids() -> None:
    assert _content_id({"ts": BASE_S, "metrics": {"t": True}}) != _content_id({"ts": BASE_S, "metrics": {"t": 1}})


def test_content_id_without_ts_uses_the_receive_time() -> None:
    payload = {"metrics": {"t": 1}}
    assert _content_id(payload) == _content_id(payload)
    assert _content_id(payload) != _content_id(payload, received=RECEIVED + 1)


def test_array_readings_get_their_own_ids() -> None:
    readings = _decode([{"metrics": {"t": 1}, "seq": 1}, {"metrics": {"t": 1}, "seq": 2}, {"metrics": {"t": 2}}])
    ids = [r.reading_id for r in readings]
    assert ids[:2] == [f"{DEVICE}#1@{RECEIVED}", f"{DEVICE}#2@{RECEIVED}"]
    assert len(set(ids)) == 3


# --- properties -------------------------------------------------------------------------------------------

finite_values = st.one_of(
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.text(max_size=12),
)
metric_dicts = st.dictionaries(st.text(max_size=12), finite_values, min_size=1, max_size=6)


def _as_stored(value: bool | float | int | str) -> bool | float | str:
    return float(value) if type(value) is int else value


@settings(max_examples=300, deadline=None, database=None)
@given(metrics=metric_dicts, ascii_only=st.booleans(), as_array=st.booleans())
def test_finite_metrics_round_trip(
    metrics: dict[str, bool | float | int | str], ascii_only: bool, as_array: bool
) -> None:
    message = {"metrics": metrics}
    payload = json.dumps([message] if as_array else message, ensure_ascii=ascii_only).encode()
    (reading,) = decode(payload, DEVICE, MEASUREMENT, RECEIVED)
    assert reading.fields == {name: _as_stored(value) for name, value in metrics.items()}
    for name, value in metrics.items():
        assert type(reading.fields[name]) is type(_as_stored(value))
    assert reading.time_ns == RECEIVED


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
json_payloads = st.one_of(
    st.binary(max_size=48),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"metrics": json_values},
        optional={
            "ts": json_values,
            "id": json_values,
            "seq": json_values,
            "tags": json_values,
            "device_id": json_values,
        },
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"metrics": metric_dicts},
        optional={"ts": st.one_of(st.floats(), st.integers(), st.text(max_size=30)), "seq": st.integers()},
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=300, deadline=None, database=None)
@given(payload=json_payloads)
def test_decode_raises_only_payload_rejected(payload: bytes) -> None:
    try:
        readings = decode(payload, DEVICE, MEASUREMENT, RECEIVED)
    except PayloadRejected as exc:
        assert exc.reason
        return
    assert readings
    for reading in readings:
        assert reading.fields
        assert type(reading.time_ns) is int
        assert all(type(v) in (bool, float, str) for v in reading.fields.values())
