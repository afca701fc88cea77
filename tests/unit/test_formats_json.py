"""The JSON format: the shared device samples (zigbee2mqtt, Tasmota, Shelly), flattening and value types, and
timestamps (forms, paths, time zones).
"""

from __future__ import annotations

import calendar
import json
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.ingest.formats.base import DecodeContext
from gateway.ingest.formats.identity import content_id
from tests.support import DATA
from tests.support.format_decoding import NS, RECEIVED, _ctx, _json, _json_reason

SAMPLES = DATA / "devices.jsonl"


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
