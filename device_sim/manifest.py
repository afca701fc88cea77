"""What a gateway should make of a simulated fleet: the readings it must store and what it must reject.

On disk a manifest is JSON Lines, one object per line, told apart by "type":

    {"type": "reading", "device": str, "time_ns": int, "fields": {name: float | bool | str},
     "tags": {name: str}, "id": str, "seq": int, "duplicates": int}
    {"type": "rejection", "topic": str, "reason": str, "count": int}

"duplicates" counts the exact resends of that reading's message, which the gateway must drop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import orjson

FieldValue = float | bool | str
_T = TypeVar("_T")


class ExpectedReading(NamedTuple):
    """One reading the gateway must store, exactly once, whatever the duplicates."""

    device: str
    time_ns: int
    fields: dict[str, FieldValue]
    tags: dict[str, str]
    id: str
    seq: int
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class ExpectedRejection:
    """How many messages on one topic the gateway must reject for one reason."""

    # A dataclass, not a NamedTuple: a field called "count" would shadow tuple.count.

    topic: str
    reason: str
    count: int


@dataclass(frozen=True)
class Summary:
    """Counts by kind of everything the fleet publishes."""

    valid: int
    duplicates: int
    malformed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.valid + self.duplicates + sum(self.malformed.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "duplicates": self.duplicates,
            "malformed": dict(self.malformed),
            "total": self.total,
        }


@dataclass
class Manifest:
    """Expected readings in publication order, and expected rejections by topic and reason."""

    readings: list[ExpectedReading] = field(default_factory=list)
    rejections: list[ExpectedRejection] = field(default_factory=list)

    def summary(self) -> Summary:
        malformed: dict[str, int] = {}
        for rejection in self.rejections:
            malformed[rejection.reason] = malformed.get(rejection.reason, 0) + rejection.count
        return Summary(
            valid=len(self.readings),
            duplicates=sum(r.duplicates for r in self.readings),
            malformed=dict(sorted(malformed.items())),
        )

    def write_jsonl(self, path: str | Path) -> None:
        with Path(path).open("wb") as out:
            out.writelines(_line(_reading_record(r)) for r in self.readings)
            out.writelines(_line(_rejection_record(r)) for r in self.rejections)

    @classmethod
    def read_jsonl(cls, path: str | Path) -> Manifest:
        with Path(path).open("rb") as lines:
            return cls.from_records(orjson.loads(line) for line in lines if line.strip())

    @classmethod
    def from_records(cls, records: Iterable[Any]) -> Manifest:
        manifest = cls()
        for number, record in enumerate(records, start=1):
            try:
                kind = record["type"]
                if kind == "reading":
                    manifest.readings.append(_reading_from(record))
                elif kind == "rejection":
                    manifest.rejections.append(_rejection_from(record))
                else:
                    raise ValueError(f"unknown type {kind!r}")
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"manifest record {number} is invalid: {exc!r}") from exc
        return manifest


def _line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"


def _reading_record(r: ExpectedReading) -> dict[str, Any]:
    return {
        "type": "reading",
        "device": r.device,
        "time_ns": r.time_ns,
        "fields": r.fields,
        "tags": r.tags,
        "id": r.id,
        "seq": r.seq,
        "duplicates": r.duplicates,
    }


def _rejection_record(r: ExpectedRejection) -> dict[str, Any]:
    return {"type": "rejection", "topic": r.topic, "reason": r.reason, "count": r.count}


def _reading_from(record: dict[str, Any]) -> ExpectedReading:
    return ExpectedReading(
        device=_typed(record["device"], str),
        time_ns=_typed(record["time_ns"], int),
        fields={_typed(k, str): _field_value(v) for k, v in _typed(record["fields"], dict).items()},
        tags={_typed(k, str): _typed(v, str) for k, v in _typed(record.get("tags", {}), dict).items()},
        id=_typed(record["id"], str),
        seq=_typed(record["seq"], int),
        duplicates=_typed(record.get("duplicates", 0), int),
    )


def _rejection_from(record: dict[str, Any]) -> ExpectedRejection:
    return ExpectedRejection(
        topic=_typed(record["topic"], str),
        reason=_typed(record["reason"], str),
        count=_typed(record["count"], int),
    )


def _field_value(value: object) -> FieldValue:
    # Numbers are floats in the store, so a hand-written integer reads back as one.
    if isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return float(value)
    raise ValueError(f"field value {value!r} is not a number, bool or string")


def _typed(value: object, kind: type[_T]) -> _T:
    # bool is an int subclass; a count or a time of True is a broken file, not 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"expected {kind.__name__}, got {value!r}")
    return value
