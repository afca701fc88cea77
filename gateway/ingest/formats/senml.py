"""SenML JSON (RFC 8428): an array of records -> one reading per distinct resolved time.

Records are resolved as RFC 8428 section 4.6 says: base fields (bn, bt, bu, bv, bs, bver) apply to their own
record and every later one until replaced; name = bn + n; time = bt + t; value = bv + v; sum = bs + s. A
resolved time below 2**28 seconds (including zero and negative values) is relative to now, i.e. to the
receive time (such readings have time_from_device False); anything else is seconds since the epoch. Records
with the same resolved time become one Reading, in the order their times first appear.

Field names (the choice this module makes):

* The field is the record's own `n`, i.e. the resolved name with the base name taken off, so the base name
  (typically the device, "urn:dev:ow:10e2073a01080063:") never ends up in a field name. The device comes from
  the topic (context.device). Without a `bn`, the whole `n` is the field.
* A record without `n` (its name is the base name alone, as in RFC 8428 section 5.1.3, where records are told
  apart only by unit) is named by its unit (u, else bu), else by the topic's {metric}, else "value".
* A sum is stored as its own field, `<field><separator>sum` (context.separator), whether or not the record
  also has a value, so a field's name never depends on which other keys a device happened to send.

Values: v -> float, vb -> bool, vs and vd (base64 data, kept as its text) -> string fields only when
context.keep_strings, else skipped. Units are not stored; `u` and `bu` name nameless records, and a field whose
metric rule names a unit (context.expected_unit) must be reported in it (`unit_mismatch`). `ut` is accepted and
ignored. Any key ending in "_" is a must-understand extension this module does
not know: the pack is rejected, as RFC 8428 section 4.4 requires. bver above 10 is rejected likewise.

Reason codes: malformed_json, too_deep (nesting beyond the JSON parser's limit), invalid_schema (not an array,
a record not an object, a wrong type, no name, no value, two values for one field at one time), non_finite_value
(NaN, infinities, numbers too large for a double), invalid_timestamp (a non-numeric or non-finite bt/t),
empty_metrics (empty array, or no value left), too_many_readings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pydantic_core import from_json

from gateway.errors import PayloadRejected
from gateway.ingest.formats.base import DecodeContext, json_syntax_rejection
from gateway.ingest.formats.fields import finite_float, select_fields
from gateway.ingest.formats.identity import content_id
from gateway.model import FieldValue, Reading
from gateway.reasons import Reason

SENML_VERSION = 10  # RFC 8428's version; packs of a later version may rely on semantics we do not know
RELATIVE_LIMIT_S = 2**28
_NS = 1_000_000_000
_WHOLE_FLOAT = 2.0**53  # every double at least this large is a whole number
_MAX_RECORDS = 10_000
_KNOWN = frozenset({"bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"})


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(record: dict[str, Any], key: str, index: int) -> float | int | None:
    value = record.get(key)
    if value is None:
        return None
    if not _is_number(value):
        reason = Reason.INVALID_TIMESTAMP if key in ("bt", "t", "ut") else Reason.INVALID_SCHEMA
        raise PayloadRejected(reason, f"record {index}: {key} must be a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        reason = Reason.INVALID_TIMESTAMP if key in ("bt", "t", "ut") else Reason.NON_FINITE_VALUE
        raise PayloadRejected(reason, f"record {index}: {key} is NaN or infinite")
    result: float | int = value
    return result


def _string(record: dict[str, Any], key: str, index: int) -> str | None:
    value = record.get(key)
    if value is None or isinstance(value, str):
        return value
    raise PayloadRejected(Reason.INVALID_SCHEMA, f"record {index}: {key} must be a string, not {type(value).__name__}")


def _resolved(base: float | int, value: float | int, where: str) -> float:
    """base + value as the float stored; a sum a double cannot hold is non_finite_value."""
    try:
        total = base + value
    except OverflowError:  # an integer beyond a double plus a float: Python converts the integer first
        total = math.inf
    return finite_float(total, where)


def _seconds_to_ns(seconds: float | int) -> int:
    # Float seconds keep microsecond precision, as in timestamps.epoch_to_ns: 1.320078429e+09 -> exact.
    if isinstance(seconds, int):
        return seconds * _NS
    if abs(seconds) >= _WHOLE_FLOAT:  # no fraction to keep, and seconds * 1e6 could overflow to infinity
        return int(seconds) * _NS  # far out of range: the validator rejects it as timestamp_out_of_range
    return round(seconds * 1_000_000) * 1000


def decode(payload: bytes, context: DecodeContext) -> list[Reading]:
    """Bytes -> readings grouped by resolved time, or PayloadRejected with a stable reason."""
    try:
        pack = from_json(payload, allow_inf_nan=True)
    except ValueError as exc:
        raise json_syntax_rejection(str(exc)) from None
    if not isinstance(pack, list):
        raise PayloadRejected(Reason.INVALID_SCHEMA, "a SenML pack is a JSON array of records")
    if not pack:
        raise PayloadRejected(Reason.EMPTY_METRICS, "empty array: no records")
    if len(pack) > _MAX_RECORDS:
        raise PayloadRejected(Reason.TOO_MANY_READINGS, f"{len(pack)} records in one payload")

    base_name, base_unit = "", None
    base_time: float | int = 0
    base_value: float | int = 0
    base_sum: float | int = 0
    groups: dict[int, dict[str, FieldValue]] = {}
    relative: set[int] = set()  # resolved times anchored at the receive time: not the device's clock
    for index, record in enumerate(pack):
        if not isinstance(record, dict):
            raise PayloadRejected(Reason.INVALID_SCHEMA, f"record {index} is not an object")
        for key in record:
            if key not in _KNOWN and key.endswith("_"):
                raise PayloadRejected(
                    Reason.INVALID_SCHEMA, f"record {index}: unsupported must-understand field {key!r}"
                )
        bver = record.get("bver")
        if bver is not None and (not isinstance(bver, int) or isinstance(bver, bool) or bver > SENML_VERSION):
            raise PayloadRejected(Reason.INVALID_SCHEMA, f"record {index}: unsupported SenML version {bver!r}")
        bn, bu, n, u = (_string(record, key, index) for key in ("bn", "bu", "n", "u"))
        vs, vd = _string(record, "vs", index), _string(record, "vd", index)
        bt, bv, bs = (_number(record, key, index) for key in ("bt", "bv", "bs"))
        t, v, s = (_number(record, key, index) for key in ("t", "v", "s"))
        _number(record, "ut", index)  # type-checked, otherwise ignored
        vb = record.get("vb")
        if vb is not None and not isinstance(vb, bool):
            raise PayloadRejected(Reason.INVALID_SCHEMA, f"record {index}: vb must be a boolean")
        if bn is not None:
            base_name = bn
        if bu is not None:
            base_unit = bu
        if bt is not None:
            base_time = bt
        if bv is not None:
            base_value = bv
        if bs is not None:
            base_sum = bs

        name = n or ""
        if not base_name + name:
            raise PayloadRejected(Reason.INVALID_SCHEMA, f"record {index} has neither n nor bn")
        field = name or u or base_unit or context.topic_metric or "value"
        if context.expected_unit is not None:
            _check_unit(context.rename.get(field, field), u or base_unit, context.expected_unit)

        values: list[tuple[str, FieldValue]] = []
        given = [key for key, value in (("v", v), ("vs", vs), ("vb", vb), ("vd", vd)) if value is not None]
        if len(given) > 1:
            raise PayloadRejected(Reason.INVALID_SCHEMA, f"record {index} has more than one value: {', '.join(given)}")
        if v is not None:
            values.append((field, _resolved(base_value, v, f"record {index}: v")))
        elif vb is not None:
            values.append((field, vb))
        elif vs is not None or vd is not None:
            if context.keep_strings:
                values.append((field, vs if vs is not None else vd or ""))
        elif s is None:
            raise PayloadRejected(Reason.INVALID_SCHEMA, f"record {index} ({field!r}) has no value and no sum")
        if s is not None:
            values.append((f"{field}{context.separator}sum", _resolved(base_sum, s, f"record {index}: s")))

        time_ns = _seconds_to_ns(base_time) + _seconds_to_ns(t or 0)
        if time_ns < RELATIVE_LIMIT_S * _NS:
            time_ns += context.received_at_ns
            relative.add(time_ns)
        group = groups.setdefault(time_ns, {})
        for key, value in values:
            if key in group:
                raise PayloadRejected(
                    Reason.INVALID_SCHEMA, f"record {index}: two values for {key[:128]!r} at one time"
                )
            group[key] = value

    readings = []
    for time_ns, decoded in groups.items():
        fields = select_fields(decoded, context)
        if not fields:
            continue
        reading_id = content_id(context.device, time_ns, fields)
        from_device = time_ns not in relative
        readings.append(
            Reading(context.device, context.measurement, time_ns, fields, {}, reading_id, None, from_device)
        )
    if not readings:
        # Accepted without a reading, the pack would be neither stored nor dead-lettered: it would vanish.
        raise PayloadRejected(Reason.EMPTY_METRICS, "no value left in the pack (strings not kept, or filtered out)")
    return readings


def _check_unit(field: str, unit: str | None, expected_unit: Callable[[str], str | None]) -> None:
    wanted = expected_unit(field)
    if wanted is not None and unit is not None and unit != wanted:
        raise PayloadRejected(Reason.UNIT_MISMATCH, f"{field[:128]!r} is reported in {unit[:32]!r}, not {wanted!r}")
