"""Durations as people write them in rule files ("30s", "5m", "1h30m", "250ms") <-> integer nanoseconds."""

from __future__ import annotations

import re

_UNIT_NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(value: object) -> int:
    """'1h30m' -> ns. A bare number is refused: '5' could mean seconds or minutes, and a wrong guess is silent."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"a duration is a string with a unit, like '30s', '5m' or '1h', got {value!r}")
    text = value.strip()
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"not a duration: {value!r}; use a number and a unit (ms, s, m, h, d), like '30s' or '1h30m'")
    total = 0.0
    for number, unit in _PART.findall(text):
        total += float(number) * _UNIT_NS[unit]
    return round(total)


def format_duration(ns: int) -> str:
    """ns -> the shortest exact form: 90 s -> '1m30s', 0 -> '0s'."""
    if ns == 0:
        return "0s"
    parts = []
    rest = ns
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNIT_NS[unit]
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    if rest:
        parts.append(f"{rest}ns")
    return "".join(parts)
