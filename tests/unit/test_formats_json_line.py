"""The generic JSON format (zigbee2mqtt, Tasmota, Shelly) and line-protocol input: bytes -> readings."""

from __future__ import annotations

import calendar
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ConfigError, PayloadRejected
from gateway.ingest.formats import json as jsonformat
from gateway.ingest.formats import line as lineformat
from gateway.ingest.formats.base import DecodeContext
from gateway.ingest.formats.identity import content_id
from gateway.model import Reading
from gateway.sinks.lineprotocol import LineEncoder
from tests.support import DATA

SAMPLES = DATA / "devices.jsonl"
RECEIVED = 1_700_000_000_123_456_789
NS = 1_000_000_000


def _ctx(device: str = "dev", **kwargs: Any) -> DecodeContext:
    return DecodeContext(device=device, measurement="telemetry", received_at_ns=RECEIVED, **kwargs)


def _json(payload: Any, context: DecodeContext | None = None) -> list[Reading]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return jsonformat.decode(raw, context or _ctx())


def _json_reason(payload: Any, context: DecodeContext | None = None) -> str:
    with pytest.raises(PayloadRejected) as info:
        _json(payload, context)
    assert info.value.detail
    return info.value.reason


def _line(text: str | bytes, context: DecodeContext | None = None) -> list[Reading]:
    raw = text if isinstance(text, bytes) else text.encode()
    return lineformat.decode(raw, context or _ctx())


def _line_error(text: str | bytes, context: DecodeContext | None = None) -> PayloadRejected:
    with pytest.raises(PayloadRejected) as info:
        _line(text, context)
    assert info.value.detail
    return info.value


# --- the shared samples -----------------------------------------------------------------------------------


def _sample(prefix: str) -> dict[str, Any]:
    for line in SAMPLES.read_text(encoding="utf-8").splitlines():
        sample: dict[str, Any] = json.loads(line)
        if sample["source"].startswith(prefix):
            return sample
    pytest.skip(f"no {prefix} sample in {SAMPLES}")


def test_zigbee2mqtt_sample() -> None:
    sample = _sample("zigbee2mqtt")
    (expect,) = sample["expect"]
    device = sample["topic"].split("/")[1]
    (reading,) = _json(sample["payload"], _ctx(device))
    assert reading.device == expect["device"]
    assert reading.fields == {k: float(v) for k, v in expect["fields"].items()}
    assert all(type(v) is float for v in reading.fields.values())
    assert reading.time_ns == RECEIVED
    assert reading.time_from_device is False
    assert reading.tags == {}
    assert reading.reading_id == content_id(device, RECEIVED, reading.fields)


def test_tasmota_sample_in_utc() -> None:
    sample = _sample("Tasmota")
    (expect,) = sample["expect"]
    device = sample["topic"].split("/")[1]
    (reading,) = _json(sample["payload"], _ctx(device, timestamp_field="Time", timezone="UTC"))
    assert reading.device == expect["device"]
    assert reading.fields == {k: float(v) for k, v in expect["fields"].items()}  # TotalStartTime skipped
    assert reading.time_ns == calendar.timegm((2024, 5, 28, 20, 4, 27)) * NS
    assert reading.time_ns == 1_716_926_667 * NS
    assert reading.time_from_device is True
    assert "Time" not in reading.fields


def test_tasmota_sample_in_berlin_summer_time() -> None:
    sample = _sample("Tasmota")
    (reading,) = _json(sample["payload"], _ctx(timestamp_field="Time", timezone="Europe/Berlin"))
    assert reading.time_ns == calendar.timegm((2024, 5, 28, 18, 4, 27)) * NS  # CEST = UTC+2


def test_tasmota_keep_strings_keeps_total_start_time() -> None:
    sample = _sample("Tasmota")
    (reading,) = _json(sample["payload"], _ctx(timestamp_field="Time", keep_strings=True))
    assert reading.fields["ENERGY_TotalStartTime"] == "2023-01-01T00:00:00"
    assert "Time" not in reading.fields


def test_shelly_gen2_notify_status() -> None:
    """Shelly Gen2 NotifyStatus (no sample in devices.jsonl): the timestamp is nested at params.ts."""
    payload = {
        "src": "shellyplus1pm-a8032ab12345",
        "dst": "shellies/status",
        "method": "NotifyStatus",
        "params": {"ts": 1716926667.25, "switch:0": {"id": 0, "apower": 12.5, "output": True, "aenergy": {}}},
    }
    (reading,) = _json(payload, _ctx(timestamp_field="params.ts"))
    assert reading.fields == {
        "params_switch:0_id": 0.0,
        "params_switch:0_apower": 12.5,
        "params_switch:0_output": True,
    }
    assert reading.time_ns == 1_716_926_667_250_000_000
    assert reading.time_from_device is True


# --- flattening and value types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "context", "fields"),
    [
        pytest.param({"ENERGY": {"Power": 45}}, _ctx(), {"ENERGY_Power": 45.0}, id="nested"),
        pytest.param({"a": {"b": {"c": 1}}}, _ctx(separator="."), {"a.b.c": 1.0}, id="separator"),
        pytest.param({"a": 1, "b": [1, 2, 3], "c": None}, _ctx(), {"a": 1.0}, id="lists-and-null-skipped"),
        pytest.param({"a": 1, "e": {}}, _ctx(), {"a": 1.0}, id="empty-object-skipped"),
        pytest.param({"ok": True, "bad": False}, _ctx(), {"ok": True, "bad": False}, id="bools-stay-bools"),
        pytest.param(
            {"state": "ON", "POWER": "off", "x": "On", "y": "oFF"},
            _ctx(),
            {"state": True, "POWER": False, "x": True, "y": False},
            id="on-off-any-case",
        ),
        pytest.param({"a": 1, "s": "hello", "n": "12.5"}, _ctx(), {"a": 1.0}, id="strings-skipped"),
        pytest.param(
            {"a": 1, "s": "hello", "n": "12.5"},
            _ctx(keep_strings=True),
            {"a": 1.0, "s": "hello", "n": "12.5"},
            id="strings-kept",
        ),
        pytest.param({"a": 2**70}, _ctx(), {"a": float(2**70)}, id="big-int"),
        pytest.param(
            {"a": 1, "b": 2, "c": {"d": 3}},
            _ctx(include=("a", "c_*"), rename={"c_d": "d"}),
            {"a": 1.0, "d": 3.0},
            id="select-fields",
        ),
    ],
)
def test_fields(payload: Any, context: DecodeContext, fields: dict[str, Any]) -> None:
    (reading,) = _json(payload, context)
    assert reading.fields == fields
    assert [type(v) for v in reading.fields.values()] == [type(v) for v in fields.values()]


def test_array_gives_one_reading_per_object() -> None:
    readings = _json([{"t": 1, "ts": 1_716_926_667}, {"t": 2}], _ctx(timestamp_field="ts"))
    assert [r.fields for r in readings] == [{"t": 1.0}, {"t": 2.0}]
    assert [r.time_ns for r in readings] == [1_716_926_667 * NS, RECEIVED]
    assert [r.time_from_device for r in readings] == [True, False]


# --- timestamps -------------------------------------------------------------------------------------------

T0 = 1_716_926_667  # 2024-05-28T20:04:27Z


@pytest.mark.parametrize(
    ("value", "timezone", "expected_ns"),
    [
        pytest.param("2024-05-28T20:04:27Z", "UTC", T0 * NS, id="rfc3339-z"),
        pytest.param("2024-05-28T22:04:27.5+02:00", "UTC", T0 * NS + NS // 2, id="rfc3339-offset"),
        pytest.param("2024-05-28T20:04:27", "UTC", T0 * NS, id="local-utc"),
        pytest.param("2024-05-28 22:04:27.000000001", "Europe/Berlin", T0 * NS + 1, id="local-berlin-ns"),
        pytest.param(
            "2024-01-15T12:00:00",
            "America/New_York",
            calendar.timegm((2024, 1, 15, 17, 0, 0)) * NS,
            id="local-new-york-winter",
        ),
        pytest.param(T0, "UTC", T0 * NS, id="epoch-seconds"),
        pytest.param(T0 + 0.125, "UTC", T0 * NS + NS // 8, id="epoch-float-seconds"),
        pytest.param(T0 * 1000 + 7, "UTC", T0 * NS + 7_000_000, id="epoch-ms"),
        pytest.param(T0 * 1_000_000, "UTC", T0 * NS, id="epoch-us"),
        pytest.param(T0 * NS + 3, "UTC", T0 * NS + 3, id="epoch-ns"),
    ],
)
def test_timestamp_forms(value: Any, timezone: str, expected_ns: int) -> None:
    (reading,) = _json({"ts": value, "v": 1}, _ctx(timestamp_field="ts", timezone=timezone))
    assert reading.time_ns == expected_ns
    assert reading.time_from_device is True
    assert reading.fields == {"v": 1.0}


@pytest.mark.parametrize(
    ("payload", "field", "fields"),
    [
        pytest.param({"meta": {"ts": T0}, "v": 1, "x": {"y": 2}}, "meta.ts", {"v": 1.0, "x_y": 2.0}, id="nested"),
        pytest.param({"meta": {"ts": T0, "n": 5}, "v": 1}, "meta.ts", {"meta_n": 5.0, "v": 1.0}, id="sibling-kept"),
        pytest.param({"sensor.ts": T0, "v": 1}, "sensor.ts", {"v": 1.0}, id="dotted-literal-key"),
    ],
)
def test_timestamp_path(payload: Any, field: str, fields: dict[str, Any]) -> None:
    (reading,) = _json(payload, _ctx(timestamp_field=field))
    assert reading.time_ns == T0 * NS
    assert reading.fields == fields


def test_timestamp_field_absent_uses_receive_time() -> None:
    (reading,) = _json({"v": 1, "ts": None}, _ctx(timestamp_field="Time"))
    assert (reading.time_ns, reading.time_from_device) == (RECEIVED, False)
    assert reading.fields == {"v": 1.0}


def test_no_timestamp_field_keeps_time_like_keys_as_fields() -> None:
    (reading,) = _json({"v": 1, "ts": T0})
    assert reading.time_ns == RECEIVED
    assert reading.fields == {"v": 1.0, "ts": float(T0)}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("yesterday", id="word"),
        pytest.param("2024-13-01T00:00:00", id="bad-month-local"),
        pytest.param("2024-05-28T20:04:27+25:00", id="bad-offset"),
        pytest.param(True, id="bool"),
        pytest.param([T0], id="list"),
        pytest.param({"s": T0}, id="object"),
    ],
)
def test_invalid_timestamps(value: Any) -> None:
    assert _json_reason({"ts": value, "v": 1}, _ctx(timestamp_field="ts")) == "invalid_timestamp"


def test_unknown_timezone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        _json({"ts": "2024-05-28T20:04:27", "v": 1}, _ctx(timestamp_field="ts", timezone="Mars/Olympus"))


# --- rejections -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(b'{"a": NaN}', "non_finite_value", id="nan"),
        pytest.param(b'{"a": Infinity}', "non_finite_value", id="infinity"),
        pytest.param(b'{"a": -Infinity}', "non_finite_value", id="minus-infinity"),
        pytest.param(b'{"a": 1e309}', "non_finite_value", id="1e309"),
        pytest.param(b'{"a": -1e309}', "non_finite_value", id="minus-1e309"),
        pytest.param(b'{"a": 1', "malformed_json", id="truncated"),
        pytest.param(b"", "malformed_json", id="empty-bytes"),
        pytest.param(b"\xff\xfe", "malformed_json", id="not-utf8"),
        pytest.param(b'{"a": nope}', "malformed_json", id="bad-literal"),
        pytest.param(b"42", "invalid_schema", id="bare-number"),
        pytest.param(b'"x"', "invalid_schema", id="bare-string"),
        pytest.param(b"[1, 2]", "invalid_schema", id="array-of-numbers"),
        pytest.param(b"[]", "empty_metrics", id="empty-array"),
        pytest.param(b"{}", "empty_metrics", id="empty-object"),
        pytest.param(b'{"s": "text", "l": [1]}', "empty_metrics", id="nothing-usable"),
    ],
)
def test_json_rejections(payload: bytes, reason: str) -> None:
    assert _json_reason(payload) == reason


def _nested(depth: int) -> bytes:
    """An object `depth` levels deep: {"a":{"a":...{"v":1}...}}."""
    return b'{"a":' * (depth - 1) + b'{"v":1}' + b"}" * (depth - 1)


def test_depth_limit_boundary() -> None:
    (reading,) = _json(_nested(32))
    assert reading.fields == {"_".join(["a"] * 31 + ["v"]): 1.0}
    assert _json_reason(_nested(33)) == "too_deep"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_nested(10_000), id="objects-10000"),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, id="arrays-10000"),
        pytest.param(b'{"v":1,"l":' + b"[" * 40 + b"]" * 40 + b"}", id="deep-list-in-object"),
        pytest.param(b'{"a": NaN, "b":' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="nan-then-deep"),
    ],
)
def test_deep_json_rejected_quickly(payload: bytes) -> None:
    started = time.perf_counter()
    reason = _json_reason(payload)
    assert reason in {"too_deep", "non_finite_value"}
    if b"NaN" not in payload:
        assert reason == "too_deep"
    assert time.perf_counter() - started < 1.0


# --- line protocol ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "measurement", "tags", "fields"),
    [
        pytest.param("cpu v=1", "cpu", {}, {"v": 1.0}, id="minimal"),
        pytest.param(r"my\ cpu\,x v=1", "my cpu,x", {}, {"v": 1.0}, id="measurement-escapes"),
        pytest.param("a=b v=1", "a=b", {}, {"v": 1.0}, id="measurement-equals-unescaped"),
        pytest.param(r"cpu,t\ k\,\==v\ a\,\=l v=1", "cpu", {"t k,=": "v a,=l"}, {"v": 1.0}, id="tag-escapes"),
        pytest.param(r"cpu,path=C:\dir v=1", "cpu", {"path": r"C:\dir"}, {"v": 1.0}, id="lone-backslash-literal"),
        pytest.param(r"cpu,path=a\\ v=1", "cpu", {"path": "a\\"}, {"v": 1.0}, id="escaped-backslash"),
        pytest.param(r"cpu f\ k\,\=\"=1", "cpu", {}, {'f k,="': 1.0}, id="field-key-escapes"),
        pytest.param(r'cpu s="a \"q\" \\ b"', "cpu", {}, {"s": 'a "q" \\ b'}, id="string-escapes"),
        pytest.param('cpu s="a,b c=d"', "cpu", {}, {"s": "a,b c=d"}, id="string-with-separators"),
        pytest.param('cpu s="two\nlines"', "cpu", {}, {"s": "two\nlines"}, id="string-with-newline"),
        pytest.param(
            "cpu i=12i,n=-3i,u=12u,f=-1.5e3,g=1.,h=.5,e=1e+16",
            "cpu",
            {},
            {"i": 12.0, "n": -3.0, "u": 12.0, "f": -1500.0, "g": 1.0, "h": 0.5, "e": 1e16},
            id="numbers",
        ),
        pytest.param(
            "cpu a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE",
            "cpu",
            {},
            {
                "a": True,
                "b": True,
                "c": True,
                "d": True,
                "e": True,
                "f": False,
                "g": False,
                "h": False,
                "i": False,
                "j": False,
            },
            id="bools",
        ),
        pytest.param("cpu,device=dev,site=a v=1", "cpu", {"site": "a"}, {"v": 1.0}, id="device-tag-matches"),
        pytest.param("cpu v=1,v=2", "cpu", {}, {"v": 2.0}, id="duplicate-field-last-wins"),
    ],
)
def test_line_parsing(text: str, measurement: str, tags: dict[str, str], fields: dict[str, Any]) -> None:
    (reading,) = _line(text)
    assert reading.device == "dev"
    assert reading.measurement == measurement
    assert reading.tags == tags
    assert reading.fields == fields
    assert [type(v) for v in reading.fields.values()] == [type(v) for v in fields.values()]
    assert (reading.time_ns, reading.time_from_device) == (RECEIVED, False)


def test_line_timestamps_and_multiple_lines() -> None:
    text = "# a comment\ncpu v=1 1716926667000000000\r\n\n   \ncpu,host=h v=2 -5   \nmem free=3\n"
    readings = _line(text)
    assert [(r.measurement, r.time_ns, r.time_from_device) for r in readings] == [
        ("cpu", 1_716_926_667 * NS, True),
        ("cpu", -5, True),
        ("mem", RECEIVED, False),
    ]
    assert readings[1].tags == {"host": "h"}
    assert readings[0].reading_id == content_id("dev", 1_716_926_667 * NS, {"v": 1.0}, ("cpu", {}))
    # Equal values at one instant in another series are another reading, not a duplicate.
    same_values = _line("cpu,host=a v=1 1\ncpu,host=b v=1 1\nmem v=1 1")
    assert len({r.reading_id for r in same_values}) == 3


def test_line_select_fields() -> None:
    (reading,) = _line("cpu a=1,b=2,c=3", _ctx(exclude=("b",), rename={"c": "see"}))
    assert reading.fields == {"a": 1.0, "see": 3.0}
    assert _line_error("cpu b=2", _ctx(exclude=("b",))).reason == "empty_metrics"


@pytest.mark.parametrize(
    ("text", "reason", "line_no"),
    [
        pytest.param("cpu,device=other v=1", "device_mismatch", 1, id="device-mismatch"),
        pytest.param("cpu v=1\ncpu,device=x v=1", "device_mismatch", 2, id="device-mismatch-line2"),
        pytest.param("cpu", "invalid_line_protocol", 1, id="no-fields"),
        pytest.param("cpu ", "invalid_line_protocol", 1, id="space-no-fields"),
        pytest.param(",t=v v=1", "invalid_line_protocol", 1, id="no-measurement"),
        pytest.param("cpu,t v=1", "invalid_line_protocol", 1, id="tag-without-value"),
        pytest.param("cpu,t= v=1", "invalid_line_protocol", 1, id="empty-tag-value"),
        pytest.param("cpu,=v v=1", "invalid_line_protocol", 1, id="empty-tag-key"),
        pytest.param("cpu v", "invalid_line_protocol", 1, id="field-without-value"),
        pytest.param("cpu v=", "invalid_line_protocol", 1, id="empty-field-value"),
        pytest.param("cpu =1", "invalid_line_protocol", 1, id="empty-field-key"),
        pytest.param("cpu v=1,", "invalid_line_protocol", 1, id="trailing-comma"),
        pytest.param('cpu s="open', "invalid_line_protocol", 1, id="unterminated-string"),
        pytest.param("cpu v=abc", "invalid_line_protocol", 1, id="bare-word"),
        pytest.param("cpu v=NaN", "invalid_line_protocol", 1, id="nan"),
        pytest.param("cpu v=inf", "invalid_line_protocol", 1, id="inf"),
        pytest.param("cpu v=1e309", "invalid_line_protocol", 1, id="float-overflow"),
        pytest.param("cpu v=9223372036854775808i", "invalid_line_protocol", 1, id="int64-overflow"),
        pytest.param("cpu v=-1u", "invalid_line_protocol", 1, id="negative-unsigned"),
        pytest.param("cpu v=18446744073709551616u", "invalid_line_protocol", 1, id="uint64-overflow"),
        pytest.param("cpu v=1.5i", "invalid_line_protocol", 1, id="float-with-i"),
        pytest.param("cpu v=1 12.5", "invalid_line_protocol", 1, id="float-timestamp"),
        pytest.param("cpu v=1 123 456", "invalid_line_protocol", 1, id="text-after-timestamp"),
        pytest.param("cpu v=1 99999999999999999999", "invalid_line_protocol", 1, id="timestamp-overflow"),
        pytest.param("cpu v=1\nmem\ndisk v=2", "invalid_line_protocol", 2, id="bad-second-line"),
        pytest.param('cpu s="a\nb"\nbad', "invalid_line_protocol", 3, id="line-count-after-multiline-string"),
        pytest.param(b"cpu v=1\n\xff", "invalid_line_protocol", None, id="not-utf8"),
        pytest.param("", "empty_metrics", None, id="empty"),
        pytest.param("# only a comment\n\n", "empty_metrics", None, id="only-comments"),
    ],
)
def test_line_rejections(text: str | bytes, reason: str, line_no: int | None) -> None:
    error = _line_error(text)
    assert error.reason == reason
    if line_no is not None:
        assert error.detail.startswith(f"line {line_no}")


def test_line_too_many_readings() -> None:
    assert _line_error("cpu v=1\n" * 10_001).reason == "too_many_readings"


# --- round trip through the sink's encoder ----------------------------------------------------------------

_names = st.text(st.characters(codec="utf-8", exclude_characters="\n"), min_size=1, max_size=12)
# A leading '#' would read as a comment; an unprintable measurement is rejected (invalid_name).
_measurements = _names.filter(lambda s: not s.startswith("#") and s.isprintable())
_tag_keys = _names.filter(lambda s: s != "device")
_values = st.floats(allow_nan=False, allow_infinity=False) | st.booleans() | st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    device=_names,
    measurement=_measurements,
    tags=st.dictionaries(_tag_keys, _names, max_size=4),
    fields=st.dictionaries(_names, _values, min_size=1, max_size=5),
    time_ns=st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_encoder_output_decodes_back(
    device: str, measurement: str, tags: dict[str, str], fields: dict[str, float | bool | str], time_ns: int
) -> None:
    original = Reading(device, measurement, time_ns, fields, tags, "id")
    encoded = LineEncoder().encode([original, original._replace(time_ns=0)])
    first, second = lineformat.decode(encoded, _ctx(device))
    assert (first.device, first.measurement, first.tags, first.fields, first.time_ns) == (
        device,
        measurement,
        tags,
        fields,
        time_ns,
    )
    assert first.time_from_device is True
    assert second.time_ns == 0
