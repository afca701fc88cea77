"""The manifest's alerts are what the gateway's own alert engine fires: the expected readings of a fleet with
anomalies, fed in sending order through `gateway.alerts` with config/rules.sim.yaml (and resets from the
gateway's sequence tracking), give exactly the manifest's episodes. Deadman alerts run on the wall clock and
are only approximate in the manifest, so they are left out here."""

from __future__ import annotations

from collections import defaultdict

from device_sim.fleetfile import load_fleet
from device_sim.manifest import ExpectedReading
from device_sim.scenario import build, manifest
from gateway.alerts.engine import AlertEngine
from gateway.alerts.rules import load_rules
from gateway.ingest.sequence import SequenceTracker
from gateway.model import Reading
from tests.support import ROOT

Episode = tuple[str, str, int, int | None]


def test_manifest_alerts_match_the_gateway_engine() -> None:
    overrides = {
        "groups.*.format": "native",
        "run.duration_s": 900,
        "run.start": "2026-11-27T10:00:00Z",
        "faults.reboot": 0.01,
        "faults.reboot_s": 2,
    }
    fleet = load_fleet(ROOT / "config" / "fleet.example.yaml", overrides)
    group = fleet.groups[0]
    anomalies = [a.model_copy(update={"rate": a.rate * 20}) for a in group.anomalies]
    low = {"start_min": 15.05, "start_max": 15.2, "drain_per_hour": 20}  # drains below 15 within the run
    battery = [s.model_copy(update=low) if s.kind == "battery" else s for s in group.sensors]
    fleet = fleet.model_copy(update={"groups": [group.model_copy(update={"anomalies": anomalies, "sensors": battery})]})
    expected = manifest(build(fleet))

    rules = load_rules(ROOT / "config" / "rules.sim.yaml")
    episodes: set[Episode] = set()
    by_device: dict[str, list[ExpectedReading]] = defaultdict(list)
    for r in expected.readings:
        by_device[r.device].append(r)
    for readings in by_device.values():  # one engine a device: its timers run on that device's clock
        engine, tracker = AlertEngine(rules), SequenceTracker()
        firing: dict[str, int] = {}
        for r in readings:
            reading = Reading(r.device, r.measurement, r.time_ns, dict(r.fields), r.tags, r.id, r.seq, True)
            alerts = engine.tick(now_ns=r.time_ns)
            alerts += engine.on_reading(reading, now_ns=r.time_ns)
            event = tracker.observe(reading)
            if event is not None and event.kind == "reset":
                alerts += engine.on_sequence_event(r.device, "reset", r.id, r.time_ns, now_ns=r.time_ns)
            for alert in alerts:
                if alert.transition == "firing":
                    firing[alert.rule] = alert.starts_at_ns
                elif alert.transition == "resolved" and alert.rule in firing:
                    end = None if alert.rule == "device_rebooted" else alert.ends_at_ns  # wall clock: left open
                    episodes.add((alert.rule, alert.device, firing.pop(alert.rule), end))
        episodes |= {(rule, readings[0].device, start, None) for rule, start in firing.items()}
    episodes = {e for e in episodes if e[0] != "device_silent"}

    predicted = {(a.rule, a.device, a.starts_at_ns, a.ends_at_ns) for a in expected.alerts if a.rule != "device_silent"}
    assert {e[0] for e in predicted} == {"temperature_high", "pressure_out_of_range", "battery_low", "device_rebooted"}
    assert predicted == episodes
