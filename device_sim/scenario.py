"""A fleet file made concrete: one plan per device and the run's start time; and the manifest it implies.

The manifest is written by running every device's timeline without publishing: a device's stream depends
only on its plan and the seed, so the same seed, fleet and start give the same manifest byte for byte, and
a live run sends exactly what the manifest describes. Devices are written in fleet order, each device's
readings in the order it sends them.
"""

from __future__ import annotations

import io
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from device_sim.alerts import AlertTracker
from device_sim.fleetfile import FleetFile, FleetFileError
from device_sim.formats import ENCODERS, rfc3339_ms
from device_sim.manifest import (
    ExpectedAlert,
    ExpectedRejection,
    Manifest,
    alert_line,
    header_line,
    reading_line,
    rejection_line,
)
from device_sim.timeline import DevicePlan, DeviceTimeline, Event
from device_sim.wire import check_device_name

MANIFEST_VERSION = 2
# The gateway's default validation.device_id_pattern: an id it refuses would make the manifest wrong.
GATEWAY_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")
DEFAULT_DURATION_S = 60.0


class Scenario(NamedTuple):
    fleet: FleetFile
    plans: list[DevicePlan]
    start_ms: int  # epoch ms of the timeline's origin: a device's sample at t ms is stamped start_ms + t

    @property
    def span_ms(self) -> int:
        """From the start to the last scheduled sample."""
        return max((p.first_ms + (p.slots - 1) * p.interval_ms for p in self.plans), default=0)

    @property
    def scheduled(self) -> int:
        return sum(p.slots for p in self.plans)

    def timelines(self) -> Iterator[DeviceTimeline]:
        for plan in self.plans:
            yield DeviceTimeline(plan, self.start_ms)


def build(fleet: FleetFile, now_ms: int | None = None) -> Scenario:
    """Plans for every device; FleetFileError if device ids collide or the gateway would refuse them."""
    run = fleet.run
    total = fleet.devices
    duration_s = run.duration_s if run.duration_s is not None or run.messages is not None else DEFAULT_DURATION_S
    names = _device_names(fleet)
    plans: list[DevicePlan] = []
    ramp_ms = round(run.ramp_up_s * 1000)
    i = 0
    for group in fleet.groups:
        interval_ms = max(1, round(1000 / group.rate))
        for n in range(1, group.count + 1):
            seed = f"{run.seed}:{group.name}:{n}"
            phase = random.Random(seed + ":phase").randrange(interval_ms)
            if run.messages is not None:
                slots = run.messages // total + (i < run.messages % total)
            else:
                assert duration_s is not None
                slots = max(1, round(duration_s * group.rate))
            plans.append(
                DevicePlan(
                    name=names[i],
                    position=i,
                    group=group,
                    encoder=ENCODERS[group.format],
                    other=names[(i + 1) % total] if total > 1 else names[i] + "-impostor",
                    connect_ms=ramp_ms * i // total,
                    first_ms=ramp_ms * i // total + phase,
                    slots=slots,
                    interval_ms=interval_ms,
                    seed=seed,
                )
            )
            i += 1
    plans = [p for p in plans if p.slots > 0]
    if run.start is not None:
        start_ms = round(run.start.timestamp() * 1000)
    else:
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        start_ms = now_ms // 1000 * 1000
        if not run.pace:  # sent as fast as possible: keep the whole timeline in the past
            scenario = Scenario(fleet, plans, 0)
            start_ms = (now_ms - scenario.span_ms - 1000) // 1000 * 1000
    return Scenario(fleet, plans, start_ms)


def _device_names(fleet: FleetFile) -> list[str]:
    names: list[str] = []
    owner: dict[str, str] = {}
    for g, group in enumerate(fleet.groups):
        for n in range(1, group.count + 1):
            try:
                name = group.pattern.format(n=n)
                check_device_name(name)
            except (ValueError, KeyError, IndexError) as exc:
                raise FleetFileError(f"groups[{g}].id_pattern: {exc} (value {group.pattern!r})") from None
            if not GATEWAY_DEVICE_ID.fullmatch(name):
                raise FleetFileError(
                    f"groups[{g}].id_pattern: {name!r} is not a device id the gateway accepts "
                    f"(letters, digits, _ . : @ -) (value {group.pattern!r})"
                )
            if name in owner:
                raise FleetFileError(
                    f"groups[{g}].id_pattern: device id {name!r} is also made by group {owner[name]!r} "
                    f"(value {group.pattern!r})"
                )
            owner[name] = group.name
            names.append(name)
    return names


@dataclass
class Tally:
    """What a fleet sends, by kind; from the manifest pass or counted while publishing."""

    messages: int = 0
    valid: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by the gateway's reason code
    faults: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)  # by rule

    def count(self, event: Event) -> None:
        for message in event.messages:
            self.messages += 1
            if message.kind == "valid":
                self.valid += 1
            elif message.kind == "duplicate":
                self.duplicates += 1
            elif message.reason is not None:
                self.rejected[message.reason] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "valid": self.valid,
            "duplicates": self.duplicates,
            "rejected": dict(sorted(self.rejected.items())),
            "faults": {k: v for k, v in sorted(self.faults.items()) if v},
            "alerts": dict(sorted(self.alerts.items())),
        }


def header(scenario: Scenario) -> dict[str, Any]:
    fleet = scenario.fleet
    return {
        "version": MANIFEST_VERSION,
        "generator": "device-sim",
        "seed": fleet.run.seed,
        "start": rfc3339_ms(scenario.start_ms),
        "start_ms": scenario.start_ms,
        "devices": len(scenario.plans),
        "samples": scenario.scheduled,
        "groups": [
            {"name": g.name, "count": g.count, "id_pattern": g.pattern, "format": g.format, "rate": g.rate}
            for g in fleet.groups
        ],
    }


def write_manifest(scenario: Scenario, out: IO[bytes] | None) -> Tally:
    """Run every timeline without publishing; write the manifest to `out` (if given); return the tally."""
    tally = Tally()
    rejections: dict[tuple[str, str], int] = {}
    alerts: list[ExpectedAlert] = []
    if out is not None:
        out.write(header_line(header(scenario)))
    for timeline in scenario.timelines():
        tracker = AlertTracker(timeline.plan.name)
        carries_seq = timeline.plan.encoder.name == "native"
        for event in timeline.events():
            tally.count(event)
            if event.reboot:
                tracker.rebooted()
            for message in event.messages:
                if message.reading is not None:
                    tracker.observe(message.reading, timeline.sensors.episodes, carries_seq)
                    if out is not None:
                        out.write(reading_line(message.reading))
                elif message.reason is not None:
                    key = (message.topic, message.reason)
                    rejections[key] = rejections.get(key, 0) + 1
        tally.faults.update(timeline.counts)
        alerts.extend(tracker.finish())
    tally.alerts.update(a.rule for a in alerts)
    if out is not None:
        out.writelines(rejection_line(ExpectedRejection(t, r, n)) for (t, r), n in rejections.items())
        out.writelines(alert_line(a) for a in alerts)
    return tally


def save_manifest(scenario: Scenario, path: Path) -> Tally:
    with path.open("wb") as out:
        return write_manifest(scenario, out)


def manifest(scenario: Scenario) -> Manifest:
    """The whole manifest in memory, read back from the bytes `write_manifest` makes (small fleets, tests)."""
    buffer = io.BytesIO()
    write_manifest(scenario, buffer)
    return Manifest.from_records(orjson.loads(line) for line in buffer.getvalue().splitlines())
