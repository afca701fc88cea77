"""Compare what a store holds with what a device_sim manifest says a correct gateway stores."""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from device_sim.manifest import Manifest
from tests.support.servers import VictoriaMetrics

# device_sim names how it broke a message; the gateway names why it refused it.
GATEWAY_REASONS = {
    "malformed_json": {"malformed_json"},
    "non_finite": {"non_finite_value", "malformed_json"},
    "empty_metrics": {"empty_metrics"},
    "wrong_type": {"invalid_schema"},
    "device_mismatch": {"device_mismatch"},
    "oversized": {"payload_too_large"},
    "future_ts": {"timestamp_in_future"},
}

Key = tuple[str, int]  # (device, time in ms): VictoriaMetrics keeps milliseconds


class Comparison(NamedTuple):
    missing: list[Key]
    extra: list[Key]
    mismatched: list[Key]
    duplicated_samples: int
    stored: int


def vm_readings(vm: VictoriaMetrics, measurement: str = "telemetry") -> tuple[dict[Key, dict[str, float]], int]:
    """{(device, ms): {field: value}} from the store, and how many samples were stored more than once."""
    readings: dict[Key, dict[str, float]] = {}
    seen: Counter[tuple[str, int, str]] = Counter()
    for series in vm.export('{__name__=~"' + measurement + '_.*"}'):
        field = series.metric["__name__"][len(measurement) + 1 :]
        device = series.metric["device"]
        for ts, value in zip(series.timestamps, series.values, strict=True):
            seen[(device, ts, field)] += 1
            readings.setdefault((device, ts), {})[field] = value
    return readings, sum(n - 1 for n in seen.values() if n > 1)


def compare(manifest: Manifest, vm: VictoriaMetrics) -> Comparison:
    stored, duplicated = vm_readings(vm)
    expected: dict[Key, dict[str, float]] = {}
    for r in manifest.readings:
        expected[(r.device, r.time_ns // 1_000_000)] = {
            k: float(v) for k, v in r.fields.items() if not isinstance(v, str)
        }
    missing = [k for k in expected if k not in stored]
    extra = [k for k in stored if k not in expected]
    mismatched = [
        k
        for k, fields in expected.items()
        if k in stored
        and (
            stored[k].keys() != fields.keys()
            or any(abs(stored[k][f] - v) > 1e-9 * max(1, abs(v)) for f, v in fields.items())
        )
    ]
    return Comparison(missing, extra, mismatched, duplicated, len(stored))
