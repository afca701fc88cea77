"""ThingsBoard device telemetry: `{"ts": ms, "values": {...}}`, an array of those, or a flat `{"temperature": 1}`.

* An object with both "ts" and "values" is timestamped: ts is epoch milliseconds (ThingsBoard's unit, never
  guessed by magnitude), "values" holds the fields; any other key next to them is rejected. Any other object is
  the flat form, timed at the receive time (time_from_device False).
* An array may mix both forms; each element becomes one reading.
* Values: numbers -> float, booleans stay booleans, null is skipped, strings (also numeric-looking ones: no type
  casting) are kept only when context.keep_strings, else skipped. Arrays are kept as their compact JSON text
  when strings are kept, else skipped.
* Nested objects are flattened, joining keys with context.separator: {"ENERGY": {"Power": 1}} -> ENERGY_Power.
  A flattened name that collides with another field is rejected.
* Field names must be non-empty; include / exclude / rename apply to the flattened names. An element whose
  fields are all skipped or filtered out yields no reading; a payload that yields none is empty_metrics.

Reason codes: malformed_json, invalid_schema (not an object or array, empty or colliding field names, values not
an object), too_deep (nesting deeper than context.max_depth), invalid_timestamp (ts not a number),
non_finite_value (NaN, infinities, numbers too large for a double), empty_metrics (empty payload object or
array, or no value left in the whole payload), too_many_readings.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from pydantic_core import from_json

from gateway.errors import PayloadRejected
from gateway.ingest.formats.base import DecodeContext, json_syntax_rejection
from gateway.ingest.formats.fields import finite_float, select_fields
from gateway.ingest.formats.identity import content_id
from gateway.model import FieldValue, Reading
from gateway.reasons import Reason

_MAX_MESSAGES = 10_000
_WHOLE_FLOAT = 2.0**53  # every double at least this large is a whole number


def decode(payload: bytes, context: DecodeContext) -> list[Reading]:
    """Bytes -> readings, or PayloadRejected with a stable reason."""
    try:
        document = from_json(payload, allow_inf_nan=True)
    except ValueError as exc:
        raise json_syntax_rejection(str(exc)) from None
    if isinstance(document, dict):
        messages: list[Any] = [document]
    elif isinstance(document, list):
        messages = document
    else:
        raise PayloadRejected(Reason.INVALID_SCHEMA, "telemetry must be a JSON object or an array of objects")
    if not messages:
        raise PayloadRejected(Reason.EMPTY_METRICS, "empty array: no readings")
    if len(messages) > _MAX_MESSAGES:
        raise PayloadRejected(Reason.TOO_MANY_READINGS, f"{len(messages)} readings in one payload")
    readings = []
    for index, message in enumerate(messages):
        reading = _to_reading(message, index, context)
        if reading is not None:
            readings.append(reading)
    if not readings:
        # Accepted without a reading, the message would be neither stored nor dead-lettered: it would vanish.
        raise PayloadRejected(Reason.EMPTY_METRICS, "no numeric, boolean or kept string value in the payload")
    return readings


def _to_reading(message: Any, index: int, context: DecodeContext) -> Reading | None:
    if not isinstance(message, dict):
        raise PayloadRejected(Reason.INVALID_SCHEMA, f"element {index} is not an object")
    if not message:
        raise PayloadRejected(Reason.EMPTY_METRICS, f"element {index} is an empty object")
    if "ts" in message and "values" in message:
        extra = sorted(set(message) - {"ts", "values"})
        if extra:
            raise PayloadRejected(
                Reason.INVALID_SCHEMA, f"element {index}: unexpected key {extra[0][:128]!r} next to ts"
            )
        time_ns, from_device = _ms_to_ns(message["ts"], index), True
        values = message["values"]
        if not isinstance(values, dict):
            raise PayloadRejected(Reason.INVALID_SCHEMA, f"element {index}: values must be an object")
    else:
        time_ns, from_device = context.received_at_ns, False
        values = message
    decoded: dict[str, FieldValue] = {}
    _flatten(values, "", 0, context, decoded)
    fields = select_fields(decoded, context)
    if not fields:
        return None
    reading_id = content_id(context.device, time_ns, fields)
    return Reading(context.device, context.measurement, time_ns, fields, {}, reading_id, None, from_device)


def _ms_to_ns(ts: Any, index: int) -> int:
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise PayloadRejected(
            Reason.INVALID_TIMESTAMP, f"element {index}: ts must be epoch milliseconds, not {ts!r:.64}"
        )
    if isinstance(ts, int):
        return ts * 1_000_000
    if not math.isfinite(ts):
        raise PayloadRejected(Reason.INVALID_TIMESTAMP, f"element {index}: ts is NaN or infinite")
    if abs(ts) >= _WHOLE_FLOAT:  # no fraction to keep, and ts * 1000 could overflow to infinity
        return int(ts) * 1_000_000  # far out of range: the validator rejects it as timestamp_out_of_range
    return round(ts * 1000) * 1000  # float milliseconds, kept to the microsecond


def _flatten(obj: dict[str, Any], prefix: str, depth: int, context: DecodeContext, out: dict[str, FieldValue]) -> None:
    if depth > context.max_depth:
        raise PayloadRejected(Reason.TOO_DEEP, f"{prefix[:128]!r} is nested deeper than max_depth={context.max_depth}")
    for key, value in obj.items():
        if not key:
            raise PayloadRejected(Reason.INVALID_SCHEMA, f"empty field name under {prefix[:128] or 'the top level'!r}")
        name = f"{prefix}{context.separator}{key}" if prefix else key
        if isinstance(value, dict):
            _flatten(value, name, depth + 1, context, out)
            continue
        field = _field_value(value, name, context)
        if field is None:
            continue
        if name in out:
            raise PayloadRejected(Reason.INVALID_SCHEMA, f"two fields end up named {name[:128]!r}")
        out[name] = field


def _field_value(value: Any, name: str, context: DecodeContext) -> FieldValue | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return finite_float(value, name)
    if not context.keep_strings or value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()  # a list
    except orjson.JSONEncodeError:  # an integer beyond 64 bits inside it
        raise PayloadRejected(Reason.INVALID_SCHEMA, f"{name[:128]}: array cannot be kept as JSON text") from None
