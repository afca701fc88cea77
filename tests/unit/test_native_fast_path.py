"""The native format decodes with msgspec first and falls back to pydantic only for payloads msgspec refuses
(gateway/ingest/formats/native.py). That is only right if msgspec never accepts what pydantic refuses, nor reads
a value differently: checked here on generated payloads, valid and not, down to each value's type."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import PayloadRejected
from gateway.ingest.formats import native
from gateway.reasons import Reason

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["", "2026-12-03T10:00:00Z", "1.5", "x" * 300]),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
_METRICS = st.dictionaries(st.text(max_size=6), _JSON, max_size=4)
_INTS = st.integers(min_value=-(2**70), max_value=2**70)
_FLOATS = st.floats(allow_nan=True, allow_infinity=True)
_TEXT = st.text(max_size=8) | st.sampled_from(["", "x" * 256, "x" * 257, "2026-12-03T10:00:00Z", "1.5"])
# Mostly what a device sends, with the edges each field has: a large share of these are valid.
_METRIC_VALUE = st.one_of(st.booleans(), _INTS, _FLOATS, _TEXT, st.none(), st.lists(_INTS, max_size=2))
_MESSAGE = st.fixed_dictionaries(
    {"metrics": st.dictionaries(_TEXT, _METRIC_VALUE, max_size=4)},
    optional={
        "ts": st.one_of(_INTS, _FLOATS, _TEXT, st.none(), st.booleans()),
        "id": st.one_of(_TEXT, st.none(), _INTS),
        "seq": st.one_of(_INTS, _FLOATS, st.none(), st.booleans(), _TEXT),
        "tags": st.one_of(
            st.dictionaries(_TEXT, _TEXT, max_size=3), st.dictionaries(_TEXT, _INTS, max_size=2), st.none()
        ),
        "device_id": st.one_of(_TEXT, st.none(), _INTS),
        "other": _JSON,
    },
)
_GOOD_MESSAGE = st.fixed_dictionaries(
    {"metrics": st.dictionaries(_TEXT, st.one_of(st.booleans(), _INTS, st.floats(allow_nan=False), _TEXT), max_size=4)},
    optional={
        "ts": st.one_of(_INTS, st.floats(allow_nan=False), _TEXT),
        "id": _TEXT,
        "seq": _INTS,
        "tags": st.dictionaries(_TEXT, _TEXT, max_size=3),
        "device_id": _TEXT,
    },
)
_PAYLOAD = st.one_of(_MESSAGE, st.lists(_MESSAGE, max_size=3), _JSON, st.dictionaries(_TEXT, _JSON, max_size=3))


def _typed(value: Any) -> Any:
    """A value with its type spelled out, so that 1 and 1.0 and True differ."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def _as_dicts(messages: list[Any]) -> list[Any]:
    out = []
    for m in messages:
        d = msgspec.structs.asdict(m) if isinstance(m, msgspec.Struct) else m.model_dump()
        out.append(_typed(d))
    return out


def _agree(payload: bytes) -> None:
    is_list = payload.lstrip()[:1] == b"["
    try:
        fast = native.fast_messages(payload, is_list)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return  # pydantic decides: nothing to compare
    exact = native.exact_messages(payload, is_list)  # must not raise: msgspec accepted it
    assert _as_dicts(fast) == _as_dicts(exact)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PAYLOAD)
def test_msgspec_accepts_only_what_pydantic_accepts_and_reads_it_alike(value: Any) -> None:
    _agree(json.dumps(value, allow_nan=True).encode())


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=64) | st.sampled_from([b'{"metrics": {"a": 1}, "metrics": {"b": 2}}', b'{"metrics":{"a":1}} '])
)
def test_byte_soup_and_repeated_keys_agree(payload: bytes) -> None:
    _agree(payload)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"metrics": {"t": NaN}}', Reason.NON_FINITE_VALUE),
        (b'{"metrics": {"t": 1e999}}', Reason.NON_FINITE_VALUE),
        (b'{"metrics": {}}', Reason.EMPTY_METRICS),
        (b'{"metrics": {"t": [1, 2]}}', Reason.INVALID_SCHEMA),
        (b'{"metrics": {"t": 1}', Reason.MALFORMED_JSON),
        (b'{"ts": 5}', Reason.INVALID_SCHEMA),
        (b'{"metrics": {"t": 1}, "other": ' + b"[" * 5000 + b"]" * 5000 + b"}", Reason.TOO_DEEP),
    ],
)
def test_a_payload_msgspec_refuses_is_explained_by_pydantic(payload: bytes, reason: Reason) -> None:
    with pytest.raises((msgspec.MsgspecError, RecursionError)):
        native.fast_messages(payload, False)
    with pytest.raises(PayloadRejected) as caught:
        native.decode(payload, "dev-1", "telemetry", 0)
    assert caught.value.reason == reason
