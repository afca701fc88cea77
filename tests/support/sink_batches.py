"""Batches of readings for the sink contract (tests/contract/), and the rows and shape they should leave in a store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

from gateway.model import FieldValue, Reading
from tests.support.store_readers import MEASUREMENT, MS, Row, Store, Tags, _tags, _value

T0 = 1_718_000_000_000 * MS  # 2024-06-10T06:13:20Z: an old device clock, whole milliseconds (VM keeps ms)


def reading(device: str, ms: int, fields: dict[str, FieldValue], tags: dict[str, str] | None = None) -> Reading:
    return Reading(device, MEASUREMENT, T0 + ms * MS, fields, tags or {}, f"{device}/{ms}")


def _string_keys(readings: Sequence[Reading]) -> set[tuple[str, Tags, int, str]]:
    return {
        (r.device, _tags(r.tags), r.time_ns // MS, name)
        for r in readings
        for name, value in r.fields.items()
        if isinstance(value, str)
    }


def expected(store: Store, readings: Sequence[Reading]) -> Counter[Row]:
    """The rows `readings` should leave in `store` (string values only where the store keeps them)."""
    return Counter(
        (r.device, _tags(r.tags), r.time_ns // MS, name, _value(value))
        for r in readings
        for name, value in r.fields.items()
        if store.stores_strings or not isinstance(value, str)
    )


def stored(store: Store, written: Sequence[Reading]) -> Counter[Row]:
    """The store's rows, leaving out (where the store drops their text) exactly the string values written."""
    rows = store.rows()
    if not store.stores_strings:
        strings = _string_keys(written)
        rows = [row for row in rows if row[:4] not in strings]
    return Counter(rows)


class Shape(NamedTuple):
    series: int  # distinct (device, tags, field)
    points: int  # distinct (device, tags, time): one per reading
    values: int  # stored values, duplicates included


def shape_of(rows: Sequence[Row]) -> Shape:
    return Shape(
        series=len({(device, tags, field) for device, tags, _, field, _ in rows}),
        points=len({(device, tags, ms) for device, tags, ms, _, _ in rows}),
        values=len(rows),
    )


def expected_shape(readings: Sequence[Reading]) -> Shape:
    return shape_of([(r.device, _tags(r.tags), r.time_ns // MS, name, 0.0) for r in readings for name in r.fields])


def fleet_batch() -> list[Reading]:
    """Several devices, with and without tags, every field type; values within VM's 12 significant digits."""
    return [
        reading(
            "boiler-17",
            0,
            {"temperature": 71.5, "pressure": 1.25, "pump_on": True, "state": "heating"},
            {"site": "plant-a", "line": "2"},
        ),
        reading(
            "boiler-17",
            1_000,
            {"temperature": 71.75, "pressure": 1.2, "pump_on": False, "state": "idle"},
            {"site": "plant-a", "line": "2"},
        ),
        reading("boiler-17", 1_000, {"temperature": -3.5}, {"site": "plant-b"}),  # same device and ms, other series
        reading("meter-3", 250, {"energy_kwh": 123456.789012, "ok": True}, {"site": "plant-a"}),
        reading("meter-3", 60_001, {"energy_kwh": 123457.0, "ok": False}, {"site": "plant-a"}),
        reading("probe.9", 5, {"humidity": 0.1, "lux": 0.0, "tiny": 2.5e-07, "big": 1e12}),  # no tags at all
    ]


HOSTILE = [",", "=", " ", '"', "\\", 'a,b=c d"e\\f', "ends\\", " leading", "x\\,y\\=z\\ \\\\"]


def hostile_batch(quotes_in_field_names: bool) -> list[Reading]:
    """Separators of line protocol in device ids, tag keys and values, field names and string values."""
    batch = []
    for i, text in enumerate(HOSTILE):
        field = text if quotes_in_field_names or '"' not in text else text.replace('"', "'")
        batch.append(
            reading(
                f"dev{text}{i}",
                i,
                {f"f{field}": float(i) + 0.5, f"{field}ok": i % 2 == 0, "note": f'say "{text}" \\ {i}'},
                {"site": f"s{text}", f"k{text}": f"v{text}{i}"},
            )
        )
    return batch
