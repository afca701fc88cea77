"""A chunk of readings as the journal stores it (a JSON array of arrays), and read back from a damaged one:
every reading that parses whole, the rest dropped."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from gateway.model import Reading, new_tuple

_READING_START = re.compile(r"[\[,]\[")  # where a reading can start in a chunk's JSON array of arrays
_JSON = json.JSONDecoder()
_FIELDS = len(Reading._fields)


def encode_readings(readings: Sequence[Reading]) -> bytes:
    """The journal's encoding of a chunk: a JSON array of readings, each an array of its fields."""
    return orjson.dumps([list(r) for r in readings])


def decode_chunk(blob: bytes) -> list[Reading]:
    """A sound chunk's readings, fast (a row of every field becomes a Reading in C); a damaged chunk raises
    orjson.JSONDecodeError, TypeError or ValueError, and `decode_readings` reads what it can of it."""
    return [new_tuple(Reading, row) if len(row) == _FIELDS else Reading(*row) for row in orjson.loads(blob)]


def decode_readings(blob: bytes) -> tuple[list[Reading], bool]:
    """A chunk's readings and True; for a damaged chunk, every reading that parses whole, and False."""
    try:
        readings = [_as_reading(row) for row in orjson.loads(blob)]
    except (orjson.JSONDecodeError, TypeError, ValueError):
        pass
    else:
        if all(r is not None for r in readings):
            return [r for r in readings if r is not None], True
    return list(readings_in(blob)), False


def readings_in(blob: bytes) -> Iterator[Reading]:
    """Resynchronises on every place a reading could start. Bytes that are not UTF-8 become lone surrogates,
    which no real reading holds (orjson refuses to write them), so a reading touched by damage is dropped."""
    text = blob.decode("utf-8", errors="surrogateescape")
    resume = 0
    for match in _READING_START.finditer(text):
        start = match.start() + 1
        if start < resume:
            continue
        try:
            value, end = _JSON.raw_decode(text, start)
        except ValueError:
            continue
        reading = _as_reading(value)
        if reading is not None:
            yield reading
            resume = end


def _as_reading(row: Any) -> Reading | None:
    """A Reading if `row` has the shape the journal writes (journal._encode; older journals wrote 6 values)."""
    if not isinstance(row, list) or not 6 <= len(row) <= len(Reading._fields):
        return None
    device, measurement, time_ns, fields, tags, reading_id, *rest = row
    if not (isinstance(fields, dict) and isinstance(tags, dict) and is_int(time_ns)):
        return None
    if not all(_clean_text(text) for text in (device, measurement, reading_id, *fields, *tags, *tags.values())):
        return None
    if not all(isinstance(v, bool | int | float) or _clean_text(v) for v in fields.values()):
        return None
    seq, from_device = [*rest, None, True][:2]
    if not (seq is None or is_int(seq)) or not isinstance(from_device, bool):
        return None
    return Reading(*row)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _clean_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: a byte that was not UTF-8
        return False
    return True
