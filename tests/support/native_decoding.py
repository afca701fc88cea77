"""Decoding native payloads in the unit tests (tests/unit/test_native_*.py): one device, one receive time, and
the reason code of a rejection.
"""

from __future__ import annotations

import calendar
import json
from typing import Any

import pytest

from gateway.errors import PayloadRejected
from gateway.ingest.formats.native import decode
from gateway.model import Reading

DEVICE = "boiler-17"
MEASUREMENT = "telemetry"
RECEIVED = 1_700_000_000_123_456_789  # an arbitrary receive time, distinct from every device time below
NS = 1_000_000_000

# 2026-11-27T10:15:00Z; the sample file pairs it with 1795774500 ("ts": 1795774500.25 is 10:15:00.250Z).
BASE_S = calendar.timegm((2026, 11, 27, 10, 15, 0))
BASE_NS = BASE_S * NS


def _decode(payload: bytes | dict[str, Any] | list[Any], device: str = DEVICE) -> list[Reading]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode(raw, device, MEASUREMENT, RECEIVED)


def _reason(payload: bytes | dict[str, Any] | list[Any], device: str = DEVICE) -> str:
    with pytest.raises(PayloadRejected) as info:
        _decode(payload, device)
    assert info.value.detail  # a human explanation always comes with the code
    return info.value.reason
