"""Timestamps as devices send them -> integer nanoseconds since the epoch, without float rounding surprises."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from gateway.errors import PayloadRejected
from gateway.reasons import Reason

# re.ASCII: `\d` would also match Arabic-Indic and every other Unicode digit, which int() then reads as numbers.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Epoch numbers are told apart by magnitude: anything below 1e11 is seconds (until the year 5138), below 1e14
# milliseconds, below 1e17 microseconds, else nanoseconds. This is what Telegraf's "auto" precision does too.
_SECONDS_LIMIT = 1e11
_MILLIS_LIMIT = 1e14
_MICROS_LIMIT = 1e17


def parse_rfc3339(text: str) -> int:
    """'2026-11-27T10:15:00.250Z' -> ns. A zone is required: guessing one would silently shift data."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise PayloadRejected(Reason.INVALID_TIMESTAMP, f"ts {text[:64]!r} is not RFC 3339 with a time zone")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zulu, sign, off_h, off_m = match.groups()[6:]
    try:
        if off_m is not None and int(off_m) > 59:
            raise ValueError("offset minutes must be in 00..59")
        offset = timedelta(0) if zulu else timedelta(hours=int(off_h), minutes=int(off_m))
        if sign == "-":
            offset = -offset
        instant = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone(offset))
    except ValueError as exc:
        raise PayloadRejected(Reason.INVALID_TIMESTAMP, f"ts {text[:64]!r}: {exc}") from None
    delta = instant - _EPOCH
    whole_seconds = delta.days * 86_400 + delta.seconds + (1 if second == 60 else 0)  # leap second
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    return whole_seconds * 1_000_000_000 + nanos


def epoch_to_ns(value: int | float) -> int:
    """Epoch seconds / ms / us / ns (by magnitude) -> ns. Float seconds keep microsecond precision."""
    magnitude = abs(value)
    if magnitude < _SECONDS_LIMIT:
        # A double holds a 2026 epoch-seconds value to about 0.2 us; rounding to whole microseconds
        # turns 1795774500.123 into exactly .123000 instead of .122999906.
        return round(value * 1_000_000) * 1000 if isinstance(value, float) else value * 1_000_000_000
    if magnitude < _MILLIS_LIMIT:
        return round(value * 1000) * 1000 if isinstance(value, float) else value * 1_000_000
    if magnitude < _MICROS_LIMIT:
        return round(value * 1000) if isinstance(value, float) else value * 1000
    return round(value) if isinstance(value, float) else value


def to_ns(value: int | float | str) -> int:
    if isinstance(value, str):
        return parse_rfc3339(value)
    return epoch_to_ns(value)
