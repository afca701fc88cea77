"""Decoding JSON and line protocol payloads in the unit tests (tests/unit/test_formats_json*.py,
test_formats_line.py): one decode context, and the reason of a rejection.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import PayloadRejected
from gateway.ingest.formats import json as jsonformat
from gateway.ingest.formats import line as lineformat
from gateway.ingest.formats.base import DecodeContext
from gateway.model import Reading

RECEIVED = 1_700_000_000_123_456_789
NS = 1_000_000_000


def _ctx(device: str = "dev", **kwargs: Any) -> DecodeContext:
    return DecodeContext(device=device, measurement="telemetry", received_at_ns=RECEIVED, **kwargs)


def _json(payload: Any, context: DecodeContext | None = None) -> list[Reading]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return jsonformat.decode(raw, context or _ctx())


def _json_reason(payload: Any, context: DecodeContext | None = None) -> str:
    with pytest.raises(PayloadRejected) as info:
        _json(payload, context)
    assert info.value.detail
    return info.value.reason


def _line(text: str | bytes, context: DecodeContext | None = None) -> list[Reading]:
    raw = text if isinstance(text, bytes) else text.encode()
    return lineformat.decode(raw, context or _ctx())


def _line_error(text: str | bytes, context: DecodeContext | None = None) -> PayloadRejected:
    with pytest.raises(PayloadRejected) as info:
        _line(text, context)
    assert info.value.detail
    return info.value
