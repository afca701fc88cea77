"""Line protocol encoding: escaping, tag order, field types, and no way for a name to inject a tag or a point."""

from __future__ import annotations

import re
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.schema import ValidationConfig
from gateway.errors import PayloadRejected
from gateway.ingest.validate import Validator
from gateway.model import FieldValue, Reading
from gateway.sinks.lineprotocol import LineEncoder

T = 1_795_774_500_250_000_000


def reading(
    fields: dict[str, FieldValue] | None = None,
    tags: dict[str, str] | None = None,
    device: str = "boiler-17",
    measurement: str = "telemetry",
    time_ns: int = T,
) -> Reading:
    return Reading(device, measurement, time_ns, {"t": 1.5} if fields is None else fields, tags or {}, "id-1")


def encode_one(r: Reading) -> str:
    return LineEncoder().encode([r]).decode()


# --- hand-checked encodings -------------------------------------------------------------------------------


def test_plain_reading() -> None:
    r = reading({"temperature": 71.5, "pump_on": True}, {"site": "plant-a"})
    assert encode_one(r) == f"telemetry,device=boiler-17,site=plant-a temperature=71.5,pump_on=true {T}"


def test_tags_are_sorted_by_key() -> None:
    r = reading(tags={"zone": "z1", "alpha": "a1", "Beta": "b1", "early": "e1"})
    # Byte order: uppercase before lowercase; `device` takes its place among the others.
    assert encode_one(r) == f"telemetry,Beta=b1,alpha=a1,device=boiler-17,early=e1,zone=z1 t=1.5 {T}"


def test_device_tag_is_always_the_readings_device() -> None:
    r = reading(tags={"device": "evil", "site": "s"})
    assert encode_one(r) == f"telemetry,device=boiler-17,site=s t=1.5 {T}"


def test_device_tag_value_is_escaped() -> None:
    assert encode_one(reading(device="a b,c=d")) == f"telemetry,device=a\\ b\\,c\\=d t=1.5 {T}"


@pytest.mark.parametrize(
    ("measurement", "encoded"),
    [
        pytest.param("my meas", "my\\ meas", id="space"),
        pytest.param("a,b", "a\\,b", id="comma"),
        pytest.param("a=b", "a=b", id="equals-needs-no-escape"),
        pytest.param('a"b', 'a"b', id="quote-needs-no-escape"),
        pytest.param("a\\b", "a\\\\b", id="backslash"),
    ],
)
def test_measurement_escaping(measurement: str, encoded: str) -> None:
    assert encode_one(reading(measurement=measurement)) == f"{encoded},device=boiler-17 t=1.5 {T}"


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        pytest.param("site name", "site\\ name", id="space"),
        pytest.param("a,b", "a\\,b", id="comma"),
        pytest.param("a=b", "a\\=b", id="equals"),
        pytest.param('say "hi"', 'say\\ "hi"', id="quotes"),
        pytest.param("a\\b", "a\\\\b", id="backslash"),
        pytest.param("ends\\", "ends\\\\", id="trailing-backslash"),
        pytest.param("\u00e9t\u00e9", "\u00e9t\u00e9", id="non-ascii"),
    ],
)
def test_tag_and_field_key_escaping(text: str, encoded: str) -> None:
    assert encode_one(reading(tags={"k": text})) == f"telemetry,device=boiler-17,k={encoded} t=1.5 {T}"
    assert encode_one(reading(tags={text: "v"})).startswith(
        f"telemetry,{encoded}=v,device=boiler-17 " if text < "device" else f"telemetry,device=boiler-17,{encoded}=v "
    )
    field_key = encoded.replace('"', '\\"')  # field keys also escape quotes (VictoriaMetrics needs it)
    assert encode_one(reading({text: 1.5})) == f"telemetry,device=boiler-17 {field_key}=1.5 {T}"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        pytest.param("plain", '"plain"', id="plain"),
        pytest.param('say "hi"', '"say \\"hi\\""', id="quotes"),
        pytest.param("a\\b", '"a\\\\b"', id="backslash"),
        pytest.param("ends\\", '"ends\\\\"', id="trailing-backslash"),
        pytest.param("a, b=c d", '"a, b=c d"', id="commas-spaces-equals-are-literal"),
        pytest.param("", '""', id="empty"),
        pytest.param("1.5", '"1.5"', id="number-like-string-stays-a-string"),
        pytest.param("true", '"true"', id="bool-like-string-stays-a-string"),
    ],
)
def test_string_field_escaping(value: str, encoded: str) -> None:
    assert encode_one(reading({"s": value})) == f"telemetry,device=boiler-17 s={encoded} {T}"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        pytest.param(True, "true", id="true"),
        pytest.param(False, "false", id="false"),
        pytest.param(1.0, "1.0", id="whole-float-is-not-an-integer"),
        pytest.param(0.0, "0.0", id="zero"),
        pytest.param(-0.5, "-0.5", id="negative"),
        pytest.param(71.5, "71.5", id="float"),
        pytest.param(0.1, "0.1", id="shortest-repr"),
        pytest.param(1e100, "1e+100", id="large-exponent"),
        pytest.param(1.5e-7, "1.5e-07", id="small-exponent"),
    ],
)
def test_field_value_encoding(value: FieldValue, encoded: str) -> None:
    line = encode_one(reading({"v": value}))
    assert line == f"telemetry,device=boiler-17 v={encoded} {T}"
    assert not encoded.endswith("i")  # an `i` suffix would make InfluxDB store an integer


def test_nanosecond_timestamp_is_exact() -> None:
    assert encode_one(reading(time_ns=T + 1)).endswith(f" {T + 1}")
    assert encode_one(reading(time_ns=-1)).endswith(" -1")


def test_one_line_per_reading() -> None:
    readings = [reading({"t": float(n)}, time_ns=T + n) for n in range(3)]
    assert (
        LineEncoder().encode(readings)
        == (
            f"telemetry,device=boiler-17 t=0.0 {T}\n"
            f"telemetry,device=boiler-17 t=1.0 {T + 1}\n"
            f"telemetry,device=boiler-17 t=2.0 {T + 2}"
        ).encode()
    )
    assert LineEncoder().encode([]) == b""


def test_utf8_bytes() -> None:
    assert LineEncoder().encode([reading({"temp\u00e9rature": "\u00b0C"})]) == (
        f'telemetry,device=boiler-17 temp\u00e9rature="\u00b0C" {T}'.encode()
    )


def test_series_cache_tells_series_apart() -> None:
    encoder = LineEncoder(cache_size=2)
    lines = [
        encoder.line(reading(tags={"site": "a"})),
        encoder.line(reading(tags={"site": "b"})),
        encoder.line(reading(tags={"site": "a"}, device="other")),
        encoder.line(reading(tags={"site": "a"}, measurement="m2")),
        encoder.line(reading(tags={"site": "a"})),  # after the cache was cleared
    ]
    assert [line.split(" ")[0] for line in lines] == [
        "telemetry,device=boiler-17,site=a",
        "telemetry,device=boiler-17,site=b",
        "telemetry,device=other,site=a",
        "m2,device=boiler-17,site=a",
        "telemetry,device=boiler-17,site=a",
    ]


# --- a reference parser -----------------------------------------------------------------------------------


class Point(NamedTuple):
    measurement: str
    tags: list[tuple[str, str]]
    fields: dict[str, FieldValue]
    time_ns: int


_FLOAT = re.compile(r"-?(\d+\.\d*|\d+)(e[+-]?\d+)?")


def _read(line: str, i: int, stops: str) -> tuple[str, int]:
    """Unescape from `i` up to the first unescaped character of `stops` (or the end)."""
    out = []
    while i < len(line):
        char = line[i]
        if char == "\\":
            assert i + 1 < len(line), "dangling backslash"
            out.append(line[i + 1])
            i += 2
        elif char in stops:
            break
        else:
            out.append(char)
            i += 1
    return "".join(out), i


def _expect(line: str, i: int, char: str) -> int:
    assert i < len(line), f"line ended where {char!r} was due: {line!r}"
    assert line[i] == char, f"{char!r} expected at {i}, got {line[i]!r}: {line!r}"
    return i + 1


def _read_string(line: str, i: int) -> tuple[str, int]:
    i = _expect(line, i, '"')
    out = []
    while True:
        assert i < len(line), f"unterminated string: {line!r}"
        char = line[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\":
            assert line[i + 1] in '"\\', f'only \\" and \\\\ are escapes in strings: {line!r}'
            out.append(line[i + 1])
            i += 2
        else:
            out.append(char)
            i += 1


def parse_line(line: str) -> Point:
    """`measurement[,k=v...] field=value[,field=value...] timestamp`, strictly."""
    measurement, i = _read(line, 0, ", ")
    assert measurement
    tags = []
    while line[i] == ",":
        key, i = _read(line, i + 1, ",= ")
        i = _expect(line, i, "=")
        value, i = _read(line, i, ",= ")
        assert key
        assert value
        tags.append((key, value))
    i = _expect(line, i, " ")
    fields: dict[str, FieldValue] = {}
    while True:
        key, i = _read(line, i, ",= ")
        i = _expect(line, i, "=")
        assert key
        assert key not in fields, f"field {key!r} twice: {line!r}"
        if line[i] == '"':
            fields[key], i = _read_string(line, i)
        else:
            start = i
            while line[i] not in ", ":
                i += 1
            raw = line[start:i]
            if raw in ("true", "false"):
                fields[key] = raw == "true"
            else:
                assert _FLOAT.fullmatch(raw), f"not a float: {raw!r}"
                fields[key] = float(raw)
        if line[i] != ",":
            break
        i += 1
    i = _expect(line, i, " ")
    assert re.fullmatch(r"-?\d+", line[i:]), f"bad timestamp {line[i:]!r}"
    return Point(measurement, tags, fields, int(line[i:]))


def test_reference_parser_on_a_hand_written_line() -> None:
    line = 'my\\ m,a\\,b=c\\=d,device=x t=1.5,s="q\\"\\\\",b=false 12'
    assert parse_line(line) == Point("my m", [("a,b", "c=d"), ("device", "x")], {"t": 1.5, "s": 'q"\\', "b": False}, 12)


# --- properties -------------------------------------------------------------------------------------------

SPECIALS = ',= "\\'
DANGEROUS = "\n\r\t\x00\x0b\x0c\x85\u2028"

# Text a name can hold once validated: printable, so no line breaks, but rich in what line protocol treats
# specially, plus multi-byte characters.
NAME_ALPHABET = SPECIALS + "ab_-.#" + "\u00e9\u4e2d\U0001f600"
names = st.text(alphabet=st.sampled_from(NAME_ALPHABET), min_size=1, max_size=8)
field_values = st.one_of(
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=8),
    st.text(alphabet=st.sampled_from(NAME_ALPHABET + "\r\t"), max_size=8),
)
readings_strategy = st.builds(
    Reading,
    device=names,
    measurement=names,
    time_ns=st.integers(-(2**63) + 2, 2**63 - 2),
    fields=st.dictionaries(names, field_values, min_size=1, max_size=5),
    tags=st.dictionaries(st.one_of(names, st.just("device")), names, max_size=5),
    reading_id=st.just("id"),
)


def _check_round_trip(readings: list[Reading], payload: bytes) -> None:
    lines = payload.decode().split("\n")
    assert len(lines) == len(readings), f"{len(readings)} readings became {len(lines)} lines: {payload!r}"
    for r, line in zip(readings, lines, strict=True):
        point = parse_line(line)
        assert point.measurement == r.measurement
        assert [key for key, _ in point.tags] == sorted(key for key, _ in point.tags)
        assert [key for key, _ in point.tags].count("device") == 1
        assert dict(point.tags) == {**{k: v for k, v in r.tags.items() if k != "device"}, "device": r.device}
        assert point.fields == r.fields
        for name, value in r.fields.items():
            assert type(point.fields[name]) is type(value)
        assert point.time_ns == r.time_ns


@settings(max_examples=300, deadline=None, database=None)
@given(readings=st.lists(readings_strategy, min_size=1, max_size=3))
def test_encoding_round_trips(readings: list[Reading]) -> None:
    encoder = LineEncoder(cache_size=3)
    _check_round_trip(readings, encoder.encode(readings))
    _check_round_trip(readings, encoder.encode(readings))  # again, through the series cache


# Anything at all, dangerous characters included: what the validator lets through must still be one point.
# Mostly harmless so that a fair share passes validation and is checked, but often dangerous.
ANY_ALPHABET = SPECIALS + DANGEROUS + "abcdefghijklmnopqrstuvwxyz" * 2
any_text = st.text(alphabet=st.sampled_from(ANY_ALPHABET), max_size=6)
any_name = st.text(alphabet=st.sampled_from(ANY_ALPHABET), min_size=1, max_size=6)
# Ids the default pattern accepts, sometimes followed by what it must not: `$` alone would let "id\n" through.
devices = st.tuples(
    st.sampled_from("aZ0"),
    st.text(alphabet=st.sampled_from("bY9_.:@-"), max_size=5),
    st.sampled_from(["", "", "", "\n", "\r", " x", ","]),
).map("".join)
VALIDATOR = Validator(ValidationConfig())


@settings(max_examples=300, deadline=None, database=None)
@given(
    device=devices,
    fields=st.dictionaries(any_name, st.one_of(st.booleans(), st.floats(-1e9, 1e9), any_text), min_size=1, max_size=3),
    tags=st.dictionaries(any_name, any_name, max_size=3),
)
def test_whatever_passes_validation_is_one_point(
    device: str, fields: dict[str, FieldValue], tags: dict[str, str]
) -> None:
    r = Reading(device, "telemetry", T, fields, tags, "id")
    try:
        VALIDATOR.check_device(device)
        VALIDATOR.check_reading(r, now_ns=T)
    except PayloadRejected:
        return
    _check_round_trip([r], LineEncoder().encode([r]))
