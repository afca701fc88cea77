"""Native format properties (hypothesis): finite metrics round-trip, and decode raises nothing but PayloadRejected."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import PayloadRejected
from gateway.ingest.formats.native import decode
from tests.support.native_decoding import DEVICE, MEASUREMENT, RECEIVED

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
