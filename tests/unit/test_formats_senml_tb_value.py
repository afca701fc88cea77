"""Bare values (ESPHome), SenML JSON (RFC 8428) and ThingsBoard telemetry: bytes -> readings, or a reason."""

from __future__ import annotations

import calendar
import json
from collections.abc import Callable
from typing import Any

import pytest

from gateway.errors import PayloadRejected
from gateway.ingest.formats import senml, thingsboard, value
from gateway.ingest.formats.base import DecodeContext
from gateway.ingest.formats.fields import select_fields
from gateway.ingest.formats.timestamps import parse_rfc3339
from gateway.model import Reading
from tests.support import DATA

SAMPLES = DATA / "devices.jsonl"
RECEIVED = 1_700_000_000_123_456_789
NS = 1_000_000_000
Decoder = Callable[[bytes, DecodeContext], list[Reading]]


def ctx(**kw: Any) -> DecodeContext:
    base: dict[str, Any] = {"device": "dev", "measurement": "m", "received_at_ns": RECEIVED}
    base.update(kw)
    return DecodeContext(**base)


def raw(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def reason(decoder: Decoder, payload: Any, context: DecodeContext | None = None) -> str:
    with pytest.raises(PayloadRejected) as info:
        decoder(raw(payload), context or ctx(topic_metric="x"))
    assert info.value.detail
    return info.value.reason


def simple(readings: list[Reading]) -> list[tuple[int, dict[str, Any]]]:
    return [(r.time_ns, r.fields) for r in readings]


# --- the shared samples -----------------------------------------------------------------------------------


def _samples() -> list[Any]:
    params = []
    for number, line in enumerate(SAMPLES.read_text(encoding="utf-8").splitlines(), start=1):
        sample = json.loads(line)
        source = sample["source"]
        if source.startswith("SenML"):
            params.append(pytest.param(sample, senml.decode, None, id=f"line{number}-senml"))
        elif source.startswith("ESPHome"):
            metric = sample["topic"].split("/")[2]
            params.append(pytest.param(sample, value.decode, metric, id=f"line{number}-esphome"))
        elif source.startswith("ThingsBoard"):
            params.append(pytest.param(sample, thingsboard.decode, None, id=f"line{number}-thingsboard"))
    ids = [str(p.id) for p in params]
    assert any("senml" in i for i in ids) and any("esphome" in i for i in ids)
    return params


@pytest.mark.parametrize(("sample", "decoder", "metric"), _samples())
def test_sample_decodes_to_its_expectation(sample: dict[str, Any], decoder: Decoder, metric: str | None) -> None:
    device = sample["topic"].split("/")[1] if sample["topic"].startswith("senml/") else sample["topic"].split("/")[0]
    payload = sample["payload_text"].encode() if "payload_text" in sample else raw(sample["payload"])
    readings = decoder(payload, ctx(device=device, topic_metric=metric))
    assert len(readings) == len(sample["expect"])
    for reading, expect in zip(readings, sample["expect"], strict=True):
        assert reading.device == expect["device"]
        assert reading.fields == expect["fields"]
        assert all(isinstance(v, float) for v in reading.fields.values() if not isinstance(v, bool | str))
        if expect["time"] == "<receive time>":
            assert reading.time_ns == RECEIVED
            assert not reading.time_from_device
        else:
            assert reading.time_ns == parse_rfc3339(expect["time"])
            assert reading.time_from_device
        assert reading.reading_id


# --- shared field selection -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        pytest.param({}, {"a": 1, "b_x": 2, "c": 3}, id="nothing"),
        pytest.param({"include": ("b_*", "a")}, {"a": 1, "b_x": 2}, id="include"),
        pytest.param({"exclude": ("b_*",)}, {"a": 1, "c": 3}, id="exclude"),
        pytest.param({"include": ("*",), "exclude": ("c",)}, {"a": 1, "b_x": 2}, id="exclude-wins"),
        pytest.param({"rename": {"a": "alpha"}}, {"alpha": 1, "b_x": 2, "c": 3}, id="rename"),
        pytest.param({"include": ("A",)}, {}, id="case-sensitive"),
    ],
)
def test_select_fields(kw: dict[str, Any], expected: dict[str, int]) -> None:
    assert select_fields({"a": 1, "b_x": 2, "c": 3}, ctx(**kw)) == expected


def test_select_fields_rejects_a_rename_collision() -> None:
    with pytest.raises(PayloadRejected) as info:
        select_fields({"a": 1, "b": 2}, ctx(rename={"b": "a"}))
    assert info.value.reason == "invalid_schema"


# --- bare values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(b"37.5", 37.5, id="float"),
        pytest.param(b"-3", -3.0, id="negative-int"),
        pytest.param(b" 1e3\n", 1000.0, id="exponent-whitespace"),
        pytest.param(b"ON", True, id="ON"),
        pytest.param(b"off", False, id="off"),
        pytest.param(b"true", True, id="true"),
        pytest.param(b"False", False, id="False"),
        pytest.param(b"open", True, id="open"),
        pytest.param(b"CLOSED", False, id="closed"),
    ],
)
def test_bare_value(text: bytes, expected: float | bool) -> None:
    [reading] = value.decode(text, ctx(topic_metric="soil"))
    assert reading.fields == {"soil": expected}
    assert type(reading.fields["soil"]) is type(expected)
    assert (reading.time_ns, reading.time_from_device) == (RECEIVED, False)


def test_bare_string_kept_only_when_asked() -> None:
    [reading] = value.decode(b"heating", ctx(topic_metric="mode", keep_strings=True))
    assert reading.fields == {"mode": "heating"}
    assert reason(value.decode, b"heating", ctx(topic_metric="mode")) == "invalid_value"


def test_bare_value_filtered_and_renamed() -> None:
    assert value.decode(b"1", ctx(topic_metric="rssi", exclude=("rssi",))) == []
    [reading] = value.decode(b"1", ctx(topic_metric="t", rename={"t": "temperature"}))
    assert reading.fields == {"temperature": 1.0}


@pytest.mark.parametrize(
    ("text", "context", "code"),
    [
        pytest.param(b"1", ctx(), "invalid_schema", id="no-metric"),
        pytest.param(b"nan", ctx(topic_metric="x"), "non_finite_value", id="nan"),
        pytest.param(b"-Infinity", ctx(topic_metric="x"), "non_finite_value", id="inf"),
        pytest.param(b"1e999", ctx(topic_metric="x"), "non_finite_value", id="overflow"),
        pytest.param(b"", ctx(topic_metric="x"), "invalid_value", id="empty"),
        pytest.param(b"\xff", ctx(topic_metric="x"), "invalid_value", id="not-utf8"),
        pytest.param(b"1_000", ctx(topic_metric="x"), "invalid_value", id="underscore-number"),
    ],
)
def test_bare_value_rejected(text: bytes, context: DecodeContext, code: str) -> None:
    assert reason(value.decode, text, context) == code


# --- SenML ------------------------------------------------------------------------------------------------

T0 = 1_320_078_429


def test_rfc8428_5_1_1_single_datapoint() -> None:
    pack = [{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1}]
    [reading] = senml.decode(raw(pack), ctx())
    assert reading.fields == {"urn:dev:ow:10e2073a01080063": 23.1}
    assert (reading.time_ns, reading.time_from_device) == (RECEIVED, False)  # t 0: "now"


def test_rfc8428_5_1_3_multiple_measurements_named_by_unit() -> None:
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063", "bt": 1.320078429e09, "bu": "%RH", "v": 20},
        {"u": "lon", "v": 24.30621},
        {"u": "lat", "v": 60.07965},
        {"t": 60, "v": 20.3},
        {"u": "lon", "t": 60, "v": 24.30622},
        {"u": "lat", "t": 60, "v": 60.07965},
        {"t": 120, "v": 20.7},
        {"u": "lon", "t": 120, "v": 24.30623},
        {"u": "lat", "t": 120, "v": 60.07966},
        {"u": "%EL", "t": 150, "v": 98},
        {"t": 180, "v": 21.2},
        {"u": "lon", "t": 180, "v": 24.30628},
        {"u": "lat", "t": 180, "v": 60.07967},
    ]
    assert simple(senml.decode(raw(pack), ctx())) == [
        (T0 * NS, {"%RH": 20.0, "lon": 24.30621, "lat": 60.07965}),
        ((T0 + 60) * NS, {"%RH": 20.3, "lon": 24.30622, "lat": 60.07965}),
        ((T0 + 120) * NS, {"%RH": 20.7, "lon": 24.30623, "lat": 60.07966}),
        ((T0 + 150) * NS, {"%EL": 98.0}),
        ((T0 + 180) * NS, {"%RH": 21.2, "lon": 24.30628, "lat": 60.07967}),
    ]


def test_rfc8428_5_1_4_resolved_data_and_5_1_5_multiple_types() -> None:
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "bt": 1.276020076001e09, "bu": "A", "bver": 5, "n": "voltage",
         "u": "V", "v": 120.1},
        {"n": "current", "t": -5, "v": 1.2},
        {"n": "current", "v": 1.5},
    ]  # fmt: skip
    assert simple(senml.decode(raw(pack), ctx())) == [
        (1_276_020_076_001_000_000, {"voltage": 120.1, "current": 1.5}),
        (1_276_020_071_001_000_000, {"current": 1.2}),
    ]
    types = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "n": "temp", "u": "Cel", "v": 23.1},
        {"n": "label", "vs": "Machine Room"},
        {"n": "open", "vb": False},
        {"n": "nfv-label", "vd": "aGkgCg"},
    ]
    assert simple(senml.decode(raw(types), ctx())) == [(RECEIVED, {"temp": 23.1, "open": False})]
    assert simple(senml.decode(raw(types), ctx(keep_strings=True))) == [
        (RECEIVED, {"temp": 23.1, "label": "Machine Room", "open": False, "nfv-label": "aGkgCg"})
    ]


def test_senml_base_value_sum_and_relative_time() -> None:
    pack = [
        {"bn": "meter:", "bv": 100, "bs": 1000, "n": "energy", "v": 5, "s": 7, "t": -10},
        {"n": "counter", "s": 1},
    ]
    assert simple(senml.decode(raw(pack), ctx(separator="."))) == [
        (RECEIVED - 10 * NS, {"energy": 105.0, "energy.sum": 1007.0}),
        (RECEIVED, {"counter.sum": 1001.0}),
    ]


def test_senml_include_exclude_rename() -> None:
    pack = [{"bn": "d:", "n": "a", "v": 1}, {"n": "b", "v": 2}, {"n": "c", "v": 3}]
    context = ctx(exclude=("c",), rename={"a": "alpha"})
    assert simple(senml.decode(raw(pack), context)) == [(RECEIVED, {"alpha": 1.0, "b": 2.0})]
    assert reason(senml.decode, pack, ctx(include=("zzz",))) == "empty_metrics"  # else it would vanish


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        pytest.param(b"[{", "malformed_json", id="malformed"),
        pytest.param({"n": "a", "v": 1}, "invalid_schema", id="not-an-array"),
        pytest.param([], "empty_metrics", id="empty"),
        pytest.param([1], "invalid_schema", id="record-not-object"),
        pytest.param([{"v": 1}], "invalid_schema", id="no-name"),
        pytest.param([{"n": "a"}], "invalid_schema", id="no-value"),
        pytest.param([{"n": "a", "v": "1"}], "invalid_schema", id="v-string"),
        pytest.param([{"n": "a", "v": True}], "invalid_schema", id="v-bool"),
        pytest.param([{"n": "a", "vb": 1}], "invalid_schema", id="vb-number"),
        pytest.param([{"n": 5, "v": 1}], "invalid_schema", id="n-number"),
        pytest.param([{"n": "a", "v": 1, "vb": True}], "invalid_schema", id="two-values"),
        pytest.param([{"n": "a", "v": 1}, {"n": "a", "v": 2}], "invalid_schema", id="duplicate"),
        pytest.param([{"n": "a", "v": 1, "foo_": 1}], "invalid_schema", id="must-understand"),
        pytest.param([{"bver": 11, "n": "a", "v": 1}], "invalid_schema", id="future-version"),
        pytest.param(b'[{"n":"a","v":NaN}]', "non_finite_value", id="nan"),
        pytest.param(b'[{"n":"a","v":1e400}]', "non_finite_value", id="overflow"),
        pytest.param(
            b'[{"bv":1' + b"0" * 400 + b',"n":"a","v":1.5}]', "non_finite_value", id="huge-int-base-plus-float"
        ),
        pytest.param([{"n": "a", "v": 1, "t": "now"}], "invalid_timestamp", id="t-string"),
        pytest.param([{"bt": "2020", "n": "a", "v": 1}], "invalid_timestamp", id="bt-string"),
        pytest.param(b'[{"n":"a","v":1,"t":Infinity}]', "invalid_timestamp", id="t-infinite"),
        pytest.param([{"n": "a", "vs": "text"}], "empty_metrics", id="only-strings-not-kept"),
    ],
)
def test_senml_rejected(payload: Any, code: str) -> None:
    assert reason(senml.decode, payload) == code


# --- ThingsBoard ------------------------------------------------------------------------------------------

TS_MS = 1_795_774_500_250


def test_thingsboard_timestamped_array_and_flat() -> None:
    payload = [
        {"ts": TS_MS, "values": {"temperature": 42, "on": True, "mode": "auto"}},
        {"ts": TS_MS + 1000, "values": {"temperature": 43.5}},
    ]
    readings = thingsboard.decode(raw(payload), ctx())
    assert simple(readings) == [
        (TS_MS * 1_000_000, {"temperature": 42.0, "on": True}),
        ((TS_MS + 1000) * 1_000_000, {"temperature": 43.5}),
    ]
    assert all(r.time_from_device for r in readings)
    [flat] = thingsboard.decode(raw({"temperature": 1, "humidity": 40.5}), ctx())
    assert (flat.time_ns, flat.fields, flat.time_from_device) == (
        RECEIVED,
        {"temperature": 1.0, "humidity": 40.5},
        False,
    )


def test_thingsboard_flattens_keeps_strings_and_filters() -> None:
    payload = {
        "ts": TS_MS,
        "values": {"ENERGY": {"Power": 45, "Meta": {"ok": True}}, "fw": "1.2", "l": [1, 2], "n": None},
    }
    [reading] = thingsboard.decode(raw(payload), ctx(keep_strings=True, separator="."))
    assert reading.fields == {"ENERGY.Power": 45.0, "ENERGY.Meta.ok": True, "fw": "1.2", "l": "[1,2]"}
    [reading] = thingsboard.decode(raw(payload), ctx(exclude=("ENERGY_Meta_*",), rename={"ENERGY_Power": "power"}))
    assert reading.fields == {"power": 45.0}
    assert reason(thingsboard.decode, {"fw": "1.2"}, ctx()) == "empty_metrics"  # nothing to store: dead-lettered
    [kept] = thingsboard.decode(raw([{"fw": "1.2"}, {"t": 1}]), ctx())  # an element without values is skipped
    assert kept.fields == {"t": 1.0}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        pytest.param(b"{", "malformed_json", id="malformed"),
        pytest.param(b"42", "invalid_schema", id="scalar"),
        pytest.param([], "empty_metrics", id="empty-array"),
        pytest.param({}, "empty_metrics", id="empty-object"),
        pytest.param([1], "invalid_schema", id="element-not-object"),
        pytest.param({"ts": "yesterday", "values": {"a": 1}}, "invalid_timestamp", id="ts-string"),
        pytest.param({"ts": True, "values": {"a": 1}}, "invalid_timestamp", id="ts-bool"),
        pytest.param({"ts": TS_MS, "values": 5}, "invalid_schema", id="values-not-object"),
        pytest.param({"ts": TS_MS, "values": {"a": 1}, "x": 1}, "invalid_schema", id="extra-key"),
        pytest.param({"": 1}, "invalid_schema", id="empty-name"),
        pytest.param({"a_b": 1, "a": {"b": 2}}, "invalid_schema", id="flatten-collision"),
        pytest.param(b'{"a": NaN}', "non_finite_value", id="nan"),
        pytest.param(b'{"a": 1e400}', "non_finite_value", id="overflow"),
    ],
)
def test_thingsboard_rejected(payload: Any, code: str) -> None:
    assert reason(thingsboard.decode, payload) == code


@pytest.mark.parametrize(
    ("decoder", "payload", "time_ns"),
    [
        pytest.param(senml.decode, [{"n": "a", "v": 1, "t": 1e303}], int(1e303) * 10**9, id="senml-t"),
        pytest.param(senml.decode, [{"bt": 1e300, "n": "a", "v": 1}], int(1e300) * 10**9, id="senml-bt"),
        pytest.param(thingsboard.decode, {"ts": 1e306, "values": {"a": 1}}, int(1e306) * 10**6, id="thingsboard-ts"),
    ],
)
def test_huge_float_times_are_exact_not_an_overflow(decoder: Decoder, payload: Any, time_ns: int) -> None:
    # Scaling such a float to ns overflowed to infinity (OverflowError, an internal error); as an exact integer
    # far beyond 64-bit ns, the validator rejects it as timestamp_out_of_range.
    [reading] = decoder(raw(payload), ctx())
    assert reading.time_ns == time_ns


def test_rfc_5_1_2_epoch_agrees_with_sample() -> None:
    assert calendar.timegm((2011, 10, 31, 13, 24, 24)) == 1_320_067_464
