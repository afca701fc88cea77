"""Native reading ids: the payload's id, else device and seq (with the time, across reboots), else the content."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.ingest.formats.native import decode
from tests.support.native_decoding import BASE_S, DEVICE, MEASUREMENT, NS, RECEIVED, _decode


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
