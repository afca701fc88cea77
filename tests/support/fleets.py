"""Reproducible simulator fleets for the tests: a fixed seed and start time."""

from __future__ import annotations

from typing import Any

from device_sim.fleet import FleetSpec

START_NS = 1_795_774_500_000_000_000  # 2026-11-27T10:15:00Z: fixed, so fleets are reproducible
MS = 1_000_000


def spec(**overrides: Any) -> FleetSpec:
    values: dict[str, Any] = {"devices": 20, "messages": 2000, "seed": 7, "start_time_ns": START_NS}
    return FleetSpec(**(values | overrides))
