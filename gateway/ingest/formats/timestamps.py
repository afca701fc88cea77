"""Timestamps as devices send them -> integer nanoseconds since the epoch, without float rounding surprises."""

from __future__ import annotations

import re
from datetime import date

from gateway.errors import PayloadRejected
from gateway.reasons import Reason

# re.ASCII: `\d` would also match Arabic-Indic and every other Unicode digit, which int() then reads as numbers.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_EPOCH_DATE = date(1970, 1, 1)

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
    _, _, _, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    # Plain arithmetic rather than datetime objects (1.4 us a timestamp instead of 3.3); the date, which a fleet
    # repeats all day, is looked up once.
    days = _days_since_epoch(text[:10])
    h, m, s = int(hour), int(minute), int(second)
    if days is None or h > 23 or m > 59 or s > 60:
        raise PayloadRejected(Reason.INVALID_TIMESTAMP, f"ts {text[:64]!r}: not a valid date and time")
    offset_s = 0
    if not zulu:
        if int(off_h) > 23 or int(off_m) > 59:
            raise PayloadRejected(Reason.INVALID_TIMESTAMP, f"ts {text[:64]!r}: offset must be within -23:59..+23:59")
        offset_s = int(off_h) * 3600 + int(off_m) * 60
        if sign == "-":
            offset_s = -offset_s
    whole_seconds = days * 86_400 + h * 3600 + m * 60 + s - offset_s  # s == 60: a leap second, the next one
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    return whole_seconds * 1_000_000_000 + nanos


_DAYS: dict[str, int | None] = {}
_DAYS_MAX = 4096


def _days_since_epoch(date_text: str) -> int | None:
    """'2026-11-27' (already shaped by the pattern) -> days since 1970-01-01, or None for no such day."""
    try:
        return _DAYS[date_text]
    except KeyError:
        pass
    try:
        days: int | None = (date.fromisoformat(date_text) - _EPOCH_DATE).days
    except ValueError:  # a month 13 or a 30 February
        days = None
    if len(_DAYS) >= _DAYS_MAX:  # the dates come from devices: keep the memo bounded
        _DAYS.clear()
    _DAYS[date_text] = days
    return days


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
