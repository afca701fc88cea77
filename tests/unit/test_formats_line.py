"""The line protocol format: parsing, timestamps, selected fields, rejections with their line numbers, and the
sink's encoder output decoding back (hypothesis).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.formats import line as lineformat
from gateway.ingest.formats.identity import content_id
from gateway.model import Reading
from gateway.sinks.lineprotocol import LineEncoder
from tests.support.format_decoding import NS, RECEIVED, _ctx, _line, _line_error


@pytest.mark.parametrize(
    ("text", "measurement", "tags", "fields"),
    [
        pytest.param("cpu v=1", "cpu", {}, {"v": 1.0}, id="minimal"),
        pytest.param(r"my\ cpu\,x v=1", "my cpu,x", {}, {"v": 1.0}, id="measurement-escapes"),
        pytest.param("a=b v=1", "a=b", {}, {"v": 1.0}, id="measurement-equals-unescaped"),
        pytest.param(r"cpu,t\ k\,\==v\ a\,\=l v=1", "cpu", {"t k,=": "v a,=l"}, {"v": 1.0}, id="tag-escapes"),
        pytest.param(r"cpu,path=C:\dir v=1", "cpu", {"path": r"C:\dir"}, {"v": 1.0}, id="lone-backslash-literal"),
        pytest.param(r"cpu,path=a\\ v=1", "cpu", {"path": "a\\"}, {"v": 1.0}, id="escaped-backslash"),
        pytest.param(r"cpu f\ k\,\=\"=1", "cpu", {}, {'f k,="': 1.0}, id="field-key-escapes"),
        pytest.param(r'cpu s="a \"q\" \\ b"', "cpu", {}, {"s": 'a "q" \\ b'}, id="string-escapes"),
        pytest.param('cpu s="a,b c=d"', "cpu", {}, {"s": "a,b c=d"}, id="string-with-separators"),
        pytest.param('cpu s="two\nlines"', "cpu", {}, {"s": "two\nlines"}, id="string-with-newline"),
        pytest.param(
            "cpu i=12i,n=-3i,u=12u,f=-1.5e3,g=1.,h=.5,e=1e+16",
            "cpu",
            {},
            {"i": 12.0, "n": -3.0, "u": 12.0, "f": -1500.0, "g": 1.0, "h": 0.5, "e": 1e16},
            id="numbers",
        ),
        pytest.param(
            "cpu a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE",
            "cpu",
            {},
            {
                "a": True,
                "b": True,
                "c": True,
                "d": True,
                "e": True,
                "f": False,
                "g": False,
                "h": False,
                "i": False,
                "j": False,
            },
            id="bools",
        ),
        pytest.param("cpu,device=dev,site=a v=1", "cpu", {"site": "a"}, {"v": 1.0}, id="device-tag-matches"),
        pytest.param("cpu v=1,v=2", "cpu", {}, {"v": 2.0}, id="duplicate-field-last-wins"),
    ],
)
def test_line_parsing(text: str, measurement: str, tags: dict[str, str], fields: dict[str, Any]) -> None:
    (reading,) = _line(text)
    assert reading.device == "dev"
    assert reading.measurement == measurement
    assert reading.tags == tags
    assert reading.fields == fields
    assert [type(v) for v in reading.fields.values()] == [type(v) for v in fields.values()]
    assert (reading.time_ns, reading.time_from_device) == (RECEIVED, False)


def test_line_timestamps_and_multiple_lines() -> None:
    text = "# a comment\ncpu v=1 1716926667000000000\r\n\n   \ncpu,host=h v=2 -5   \nmem free=3\n"
    readings = _line(text)
    assert [(r.measurement, r.time_ns, r.time_from_device) for r in readings] == [
        ("cpu", 1_716_926_667 * NS, True),
        ("cpu", -5, True),
        ("mem", RECEIVED, False),
    ]
    assert readings[1].tags == {"host": "h"}
    assert readings[0].reading_id == content_id("dev", 1_716_926_667 * NS, {"v": 1.0}, ("cpu", {}))
    # Equal values at one instant in another series are another reading, not a duplicate.
    same_values = _line("cpu,host=a v=1 1\ncpu,host=b v=1 1\nmem v=1 1")
    assert len({r.reading_id for r in same_values}) == 3


def test_line_select_fields() -> None:
    (reading,) = _line("cpu a=1,b=2,c=3", _ctx(exclude=("b",), rename={"c": "see"}))
    assert reading.fields == {"a": 1.0, "see": 3.0}
    assert _line_error("cpu b=2", _ctx(exclude=("b",))).reason == "empty_metrics"


@pytest.mark.parametrize(
    ("text", "reason", "line_no"),
    [
        pytest.param("cpu,device=other v=1", "device_mismatch", 1, id="device-mismatch"),
        pytest.param("cpu v=1\ncpu,device=x v=1", "device_mismatch", 2, id="device-mismatch-line2"),
        pytest.param("cpu", "invalid_line_protocol", 1, id="no-fields"),
        pytest.param("cpu ", "invalid_line_protocol", 1, id="space-no-fields"),
        pytest.param(",t=v v=1", "invalid_line_protocol", 1, id="no-measurement"),
        pytest.param("cpu,t v=1", "invalid_line_protocol", 1, id="tag-without-value"),
        pytest.param("cpu,t= v=1", "invalid_line_protocol", 1, id="empty-tag-value"),
        pytest.param("cpu,=v v=1", "invalid_line_protocol", 1, id="empty-tag-key"),
        pytest.param("cpu v", "invalid_line_protocol", 1, id="field-without-value"),
        pytest.param("cpu v=", "invalid_line_protocol", 1, id="empty-field-value"),
        pytest.param("cpu =1", "invalid_line_protocol", 1, id="empty-field-key"),
        pytest.param("cpu v=1,", "invalid_line_protocol", 1, id="trailing-comma"),
        pytest.param('cpu s="open', "invalid_line_protocol", 1, id="unterminated-string"),
        pytest.param("cpu v=abc", "invalid_line_protocol", 1, id="bare-word"),
        pytest.param("cpu v=NaN", "invalid_line_protocol", 1, id="nan"),
        pytest.param("cpu v=inf", "invalid_line_protocol", 1, id="inf"),
        pytest.param("cpu v=1e309", "invalid_line_protocol", 1, id="float-overflow"),
        pytest.param("cpu v=9223372036854775808i", "invalid_line_protocol", 1, id="int64-overflow"),
        pytest.param("cpu v=-1u", "invalid_line_protocol", 1, id="negative-unsigned"),
        pytest.param("cpu v=18446744073709551616u", "invalid_line_protocol", 1, id="uint64-overflow"),
        pytest.param("cpu v=1.5i", "invalid_line_protocol", 1, id="float-with-i"),
        pytest.param("cpu v=1 12.5", "invalid_line_protocol", 1, id="float-timestamp"),
        pytest.param("cpu v=1 123 456", "invalid_line_protocol", 1, id="text-after-timestamp"),
        pytest.param("cpu v=1 99999999999999999999", "invalid_line_protocol", 1, id="timestamp-overflow"),
        pytest.param("cpu v=1\nmem\ndisk v=2", "invalid_line_protocol", 2, id="bad-second-line"),
        pytest.param('cpu s="a\nb"\nbad', "invalid_line_protocol", 3, id="line-count-after-multiline-string"),
        pytest.param(b"cpu v=1\n\xff", "invalid_line_protocol", None, id="not-utf8"),
        pytest.param("", "empty_metrics", None, id="empty"),
        pytest.param("# only a comment\n\n", "empty_metrics", None, id="only-comments"),
    ],
)
def test_line_rejections(text: str | bytes, reason: str, line_no: int | None) -> None:
    error = _line_error(text)
    assert error.reason == reason
    if line_no is not None:
        assert error.detail.startswith(f"line {line_no}")


def test_line_too_many_readings() -> None:
    assert _line_error("cpu v=1\n" * 10_001).reason == "too_many_readings"


_names = st.text(st.characters(codec="utf-8", exclude_characters="\n"), min_size=1, max_size=12)
# A leading '#' would read as a comment; an unprintable measurement is rejected (invalid_name).
_measurements = _names.filter(lambda s: not s.startswith("#") and s.isprintable())
_tag_keys = _names.filter(lambda s: s != "device")
_values = st.floats(allow_nan=False, allow_infinity=False) | st.booleans() | st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    device=_names,
    measurement=_measurements,
    tags=st.dictionaries(_tag_keys, _names, max_size=4),
    fields=st.dictionaries(_names, _values, min_size=1, max_size=5),
    time_ns=st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_encoder_output_decodes_back(
    device: str, measurement: str, tags: dict[str, str], fields: dict[str, float | bool | str], time_ns: int
) -> None:
    original = Reading(device, measurement, time_ns, fields, tags, "id")
    encoded = LineEncoder().encode([original, original._replace(time_ns=0)])
    first, second = lineformat.decode(encoded, _ctx(device))
    assert (first.device, first.measurement, first.tags, first.fields, first.time_ns) == (
        device,
        measurement,
        tags,
        fields,
        time_ns,
    )
    assert first.time_from_device is True
    assert second.time_ns == 0
