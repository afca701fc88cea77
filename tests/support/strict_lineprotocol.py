"""A strict reader of InfluxDB line protocol for tests: text -> points as InfluxDB reads them, or AssertionError.

It follows InfluxDB's rules (a measurement ends at an unescaped comma or space; tag keys, tag values and field
keys at an unescaped comma, equals sign or space; a line at a newline outside a string), and is stricter where
the gateway's encoder must be canonical: every backslash outside a string escapes a character that needs it
there (`\\,` `\\ ` `\\\\` in a measurement, also `\\=` in tags, also `\\"` in field keys), a newline or carriage
return can only be inside a string, a key appears once, and integers (`12i`) never occur.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from gateway.model import FieldValue

MEASUREMENT_ESCAPES = ", \\"
TAG_ESCAPES = ",= \\"
FIELD_KEY_ESCAPES = ',= \\"'
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_BOOLS = {"t": True, "T": True, "true": True, "True": True, "TRUE": True}
_BOOLS |= {"f": False, "F": False, "false": False, "False": False, "FALSE": False}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Point(NamedTuple):
    measurement: str
    tags: tuple[tuple[str, str], ...]  # in the order written
    fields: dict[str, FieldValue]
    time_ns: int


def _token(text: str, i: int, stops: str, escapes: str, what: str) -> tuple[str, int]:
    out: list[str] = []
    while i < len(text):
        char = text[i]
        if char == "\\":
            assert i + 1 < len(text), f"{what}: dangling backslash in {text!r}"
            assert text[i + 1] in escapes, f"{what}: backslash before {text[i + 1]!r} in {text!r}"
            out.append(text[i + 1])
            i += 2
            continue
        if char in stops:
            break
        assert char not in "\n\r", f"{what}: raw line break in {text!r}"
        out.append(char)
        i += 1
    token = "".join(out)
    assert token, f"empty {what} at {i} in {text!r}"
    return token, i


def _expect(text: str, i: int, char: str) -> int:
    assert i < len(text) and text[i] == char, f"{char!r} expected at {i} in {text!r}"
    return i + 1


def _string(text: str, i: int) -> tuple[str, int]:
    i = _expect(text, i, '"')
    out: list[str] = []
    while True:
        assert i < len(text), f"unterminated string in {text!r}"
        char = text[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
        else:
            assert char != "\\", f"lone backslash in a string in {text!r}"
            out.append(char)
            i += 1


def _value(raw: str, text: str) -> FieldValue:
    if raw in _BOOLS:
        return _BOOLS[raw]
    assert not raw.endswith(("i", "u")), f"integer field {raw!r}: the encoder writes floats only, in {text!r}"
    assert _FLOAT.fullmatch(raw), f"not a float: {raw!r} in {text!r}"
    return float(raw)


def parse_point(text: str, i: int = 0) -> tuple[Point, int]:
    """One point starting at `i`; returns it and the index after it (at a newline or the end)."""
    measurement, i = _token(text, i, ", \n", MEASUREMENT_ESCAPES, "measurement")
    assert not measurement.startswith("#"), f"a line starting with '#' is a comment: {text!r}"
    tags: list[tuple[str, str]] = []
    while i < len(text) and text[i] == ",":
        key, i = _token(text, i + 1, ",= \n", TAG_ESCAPES, "tag key")
        i = _expect(text, i, "=")
        value, i = _token(text, i, ",= \n", TAG_ESCAPES, "tag value")
        assert key not in dict(tags), f"tag {key!r} twice in {text!r}"
        tags.append((key, value))
    i = _expect(text, i, " ")
    fields: dict[str, FieldValue] = {}
    while True:
        key, i = _token(text, i, ",= \n", FIELD_KEY_ESCAPES, "field key")
        i = _expect(text, i, "=")
        assert key not in fields, f"field {key!r} twice in {text!r}"
        if i < len(text) and text[i] == '"':
            fields[key], i = _string(text, i)
        else:
            end = i
            while end < len(text) and text[end] not in ", \n":
                end += 1
            fields[key] = _value(text[i:end], text)
            i = end
        if i < len(text) and text[i] == ",":
            i += 1
            continue
        break
    i = _expect(text, i, " ")
    end = text.find("\n", i)
    end = len(text) if end < 0 else end
    stamp = text[i:end]
    assert re.fullmatch(r"-?\d+", stamp), f"bad timestamp {stamp!r} in {text!r}"
    time_ns = int(stamp)
    assert _INT64_MIN <= time_ns <= _INT64_MAX, f"timestamp beyond int64 in {text!r}"
    return Point(measurement, tuple(tags), fields, time_ns), end


def parse_lines(text: str) -> list[Point]:
    """Every point of a request body (lines joined by newlines; no comments or blank lines expected)."""
    points = []
    i = 0
    while True:
        point, i = parse_point(text, i)
        points.append(point)
        if i == len(text):
            return points
        i = _expect(text, i, "\n")
