"""Native timestamps: RFC 3339 text, epoch numbers by magnitude, and the receive time when there is none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import PayloadRejected
from gateway.ingest.formats.timestamps import epoch_to_ns, parse_rfc3339, to_ns
from tests.support.native_decoding import BASE_NS, BASE_S, NS, RECEIVED, _decode, _reason


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


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59),
    st.integers(0, 999),
)
def test_rfc3339_agrees_with_datetime_arithmetic(local: datetime, offset_min: int, extra_ns: int) -> None:
    """The parser does its own calendar arithmetic: every instant, zone and fraction as datetime computes it."""
    zone = timezone(timedelta(minutes=offset_min))
    sign, minutes = ("-" if offset_min < 0 else "+"), abs(offset_min)
    clock = f"{local.year:04d}-{local:%m-%dT%H:%M:%S}.{local.microsecond:06d}{extra_ns:03d}"
    text = f"{clock}{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    delta = local.replace(tzinfo=zone) - datetime(1970, 1, 1, tzinfo=UTC)
    expected = (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000 + extra_ns
    assert parse_rfc3339(text) == expected


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
        pytest.param("2026-11-27T10:15:61Z", id="second-61"),
        pytest.param("0000-01-01T00:00:00Z", id="year-0"),
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
