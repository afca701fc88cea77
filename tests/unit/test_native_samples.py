"""The native format against the shared device samples (tests/support/data/devices.jsonl) and their expectations."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.errors import PayloadRejected
from gateway.ingest.formats.native import decode
from gateway.model import Reading
from tests.support import DATA
from tests.support.native_decoding import BASE_NS, BASE_S, DEVICE, MEASUREMENT, RECEIVED, _decode

SAMPLES = DATA / "devices.jsonl"


def test_base_instant_agrees_with_the_sample_file() -> None:
    assert BASE_S == 1_795_774_500


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
