"""Native payloads the decoder rejects, each with its reason code and a detail naming what is wrong."""

from __future__ import annotations

import pytest

from gateway.errors import PayloadRejected
from tests.support.native_decoding import DEVICE, _decode, _reason


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
