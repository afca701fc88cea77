"""InfluxDB line protocol as input, for senders that already speak it (Telegraf, InfluxDB client libraries).

    measurement[,tag=value...] field=value[,field=value...] [timestamp]

One reading per line; blank lines and lines starting with `#` are skipped. Escaping follows the official
rules, and is the inverse of `gateway.sinks.lineprotocol.LineEncoder`:

* measurement: `\\,` `\\ ` `\\\\`; tag keys and values: `\\,` `\\=` `\\ ` `\\\\`; field keys: those and `\\"`;
  string field values: `\\"` `\\\\` (a string may span lines). A backslash before any other character
  is a literal backslash.
* field values: floats (`1`, `-1.5`, `1e+16`), integers (`12i`, int64), unsigned (`12u`, uint64), booleans
  (`t T true True TRUE f F false False FALSE`), double-quoted strings. Integers and unsigned are stored as
  floats (exact up to 2**53); strings are kept whatever `context.keep_strings` says, since the sender typed
  them explicitly. NaN and infinity do not exist in line protocol; a float out of range is an error.
* the timestamp is integer nanoseconds (no precision parameter); none -> the receive time,
  `time_from_device=False`.

The line's measurement is used, not `context.measurement`: a sender speaking line protocol names its
measurements. The tag `device`, if present, must equal `context.device` (the topic's), else the payload is
rejected with `device_mismatch`; it is then dropped from the tags, since the reading carries the device.
A repeated tag or field key: the last one wins, as in InfluxDB. Fields then go through `select_fields`.

Rejections: `invalid_line_protocol` (detail names the line number), `device_mismatch`, `empty_metrics`
(no line, or a line whose fields were all filtered out), `invalid_name` (a measurement longer than 256
characters or unprintable, e.g. with a tab), `too_many_readings`.
"""

from __future__ import annotations

import math
import re

from gateway.errors import PayloadRejected
from gateway.ingest.formats.base import DecodeContext
from gateway.ingest.formats.fields import select_fields
from gateway.ingest.formats.identity import content_id
from gateway.model import FieldValue, Reading
from gateway.reasons import Reason

_MAX_READINGS_PER_PAYLOAD = 10_000
_MAX_NAME_LENGTH = 256  # gateway.ingest.validate.MAX_NAME_LENGTH, for the measurement

_MEASUREMENT = re.compile(r"(?:[^\\, \n]|\\[^\n])+")
_KEY = re.compile(r"(?:[^\\,= \n]|\\[^\n])+")  # tag keys, tag values, field keys
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_BARE = re.compile(r"[^, \n\r]+")
_SPACES = re.compile(r" +")
# Numbers are ASCII digits only, as InfluxDB parses them; int() and float() would read any Unicode digit.
_TIMESTAMP = re.compile(r"-?\d+", re.ASCII)
_LINE_END = re.compile(r"[ \t\r]*(?:\n|\Z)")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+i", re.ASCII)
_UNSIGNED = re.compile(r"\d+u", re.ASCII)
_BOOLS = {
    **dict.fromkeys(("t", "T", "true", "True", "TRUE"), True),
    **dict.fromkeys(("f", "F", "false", "False", "FALSE"), False),
}

_UNESCAPE_MEASUREMENT = re.compile(r"\\([, \\])")
_UNESCAPE_TAG = re.compile(r"\\([,= \\])")
_UNESCAPE_FIELD_KEY = re.compile(r'\\([,= \\"])')
_UNESCAPE_STRING = re.compile(r'\\(["\\])')

_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def _unescape(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub(r"\1", text) if "\\" in text else text


class _LineError(Exception):
    def __init__(self, what: str, column: int) -> None:
        super().__init__(what)
        self.what = what
        self.column = column


def decode(payload: bytes, context: DecodeContext) -> list[Reading]:
    """Bytes -> one reading per line, or PayloadRejected with a stable reason."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadRejected(Reason.INVALID_LINE_PROTOCOL, f"not UTF-8 at byte {exc.start}") from None
    readings: list[Reading] = []
    pos, line_no, end = 0, 1, len(text)
    while pos < end:
        blank = _LINE_END.match(text, pos)
        if blank is not None:  # an empty or whitespace-only line
            pos, line_no = blank.end(), line_no + 1
            continue
        if text.startswith("#", pos):
            newline = text.find("\n", pos)
            pos, line_no = (end if newline < 0 else newline + 1), line_no + 1
            continue
        start = pos
        try:
            reading, pos, newlines = _line(text, pos, context)
        except _LineError as exc:
            raise PayloadRejected(
                Reason.INVALID_LINE_PROTOCOL, f"line {line_no}, column {exc.column - start + 1}: {exc.what}"
            ) from None
        except PayloadRejected as exc:
            raise PayloadRejected(exc.reason, f"line {line_no}: {exc.detail}") from None
        readings.append(reading)
        if len(readings) > _MAX_READINGS_PER_PAYLOAD:
            raise PayloadRejected(
                Reason.TOO_MANY_READINGS, f"more than {_MAX_READINGS_PER_PAYLOAD} lines in one payload"
            )
        line_no += 1 + newlines
    if not readings:
        raise PayloadRejected(Reason.EMPTY_METRICS, "no line in the payload")
    return readings


def _line(text: str, pos: int, context: DecodeContext) -> tuple[Reading, int, int]:
    """Parses the line starting at pos; returns the reading, where the next line starts, newlines in strings."""
    match = _MEASUREMENT.match(text, pos)
    if match is None:
        raise _LineError("expected a measurement", pos)
    measurement = _unescape(_UNESCAPE_MEASUREMENT, match.group())
    if len(measurement) > _MAX_NAME_LENGTH or not measurement.isprintable():
        # The validator checks field and tag names, not the measurement: a format that takes it from the
        # payload checks it as a name (a tab or NUL in it would reach the stores, unprintable).
        raise PayloadRejected(Reason.INVALID_NAME, f"measurement {measurement[:64]!r} is too long or unprintable")
    pos = match.end()

    tags: dict[str, str] = {}
    while text.startswith(",", pos):
        key, pos = _token(text, pos + 1, "tag key")
        if not text.startswith("=", pos):
            raise _LineError(f"expected '=' after tag key {key[:64]!r}", pos)
        value, pos = _token(text, pos + 1, "tag value")
        tags[_unescape(_UNESCAPE_TAG, key)] = _unescape(_UNESCAPE_TAG, value)

    spaces = _SPACES.match(text, pos)
    if spaces is None:
        raise _LineError("expected a space before the fields", pos)
    pos = spaces.end()

    fields: dict[str, FieldValue] = {}
    newlines = 0
    while True:
        key, pos = _token(text, pos, "field key")
        if not text.startswith("=", pos):
            raise _LineError(f"expected '=' after field key {key[:64]!r}", pos)
        name = _unescape(_UNESCAPE_FIELD_KEY, key)
        pos += 1
        if text.startswith('"', pos):
            string = _STRING.match(text, pos)
            if string is None:
                raise _LineError(f"unterminated string in field {name[:64]!r}", pos)
            raw = string.group(1)
            newlines += raw.count("\n")
            fields[name] = _unescape(_UNESCAPE_STRING, raw)
            pos = string.end()
        else:
            bare = _BARE.match(text, pos)
            if bare is None:
                raise _LineError(f"expected a value for field {name[:64]!r}", pos)
            fields[name] = _value(bare.group(), name, pos)
            pos = bare.end()
        if not text.startswith(",", pos):
            break
        pos += 1

    time_ns, from_device = context.received_at_ns, False
    line_end = _LINE_END.match(text, pos)
    if line_end is None:
        spaces = _SPACES.match(text, pos)
        if spaces is None:
            raise _LineError("expected a space before the timestamp", pos)
        pos = spaces.end()
        stamp = _TIMESTAMP.match(text, pos)
        if stamp is None:
            raise _LineError("expected an integer timestamp in nanoseconds", pos)
        time_ns, from_device = int(stamp.group()), True
        if not _INT64_MIN <= time_ns <= _INT64_MAX:
            raise _LineError("timestamp out of the int64 range", pos)
        pos = stamp.end()
        line_end = _LINE_END.match(text, pos)
        if line_end is None:
            raise _LineError("unexpected text after the timestamp", pos)

    device = tags.pop("device", None)
    if device is not None and device != context.device:
        raise PayloadRejected(
            Reason.DEVICE_MISMATCH, f"tag device={device[:128]!r} is not the topic's device {context.device!r}"
        )
    fields = select_fields(fields, context)
    if not fields:
        raise PayloadRejected(Reason.EMPTY_METRICS, "every field was filtered out")
    reading_id = content_id(context.device, time_ns, fields, (measurement, tags))
    reading = Reading(context.device, measurement, time_ns, fields, tags, reading_id, None, from_device)
    return reading, line_end.end(), newlines


def _token(text: str, pos: int, what: str) -> tuple[str, int]:
    match = _KEY.match(text, pos)
    if match is None:
        raise _LineError(f"expected a {what}", pos)
    return match.group(), match.end()


def _value(token: str, name: str, pos: int) -> FieldValue:
    boolean = _BOOLS.get(token)
    if boolean is not None:
        return boolean
    last = token[-1]
    if last == "i" and _INTEGER.fullmatch(token):
        integer = int(token[:-1])
        if not _INT64_MIN <= integer <= _INT64_MAX:
            raise _LineError(f"integer field {name[:64]!r} is out of the int64 range", pos)
        return float(integer)
    if last == "u" and _UNSIGNED.fullmatch(token):
        unsigned = int(token[:-1])
        if unsigned > _UINT64_MAX:
            raise _LineError(f"unsigned field {name[:64]!r} is out of the uint64 range", pos)
        return float(unsigned)
    if _FLOAT.fullmatch(token):
        number = float(token)
        if not math.isfinite(number):
            raise _LineError(f"float field {name[:64]!r} is out of range", pos)
        return number
    raise _LineError(f"field {name[:64]!r} has an invalid value {token[:64]!r}", pos)
