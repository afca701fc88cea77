"""Bare values, as ESPHome and many other firmwares publish them: one value per topic, no JSON around it.

`37.5`, `-3`, `1e3` -> float; `ON`/`OFF`, `true`/`false`, `open`/`closed` (any case) -> bool; any other text is
a string field when the mapping keeps strings, else rejected ("invalid_value"). The field is named by the
topic's {metric} placeholder (context.topic_metric), the time is the receive time (the payload has none).

Reason codes: invalid_schema (no {metric} in the topic), invalid_value (empty, not UTF-8, or text the mapping
does not keep), non_finite_value (`nan`, `inf`, or a number too large for a double; ESPHome publishes `nan`
for a sensor without a reading).
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

# Deliberately narrower than float(): no "1_000", no "0x1p3", no "nan"/"inf" (those are rejected on their own), and
# ASCII digits only (float() also reads Arabic-Indic and other Unicode digits).
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_BOOLS = {"on": True, "off": False, "true": True, "false": False, "open": True, "closed": False}


def parse_value(text: str, keep_strings: bool) -> FieldValue:
    """One bare value -> float, bool or (when kept) str; PayloadRejected otherwise."""
    text = text.strip()
    if not text:
        raise PayloadRejected(Reason.INVALID_VALUE, "empty payload")
    if _NUMBER.fullmatch(text):
        number = float(text)
        if not math.isfinite(number):
            raise PayloadRejected(Reason.NON_FINITE_VALUE, f"{text[:64]!r} does not fit a double")
        return number
    if _NON_FINITE.fullmatch(text):
        raise PayloadRejected(Reason.NON_FINITE_VALUE, f"{text!r} is NaN or infinite")
    boolean = _BOOLS.get(text.lower())
    if boolean is not None:
        return boolean
    if keep_strings:
        return text
    raise PayloadRejected(Reason.INVALID_VALUE, f"{text[:64]!r} is not a number or a boolean, and strings are not kept")


def decode(payload: bytes, context: DecodeContext) -> list[Reading]:
    """Bytes -> one reading (none if the mapping's include/exclude filter the field out), or PayloadRejected."""
    metric = context.topic_metric
    if not metric:
        raise PayloadRejected(Reason.INVALID_SCHEMA, "a bare value needs a {metric} placeholder in the topic")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadRejected(Reason.INVALID_VALUE, "payload is not UTF-8 text") from None
    value = parse_value(text, context.keep_strings)
    fields = select_fields({metric: value}, context)
    if not fields:
        return []
    time_ns = context.received_at_ns
    reading_id = content_id(context.device, time_ns, fields)
    return [Reading(context.device, context.measurement, time_ns, fields, {}, reading_id, None, False)]
