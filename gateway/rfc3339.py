"""Times as the gateway writes them for people and for other programs: RFC 3339, UTC, `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(time_ns: int) -> str:
    """Epoch nanoseconds as 2024-06-10T06:13:20.123Z: milliseconds, or as many digits as the time needs (up to
    nanoseconds). Raises OverflowError, OSError or ValueError for a time outside years 1 to 9999."""
    seconds, rest = divmod(time_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if rest % 1_000_000 == 0:
        return f"{stamp}.{rest // 1_000_000:03d}Z"
    if rest % 1000 == 0:
        return f"{stamp}.{rest // 1000:06d}Z"
    return f"{stamp}.{rest:09d}Z"


def rfc3339_ms(time_ns: int) -> str:
    """To the millisecond (truncated)."""
    return rfc3339(time_ns // 1_000_000 * 1_000_000)
