"""Input at the parsers' edges, in process: JSON nested past the parser's limit is `too_deep` in every JSON format,
and digits other than ASCII ones are never read as numbers (the stores' side: integration/test_input_fidelity.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from gateway.errors import PayloadRejected
from gateway.ingest.formats import json as json_format
from gateway.ingest.formats import line, native, senml, thingsboard, value
from gateway.ingest.formats.base import DecodeContext
from gateway.ingest.formats.timestamps import parse_rfc3339

# --- parsers (12a, 12b) -----------------------------------------------------------------------------------------

CONTEXT = DecodeContext(device="d", measurement="m", received_at_ns=time.time_ns(), topic_metric="v")


def _reason(decode: Any, payload: bytes) -> str:
    with pytest.raises(PayloadRejected) as info:
        decode(payload)
    return info.value.reason


def _native(payload: bytes) -> Any:
    return native.decode(payload, "d", "m", CONTEXT.received_at_ns)


@pytest.mark.parametrize(
    "decode",
    [
        pytest.param(_native, id="native"),
        pytest.param(lambda p: senml.decode(p, CONTEXT), id="senml"),
        pytest.param(lambda p: thingsboard.decode(p, CONTEXT), id="thingsboard"),
        pytest.param(lambda p: json_format.decode(p, CONTEXT), id="json"),
    ],
)
@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'{"metrics": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}", id="object"),
        pytest.param(b"[" * 5000 + b"]" * 5000, id="array"),
    ],
)
def test_json_nested_beyond_the_parser_limit_is_too_deep_in_every_json_format(decode: Any, payload: bytes) -> None:
    assert _reason(decode, payload) == "too_deep"


ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x0660 + d) for d in range(10)))
FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))


@pytest.mark.parametrize("digits", [ARABIC_INDIC, FULLWIDTH], ids=["arabic-indic", "fullwidth"])
def test_digits_other_than_ascii_are_not_read_as_numbers(digits: dict[int, int]) -> None:
    stamp = "2026-11-27T10:15:00.250Z"
    assert parse_rfc3339(stamp)  # the ASCII spelling is fine
    with pytest.raises(PayloadRejected) as info:
        parse_rfc3339(stamp.translate(digits))
    assert info.value.reason == "invalid_timestamp"
    assert _reason(_native, json.dumps({"ts": stamp.translate(digits), "metrics": {"t": 1}}).encode()) == (
        "invalid_timestamp"
    )
    tasmota = DecodeContext(device="d", measurement="m", received_at_ns=1, timestamp_field="Time")
    local = json.dumps({"Time": "2024-05-28T20:04:27".translate(digits), "t": 1}).encode()
    assert _reason(lambda p: json_format.decode(p, tasmota), local) == "invalid_timestamp"
    assert _reason(lambda p: value.decode(p, CONTEXT), "37.5".translate(digits).encode()) == "invalid_value"
    for text in ("m v=1.5", "m v=15i", "m v=15u", "m v=1 1764238500000000000"):
        translated = text.split("=")[0] + "=" + text.split("=")[1].translate(digits)
        assert _reason(lambda p: line.decode(p, CONTEXT), translated.encode()) == "invalid_line_protocol"
