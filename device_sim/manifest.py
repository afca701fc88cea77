"""What a gateway should make of a simulated fleet: the readings it must store and what it must reject.

On disk a manifest is JSON Lines, one object per line, told apart by "type", in this order:

    {"type": "header", ...}     (optional) how it was made: seed, start, fleet; for people and for verify
    {"type": "reading", "device": str, "time_ns": int, "fields": {name: float | bool | str},
     "tags": {name: str}, "id": str, "seq": int, "duplicates": int,
     "measurement": str (omitted: "telemetry"), "received": true (omitted: false)}
    {"type": "rejection", "topic": str, "reason": str, "count": int}
    {"type": "alert", "rule": str, "device": str, "metric": str | null, "cause": str,
     "starts_at_ns": int, "ends_at_ns": int | null}

"duplicates" counts the exact resends of that reading's message, which the gateway must drop. "received":
the payload carries no timestamp, so the gateway stores the reading at its receive time; "time_ns" is then
only when it was sent, and verify matches such readings by content. "reason" is the gateway's reason code
(device_sim's older `fleet.generate` writes its own names: see tests/support/storecheck.py). Alerts are a separate,
last part: what the injected anomalies and faults must fire under the rules in `device_sim.alerts`.
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
    measurement: str = "telemetry"
    received: bool = False  # stored at the gateway's receive time: time_ns is only when it was sent


@dataclass(frozen=True, slots=True)
class ExpectedRejection:
    """How many messages on one topic the gateway must reject for one reason."""

    # A dataclass, not a NamedTuple: a field called "count" would shadow tuple.count.

    topic: str
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class ExpectedAlert:
    """An alert episode the gateway must report: it fires at starts_at_ns (device time of the reading that
    crossed the rule) and resolves at ends_at_ns (None: still firing when the run ends, or wall-clock timed)."""

    rule: str
    device: str
    metric: str | None
    cause: str  # the anomaly or fault behind it: spike, drift, stuck, reboot, silence, battery
    starts_at_ns: int
    ends_at_ns: int | None


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
    alerts: list[ExpectedAlert] = field(default_factory=list)
    header: dict[str, Any] | None = None

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
            if self.header is not None:
                out.write(header_line(self.header))
            out.writelines(reading_line(r) for r in self.readings)
            out.writelines(_line(_rejection_record(r)) for r in self.rejections)
            out.writelines(_line(_alert_record(a)) for a in self.alerts)

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
                elif kind == "alert":
                    manifest.alerts.append(_alert_from(record))
                elif kind == "header":
                    manifest.header = {k: v for k, v in record.items() if k != "type"}
                else:
                    raise ValueError(f"unknown type {kind!r}")
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"manifest record {number} is invalid: {exc!r}") from exc
        return manifest


def _line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"


def header_line(header: dict[str, Any]) -> bytes:
    return _line({"type": "header", **header})


def reading_line(r: ExpectedReading) -> bytes:
    return _line(_reading_record(r))


def rejection_line(r: ExpectedRejection) -> bytes:
    return _line(_rejection_record(r))


def alert_line(a: ExpectedAlert) -> bytes:
    return _line(_alert_record(a))


def _reading_record(r: ExpectedReading) -> dict[str, Any]:
    record = {
        "type": "reading",
        "device": r.device,
        "time_ns": r.time_ns,
        "fields": r.fields,
        "tags": r.tags,
        "id": r.id,
        "seq": r.seq,
        "duplicates": r.duplicates,
    }
    if r.measurement != "telemetry":
        record["measurement"] = r.measurement
    if r.received:
        record["received"] = True
    return record


def _alert_record(a: ExpectedAlert) -> dict[str, Any]:
    return {
        "type": "alert",
        "rule": a.rule,
        "device": a.device,
        "metric": a.metric,
        "cause": a.cause,
        "starts_at_ns": a.starts_at_ns,
        "ends_at_ns": a.ends_at_ns,
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
        measurement=_typed(record.get("measurement", "telemetry"), str),
        received=_typed(record.get("received", False), bool),
    )


def _alert_from(record: dict[str, Any]) -> ExpectedAlert:
    metric = record.get("metric")
    ends = record.get("ends_at_ns")
    return ExpectedAlert(
        rule=_typed(record["rule"], str),
        device=_typed(record["device"], str),
        metric=None if metric is None else _typed(metric, str),
        cause=_typed(record["cause"], str),
        starts_at_ns=_typed(record["starts_at_ns"], int),
        ends_at_ns=None if ends is None else _typed(ends, int),
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
