"""What every payload format gets and gives: a context in, readings out, PayloadRejected when it cannot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.errors import PayloadRejected
from gateway.model import Reading
from gateway.reasons import Reason


@dataclass(frozen=True)
class DecodeContext:
    """Everything a format needs besides the bytes; built by the mapping that matched the topic."""

    device: str  # from the topic; "" when the topic names none and device_field must
    measurement: str
    received_at_ns: int
    topic_metric: str | None = None  # the {metric} placeholder of the topic, for bare-value formats
    timestamp_field: str | None = None  # payload path of the timestamp ("Time", "ts"); None: format default
    timezone: str = "UTC"  # IANA zone for zone-less local times (Tasmota's "Time")
    keep_strings: bool = False  # keep non-numeric strings as string fields instead of skipping them
    include: tuple[str, ...] = ()  # field globs to keep (empty: all)
    exclude: tuple[str, ...] = ()  # field globs to drop
    rename: dict[str, str] = field(default_factory=dict)  # field name -> stored name
    separator: str = "_"  # joins nested keys when flattening: {"ENERGY": {"Power": 1}} -> ENERGY_Power
    max_depth: int = 32  # deepest nesting accepted; the top-level value is depth 1
    root: str | None = None  # json: dotted path of the object that holds the fields
    device_field: str | None = None  # json: dotted path of the device id in the payload
    expected_unit: Callable[[str], str | None] | None = None  # field -> unit it must be reported in (SenML)


class Format(Protocol):
    def __call__(self, payload: bytes, context: DecodeContext) -> list[Reading]: ...


def json_syntax_rejection(message: str) -> PayloadRejected:
    """A JSON parser's error -> the rejection it means. pydantic-core refuses nesting deeper than about 200 levels
    with a syntax error; that is a payload nested too deep (`too_deep`, as validation.max_depth names it), not
    malformed JSON."""
    if "recursion limit exceeded" in message:
        return PayloadRejected(Reason.TOO_DEEP, f"nesting deeper than the JSON parser's limit: {message}")
    return PayloadRejected(Reason.MALFORMED_JSON, f"not valid JSON: {message}")
