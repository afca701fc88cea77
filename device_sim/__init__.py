"""Device simulator: generates a deterministic fleet's telemetry and publishes it over MQTT.

It speaks only the gateway's wire format and imports nothing from the gateway, so it can test any
build of the gateway as a black box.
"""

from device_sim.fleet import Fleet, FleetSpec, generate
from device_sim.manifest import ExpectedReading, ExpectedRejection, Manifest, Summary
from device_sim.publisher import PublishStats, publish
from device_sim.wire import MALFORMED_REASONS, Outgoing

__all__ = [
    "MALFORMED_REASONS",
    "ExpectedReading",
    "ExpectedRejection",
    "Fleet",
    "FleetSpec",
    "Manifest",
    "Outgoing",
    "PublishStats",
    "Summary",
    "generate",
    "publish",
]
