"""The gateway's own schema: `{"metrics": {...}, "ts": ..., "id": ..., "seq": ..., "tags": {...}}` or a list.

Parsing and type checks run straight from the bytes, in two passes over the same schema: msgspec first (about a
tenth of pydantic's cost a message), and, for a payload msgspec refuses, pydantic-core, whose errors name the
rejection reason. So a valid payload costs one msgspec decode and an invalid one is explained exactly as before.
tests/unit/test_native_fast_path.py checks that the two agree. What neither can express (time units, device
consistency) is checked after, per message.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from gateway.errors import PayloadRejected
from gateway.ingest.formats.base import json_syntax_rejection
from gateway.ingest.formats.identity import content_id
from gateway.ingest.formats.timestamps import to_ns
from gateway.model import FieldValue, Reading, new_tuple
from gateway.reasons import Reason


class NativeMessage(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False, frozen=True)

    metrics: dict[str, StrictBool | float | StrictStr] = Field(min_length=1)
    ts: StrictInt | StrictFloat | StrictStr | None = None
    id: str | None = Field(None, min_length=1, max_length=256)
    seq: StrictInt | None = None
    tags: dict[str, str] | None = None
    device_id: str | None = None


class FastNativeMessage(msgspec.Struct, frozen=True):
    """NativeMessage for msgspec: the same fields, types and limits (non-finite floats are refused by msgspec's
    JSON parser itself). Anything it refuses goes to NativeMessage for the reason."""

    metrics: Annotated[dict[str, bool | float | str], msgspec.Meta(min_length=1)]
    ts: int | float | str | None = None
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    seq: int | None = None
    tags: dict[str, str] | None = None
    device_id: str | None = None


_ONE = TypeAdapter(NativeMessage)
_MANY = TypeAdapter(list[NativeMessage])
_FAST_ONE = msgspec.json.Decoder(FastNativeMessage)
_FAST_MANY = msgspec.json.Decoder(list[FastNativeMessage])
_MAX_MESSAGES_PER_PAYLOAD = 10_000


def decode(payload: bytes, device: str, measurement: str, received_at_ns: int) -> list[Reading]:
    """Bytes -> readings, or PayloadRejected with a stable reason."""
    is_list = payload[:1] == b"[" or payload.lstrip()[:1] == b"["
    messages: list[NativeMessage] | list[FastNativeMessage]
    try:
        messages = fast_messages(payload, is_list)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):  # RecursionError: nested too deep
        messages = exact_messages(payload, is_list)
    if not messages:
        raise PayloadRejected(Reason.EMPTY_METRICS, "empty array: no readings")
    if len(messages) > _MAX_MESSAGES_PER_PAYLOAD:
        raise PayloadRejected(Reason.TOO_MANY_READINGS, f"{len(messages)} readings in one payload")
    return [_to_reading(m, device, measurement, received_at_ns) for m in messages]


def fast_messages(payload: bytes, is_list: bool) -> list[FastNativeMessage]:
    """msgspec's pass: raises msgspec.DecodeError, ValidationError or RecursionError, whose reasons are not ours."""
    return _FAST_MANY.decode(payload) if is_list else [_FAST_ONE.decode(payload)]


def exact_messages(payload: bytes, is_list: bool) -> list[NativeMessage]:
    """pydantic's pass: raises PayloadRejected with the reason."""
    try:
        return _MANY.validate_json(payload) if is_list else [_ONE.validate_json(payload)]
    except ValidationError as exc:
        raise _rejection(exc) from None


def _to_reading(msg: NativeMessage | FastNativeMessage, device: str, measurement: str, received_at_ns: int) -> Reading:
    if msg.device_id is not None and msg.device_id != device:
        raise PayloadRejected(
            Reason.DEVICE_MISMATCH,
            f"payload device_id {msg.device_id[:128]!r} is not the topic's device {device!r}",
        )
    if msg.ts is None:
        time_ns, from_device = received_at_ns, False
    else:
        time_ns, from_device = to_ns(msg.ts), True
    fields: dict[str, FieldValue] = msg.metrics
    if msg.id is not None:
        reading_id = msg.id
    elif msg.seq is not None:
        # The time is in the id, so a device that rebooted and counts from 1 again is not taken for a
        # redelivery of its old readings: its clock moved on, or (without `ts`) the receive time did. A copy the
        # broker redelivers has the same `ts`; without one, the ingestor recognises it by MQTT's DUP flag.
        reading_id = f"{device}#{msg.seq}@{time_ns}"
    else:
        reading_id = content_id(device, time_ns, fields)
    return new_tuple(Reading, (device, measurement, time_ns, fields, msg.tags or {}, reading_id, msg.seq, from_device))


def _rejection(exc: ValidationError) -> PayloadRejected:
    errors = exc.errors(include_url=False, include_context=False)
    types = {e["type"] for e in errors}
    first = errors[0]
    where = _where(first["loc"])
    if "json_invalid" in types:
        return json_syntax_rejection(first["msg"])
    if "finite_number" in types:
        bad = next(e for e in errors if e["type"] == "finite_number")
        return PayloadRejected(Reason.NON_FINITE_VALUE, f"{_where(bad['loc'])} is NaN or infinite")
    if first["type"] == "too_short" and first["loc"][-1:] == ("metrics",):
        return PayloadRejected(Reason.EMPTY_METRICS, "metrics is empty")
    if first["type"] == "missing":
        return PayloadRejected(Reason.INVALID_SCHEMA, f"{where} is required")
    if first["loc"][:1] == ("metrics",) and len(first["loc"]) > 2:
        return PayloadRejected(Reason.INVALID_SCHEMA, f"{where} must be a number, a boolean or a string")
    return PayloadRejected(Reason.INVALID_SCHEMA, f"{where}: {first['msg']}")


# pydantic names the union member in an error's location ("metrics.a.float"); users need only "metrics.a".
_UNION_BRANCHES = frozenset({"bool", "float", "str", "int", "none"})


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in _UNION_BRANCHES) or "payload"
