"""Logs: JSON lines or readable lines, rate-limited per reason (the correlation id from log line to dead letter:
integration/test_log_correlation.py)."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator

import pytest

from gateway.telemetry.logs import RateLimitFilter, configure


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _record(key: str | None) -> logging.LogRecord:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "msg", None, None)
    if key is not None:
        record.rate_key = key
    return record


def test_rate_limit_is_per_key_and_reports_what_it_suppressed(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    limiter = RateLimitFilter(burst=3, interval_s=10)
    assert [limiter.filter(_record("a")) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.filter(_record("b"))  # another reason has its own budget
    assert all(limiter.filter(_record(None)) for _ in range(10))  # unkeyed lines are never limited
    clock[0] += 10
    first_after = _record("a")
    assert limiter.filter(first_after)
    assert first_after.suppressed == 2  # type: ignore[attr-defined]


def test_json_lines_carry_the_extra_fields(restore_logging: None) -> None:
    out = io.StringIO()
    configure("INFO", "json", out)
    logging.getLogger("gateway.x").info(
        "rejected %s", "m1", extra={"correlation_id": "rej-1", "reason": "malformed_json", "rate_key": "k"}
    )
    line = json.loads(out.getvalue())
    assert line["event"] == "rejected m1"
    assert line["level"] == "info"
    assert line["logger"] == "gateway.x"
    assert (line["correlation_id"], line["reason"]) == ("rej-1", "malformed_json")
    assert "rate_key" not in line
    assert line["timestamp"].endswith("Z")


def test_console_lines_are_readable(restore_logging: None) -> None:
    out = io.StringIO()
    configure("INFO", "console", out)
    logging.getLogger("gateway.x").warning("sink %s failing", "influx", extra={"correlation_id": "r-9"})
    text = out.getvalue()
    assert "sink influx failing" in text
    assert "correlation_id=r-9" in text
    assert not text.lstrip().startswith("{")
