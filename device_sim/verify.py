"""Compare what a store holds with what a manifest says a correct gateway stores: missing, extra, mismatched.

Readings with the device's timestamp are matched on (measurement, device, time) at the store's precision,
then their tags and fields compared. Readings stored at the gateway's receive time (`received` in the
manifest) cannot be matched on time, so they are matched on content: same measurement, device, tags,
field and value, counted. Only the manifest's devices are looked at (those of its readings and, with a header, every
id its groups make), so other data in the store does not count as extra.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

from device_sim.manifest import ExpectedReading, FieldValue, Manifest
from device_sim.stores import Store, Stored, StoredReading

FieldKey = tuple[str, str, tuple[tuple[str, str], ...], str, object]


class Mismatch(NamedTuple):
    expected: ExpectedReading
    stored: StoredReading
    why: str


class Comparison(NamedTuple):
    expected: int
    stored: int
    missing: list[ExpectedReading]
    extra: list[StoredReading]
    mismatched: list[Mismatch]
    duplicated_samples: int

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.mismatched)

    def as_dict(self, examples: int = 5) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "stored": self.stored,
            "missing": len(self.missing),
            "extra": len(self.extra),
            "mismatched": len(self.mismatched),
            "duplicated_samples": self.duplicated_samples,
            "examples": {
                "missing": [_expected_text(r) for r in self.missing[:examples]],
                "extra": [_stored_text(r) for r in self.extra[:examples]],
                "mismatched": [f"{_expected_text(m.expected)}: {m.why}" for m in self.mismatched[:examples]],
            },
        }


def manifest_devices(manifest: Manifest) -> set[str]:
    devices = {r.device for r in manifest.readings}
    for group in (manifest.header or {}).get("groups", []):
        pattern, count = group.get("id_pattern"), group.get("count")
        if isinstance(pattern, str) and isinstance(count, int):
            devices.update(pattern.format(n=n) for n in range(1, count + 1))
    return devices


def compare(manifest: Manifest, store: Store, *, check_tags: bool = True) -> Comparison:
    measurements = {r.measurement for r in manifest.readings} or {"telemetry"}
    stored = list(store.readings(measurements, manifest_devices(manifest)))
    return match(manifest.readings, stored, store.precision_ns, store.duplicated, check_tags=check_tags)


def match(
    expected: Iterable[ExpectedReading],
    stored: list[StoredReading],
    precision_ns: int,
    duplicated_samples: int = 0,
    *,
    check_tags: bool = True,
) -> Comparison:
    """Receive-timed readings are matched field by field: a store that keeps milliseconds (VictoriaMetrics)
    folds an ESPHome device's one-field messages received within the same millisecond into one point."""
    timed: dict[tuple[str, str, int], ExpectedReading] = {}
    received: list[ExpectedReading] = []
    unmatched_fields: list[int] = []  # per received reading: fields not found yet
    by_content: dict[FieldKey, list[int]] = defaultdict(list)
    received_devices: set[tuple[str, str]] = set()
    count = 0
    for reading in expected:
        count += 1
        if reading.received:
            index = len(received)
            received.append(reading)
            unmatched_fields.append(len(reading.fields))
            for name, value in reading.fields.items():
                by_content[_field_key(reading, reading.tags, name, value, check_tags)].append(index)
            received_devices.add((reading.measurement, reading.device))
        else:
            timed[(reading.measurement, reading.device, reading.time_ns // precision_ns)] = reading
    seen: set[tuple[str, str, int]] = set()
    extra: list[StoredReading] = []
    mismatched: list[Mismatch] = []
    for got in stored:
        key = (got.measurement, got.device, got.time_ns // precision_ns)
        wanted = timed.get(key)
        if wanted is not None and key not in seen:
            seen.add(key)
            why = _difference(wanted, got, check_tags)
            if why:
                mismatched.append(Mismatch(wanted, got, why))
            continue
        left = dict(got.fields)
        if (got.measurement, got.device) in received_devices:
            for name, value in got.fields.items():
                candidates = by_content.get(_field_key(got, got.tags, name, value, check_tags))
                if candidates:
                    unmatched_fields[candidates.pop()] -= 1
                    del left[name]
        if left:
            extra.append(got._replace(fields=left))
    missing = [r for k, r in timed.items() if k not in seen]
    missing += [r for r, left in zip(received, unmatched_fields, strict=True) if left]
    missing.sort(key=lambda r: (r.device, r.time_ns))
    extra.sort(key=lambda r: (r.device, r.time_ns))
    return Comparison(count, len(stored), missing, extra, mismatched, duplicated_samples)


def _comparable(value: FieldValue | Stored) -> object:
    """Stores give booleans back as 1/0 and every number as a float; VictoriaMetrics keeps 12 digits."""
    if isinstance(value, bool | int | float):
        number = float(value)
        return round(number, 6) if math.isfinite(number) else number
    return value


def _field_key(
    reading: ExpectedReading | StoredReading, tags: dict[str, str], name: str, value: Any, check_tags: bool
) -> FieldKey:
    return (
        reading.measurement,
        reading.device,
        tuple(sorted(tags.items())) if check_tags else (),
        name,
        _comparable(value),
    )


def _difference(expected: ExpectedReading, stored: StoredReading, check_tags: bool) -> str:
    problems = []
    if check_tags and expected.tags != stored.tags:
        problems.append(f"tags {stored.tags} instead of {expected.tags}")
    missing = sorted(set(expected.fields) - set(stored.fields))
    if missing:
        problems.append(f"fields missing: {', '.join(missing)}")
    unexpected = sorted(set(stored.fields) - set(expected.fields))
    if unexpected:
        problems.append(f"fields not sent: {', '.join(unexpected)}")
    for name in sorted(set(expected.fields) & set(stored.fields)):
        want, got = expected.fields[name], stored.fields[name]
        if isinstance(want, str) or isinstance(got, str):
            same = want == got
        else:
            same = math.isclose(float(want), float(got), rel_tol=1e-9, abs_tol=1e-9)
        if not same:
            problems.append(f"{name}={got!r} instead of {want!r}")
    return "; ".join(problems)


def _expected_text(r: ExpectedReading) -> str:
    when = "received ~" if r.received else ""
    return f"{r.device} @ {when}{r.time_ns} id={r.id} {_fields_text(r.fields)}"


def _stored_text(r: StoredReading) -> str:
    return f"{r.device} @ {r.time_ns} {_fields_text(r.fields)}" + (f" tags={r.tags}" if r.tags else "")


def _fields_text(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items())


def summary_lines(result: Comparison, store_name: str, examples: int = 5) -> list[str]:
    lines = [
        f"verify against {store_name}: {result.expected:,} readings expected, {result.stored:,} stored for the "
        f"manifest's devices",
        f"  missing     {len(result.missing):,}",
        f"  extra       {len(result.extra):,}",
        f"  mismatched  {len(result.mismatched):,}",
    ]
    if result.duplicated_samples:
        lines.append(f"  samples stored twice (the store keeps duplicates): {result.duplicated_samples:,}")
    for title, items in (
        ("missing", [_expected_text(r) for r in result.missing]),
        ("extra", [_stored_text(r) for r in result.extra]),
        ("mismatched", [f"{_expected_text(m.expected)}: {m.why}" for m in result.mismatched]),
    ):
        if items:
            lines.append(f"  {title}, first {min(examples, len(items))}:")
            lines += [f"    {item}" for item in items[:examples]]
    lines.append("OK: the store holds exactly the expected readings" if result.clean else "DIFFERENT")
    return lines


def reasons_summary(manifest: Manifest) -> Counter[str]:
    reasons: Counter[str] = Counter()
    for rejection in manifest.rejections:
        reasons[rejection.reason] += rejection.count
    return reasons
