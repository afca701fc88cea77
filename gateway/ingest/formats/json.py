"""Generic JSON telemetry, as zigbee2mqtt, Tasmota and Shelly publish it: bytes -> readings.

The payload is one object (one reading) or an array of objects (one reading each). What becomes a field:

* nested objects are flattened, their keys joined with `context.separator`:
  Tasmota's `{"ENERGY": {"Power": 45}}` -> `ENERGY_Power`; a later key that flattens onto an earlier
  name (`{"a_b": 1, "a": {"b": 2}}`) replaces it, in document order;
* numbers become floats (integers beyond 2**53 lose precision, as in every float store); booleans stay booleans;
* the strings "ON" / "OFF" (any case: zigbee2mqtt's `state`, Tasmota's `POWER`) become booleans;
* other strings, numeric-looking ones included, are kept as string fields only when `context.keep_strings`,
  else skipped;
* lists are skipped, whatever they hold (a list has no stable field names); `null` is skipped;
* then `select_fields` applies the mapping's include / exclude / rename.

The timestamp comes from `context.timestamp_field`, a dotted path (`"Time"`, `"params.ts"`; a key that
itself contains dots is found when it exists literally at the top level). Its value may be RFC 3339 with a
zone, a zone-less local ISO time (`"2024-05-28T20:04:27"`, Tasmota) read in `context.timezone`, or an epoch
number in seconds / ms / us / ns told apart by magnitude. The timestamp is not stored as a field. With no
timestamp_field, or when the object does not have that path, the reading gets the receive time and
`time_from_device=False`. Local times that a DST change makes ambiguous take the first (summer-time)
instant; times skipped by a DST change are read with the offset in force before it (zoneinfo's fold=0).

`context.root` (Shelly's `params`) picks the object the fields come from; timestamp_field and device_field
are paths from the top of the payload all the same. `context.device_field` names the device from the payload:
with a device in the topic too, the two must agree (`device_mismatch`), so a payload cannot claim another
device's identity; without one (a shared topic), the payload's id is the device.

Reading ids are content ids (`identity.content_id`): these devices send neither ids nor sequence numbers.

Rejections (PayloadRejected.reason): `malformed_json`, `non_finite_value` (NaN, Infinity, 1e309),
`too_deep` (nesting deeper than context.max_depth), `invalid_schema` (not an object or an array of objects,
no object at root), `invalid_timestamp`, `too_many_readings`, `empty_metrics` (no field left, or an empty
array), `missing_device`, `invalid_device_id`, `device_mismatch` (device_field).
"""

from __future__ import annotations

import json as stdlib_json
import math
import re
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from gateway.errors import ConfigError, PayloadRejected
from gateway.ingest.formats.base import DecodeContext
from gateway.ingest.formats.fields import select_fields
from gateway.ingest.formats.identity import content_id
from gateway.ingest.formats.timestamps import epoch_to_ns, parse_rfc3339
from gateway.model import FieldValue, Reading
from gateway.reasons import Reason

PARSER_MAX_DEPTH = 1024  # orjson's own limit; the mapping's max_depth (default 32) is checked while flattening
_MAX_READINGS_PER_PAYLOAD = 10_000
_SWITCH = {"on": True, "off": False}
# ASCII digits only (as in timestamps.parse_rfc3339): int() would read Arabic-Indic and other Unicode digits.
_LOCAL_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?", re.ASCII)
_EPOCH_NAIVE = datetime(1970, 1, 1)


class _NonFinite(Exception):
    """Raised by the stdlib parser's parse_constant hook: only used to classify an orjson failure."""


def decode(payload: bytes, context: DecodeContext) -> list[Reading]:
    """Bytes -> readings, or PayloadRejected with a stable reason."""
    document = _parse(payload)
    if isinstance(document, dict):
        objects: list[Any] = [document]
        depth = 1
    elif isinstance(document, list):
        if not document:
            raise PayloadRejected(Reason.EMPTY_METRICS, "empty array: no readings")
        if len(document) > _MAX_READINGS_PER_PAYLOAD:
            raise PayloadRejected(Reason.TOO_MANY_READINGS, f"{len(document)} readings in one payload")
        objects, depth = document, 2
    else:
        raise PayloadRejected(Reason.INVALID_SCHEMA, f"payload is a JSON {type(document).__name__}, not an object")
    path = _timestamp_path(context.timestamp_field)
    readings = []
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise PayloadRejected(Reason.INVALID_SCHEMA, f"payload[{index}] is not an object")
        readings.append(_to_reading(obj, depth, path, context))
    return readings


def _parse(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        message = str(exc)
    if "depth limit" in message:
        raise PayloadRejected(Reason.TOO_DEEP, f"nesting deeper than {PARSER_MAX_DEPTH}") from None
    if "infinity" in message:
        raise PayloadRejected(Reason.NON_FINITE_VALUE, f"a number is out of range: {message}") from None
    # orjson calls NaN / Infinity an unexpected character; the slower stdlib parser, run only on this error
    # path, tells them apart from plain malformed JSON.
    try:
        stdlib_json.loads(payload, parse_constant=_reject_constant)
    except _NonFinite as exc:
        raise PayloadRejected(Reason.NON_FINITE_VALUE, f"{exc} is not a finite number") from None
    except RecursionError:
        raise PayloadRejected(Reason.TOO_DEEP, f"nesting deeper than {PARSER_MAX_DEPTH}") from None
    except (ValueError, UnicodeDecodeError):
        pass
    raise PayloadRejected(Reason.MALFORMED_JSON, f"not valid JSON: {message}")


def _reject_constant(name: str) -> Any:
    raise _NonFinite(name)


def _timestamp_path(timestamp_field: str | None) -> tuple[str, ...] | None:
    if not timestamp_field:
        return None
    return _path(timestamp_field)


@lru_cache(maxsize=256)
def _path(dotted: str) -> tuple[str, ...]:
    return tuple(dotted.split("."))


def _to_reading(obj: dict[str, Any], depth: int, path: tuple[str, ...] | None, context: DecodeContext) -> Reading:
    if path is not None and len(path) > 1 and ".".join(path) in obj:
        path = (".".join(path),)  # a top-level key that contains dots, e.g. "sensor.ts"
    device = _device(obj, context) if context.device_field else context.device
    fields: dict[str, FieldValue] = {}
    if context.root:
        root = _path(context.root)
        holder = _lookup(obj, root)
        if not isinstance(holder, dict):
            raise PayloadRejected(Reason.INVALID_SCHEMA, f"no object at {context.root!r}")
        skip = path[len(root) :] if path is not None and path[: len(root)] == root else None
        _flatten(holder, "", depth + len(root), skip or None, context, fields)
    else:
        _flatten(obj, "", depth, path, context, fields)
    if context.device_field and context.keep_strings:
        fields.pop(context.device_field.replace(".", context.separator), None)  # the id is a tag, not a field
    raw_time = _lookup(obj, path) if path is not None else None
    if raw_time is None:
        time_ns, from_device = context.received_at_ns, False
    else:
        time_ns, from_device = _timestamp(raw_time, context), True
    fields = select_fields(fields, context)
    if not fields:
        raise PayloadRejected(Reason.EMPTY_METRICS, "no numeric, boolean or kept string field in the object")
    reading_id = content_id(device, time_ns, fields)
    return Reading(device, context.measurement, time_ns, fields, {}, reading_id, None, from_device)


def _device(obj: dict[str, Any], context: DecodeContext) -> str:
    """The device id the payload names at device_field; it must agree with the topic's, when there is one."""
    assert context.device_field is not None
    claimed = _lookup(obj, _path(context.device_field))
    if claimed is None:
        raise PayloadRejected(Reason.MISSING_DEVICE, f"no device id at {context.device_field!r}")
    if not isinstance(claimed, str) or not claimed:
        raise PayloadRejected(Reason.INVALID_DEVICE_ID, f"{context.device_field} is not a non-empty string")
    if context.device and claimed != context.device:
        raise PayloadRejected(
            Reason.DEVICE_MISMATCH,
            f"payload {context.device_field} {claimed[:128]!r} is not the topic's {context.device!r}",
        )
    return claimed


def _flatten(
    obj: dict[str, Any],
    prefix: str,
    depth: int,
    skip: tuple[str, ...] | None,
    context: DecodeContext,
    out: dict[str, FieldValue],
) -> None:
    """Recursion is bounded: a level deeper than max_depth raises before it is entered (orjson caps at 1024)."""
    if depth > context.max_depth:
        raise PayloadRejected(Reason.TOO_DEEP, f"nesting deeper than max_depth={context.max_depth}")
    for key, value in obj.items():
        if skip is not None and key == skip[0]:
            if len(skip) == 1:
                continue  # the timestamp itself
            child_skip: tuple[str, ...] | None = skip[1:]
        else:
            child_skip = None
        name = f"{prefix}{context.separator}{key}" if prefix else key
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):  # cannot come from orjson; kept as a guard
                raise PayloadRejected(Reason.NON_FINITE_VALUE, f"{name[:128]} is NaN or infinite")
            out[name] = value
        elif kind is bool:
            out[name] = value
        elif kind is int:
            out[name] = float(value)
        elif kind is str:
            switch = _SWITCH.get(value.lower()) if len(value) <= 3 else None
            if switch is not None:
                out[name] = switch
            elif context.keep_strings:
                out[name] = value
        elif kind is dict:
            _flatten(value, name, depth + 1, child_skip, context, out)
        elif kind is list:
            _check_depth(value, depth + 1, context.max_depth)
        # None: skipped


def _check_depth(value: list[Any] | dict[str, Any], depth: int, max_depth: int) -> None:
    """Lists are skipped, but their nesting still counts against the limit."""
    if depth > max_depth:
        raise PayloadRejected(Reason.TOO_DEEP, f"nesting deeper than max_depth={max_depth}")
    for item in value if isinstance(value, list) else value.values():
        if isinstance(item, list | dict):
            _check_depth(item, depth + 1, max_depth)


def _lookup(obj: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = obj
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _timestamp(value: Any, context: DecodeContext) -> int:
    kind = type(value)
    if kind is int or kind is float:
        return epoch_to_ns(value)
    if kind is str:
        local = _LOCAL_ISO.fullmatch(value)
        if local is None:
            return parse_rfc3339(value)  # RFC 3339 with a zone, or invalid_timestamp
        return _local_to_ns(local, value, context.timezone)
    raise PayloadRejected(Reason.INVALID_TIMESTAMP, f"{context.timestamp_field} is a JSON {kind.__name__}")


def _local_to_ns(match: re.Match[str], text: str, timezone: str) -> int:
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = match.group(7)
    try:
        naive = datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise PayloadRejected(Reason.INVALID_TIMESTAMP, f"ts {text[:64]!r}: {exc}") from None
    offset = naive.replace(tzinfo=_zone(timezone)).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    delta = naive - offset - _EPOCH_NAIVE
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + nanos


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"timezone {name!r} is not an IANA time zone: {exc}") from None
