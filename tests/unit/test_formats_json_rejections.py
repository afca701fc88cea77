"""JSON payloads the decoder rejects, with their reasons; deep nesting is refused at the limit, and quickly."""

from __future__ import annotations

import time

import pytest

from tests.support.format_decoding import _json, _json_reason


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
