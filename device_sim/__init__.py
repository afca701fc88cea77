"""Device simulator: realistic fleets with faults, published live over MQTT, and the ground truth of what a
correct gateway must store, reject and alert (`device-sim run`, `device-sim verify`; see the README).

It speaks only the wire formats and imports nothing from the gateway, so it can test any build of the gateway
as a black box. `load_fleet` + `build` + `Runner` are the live simulator; `generate` + `publish` (or `blast`)
the older batch stream that tests and benchmarks use to push a fixed list of native messages.
"""

from device_sim.fleet import Fleet, FleetSpec, generate
from device_sim.fleetfile import FleetFile, load_fleet
from device_sim.manifest import ExpectedAlert, ExpectedReading, ExpectedRejection, Manifest, Summary
from device_sim.publisher import PublishStats, publish
from device_sim.runner import Runner, RunResult
from device_sim.scenario import Scenario, build
from device_sim.wire import MALFORMED_REASONS, Outgoing

__all__ = [
    "MALFORMED_REASONS",
    "ExpectedAlert",
    "ExpectedReading",
    "ExpectedRejection",
    "Fleet",
    "FleetFile",
    "FleetSpec",
    "Manifest",
    "Outgoing",
    "PublishStats",
    "RunResult",
    "Runner",
    "Scenario",
    "Summary",
    "build",
    "generate",
    "load_fleet",
    "publish",
]
