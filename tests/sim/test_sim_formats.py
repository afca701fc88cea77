"""Every message the simulator sends, fed straight into the gateway's ingest stage with the mappings of
config/devices.example.yaml: a valid one yields exactly the reading the manifest expects, a duplicate is
dropped, a broken one is rejected for exactly the reason the manifest names.

This is what makes the manifest honest; the end-to-end test (test_sim_e2e.py) then checks the same through
a real broker, the gateway process and its stores.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from device_sim.fleetfile import load_fleet
from device_sim.formats import ENCODERS
from device_sim.scenario import build
from device_sim.timeline import FAULTS
from gateway.config.schema import load_config
from gateway.ingest.ingestor import Ingestor
from gateway.model import RawMessage
from tests.support import ROOT


@pytest.mark.parametrize("payload_format", sorted(ENCODERS))
def test_the_gateway_makes_of_every_message_what_the_manifest_says(payload_format: str) -> None:
    ingestor = Ingestor(load_config(ROOT / "config" / "devices.example.yaml"))
    overrides = {f"faults.{name}": 0.05 for name in FAULTS} | {"faults.malformed": 0.2}
    start = time.time() - 3600  # an hour of samples, all in the past
    fleet = load_fleet(
        ROOT / "config" / "fleet.example.yaml",
        {**overrides, "groups.*.format": payload_format, "run.duration_s": 300, "run.start": str(start)},
    )
    outcomes: Counter[str] = Counter()
    for timeline in build(fleet).timelines():
        for event in timeline.events():
            for message in event.messages:
                raw = RawMessage(message.topic, message.payload, 1, time.time_ns())
                outcome = ingestor.process(raw)
                if message.kind == "rejected":
                    assert outcome.rejection is not None, message
                    assert outcome.rejection.reason == message.reason, (message, outcome.rejection.detail)
                    outcomes[f"rejected:{message.reason}"] += 1
                elif message.kind == "duplicate":
                    assert (outcome.readings, outcome.duplicates, outcome.rejection) == ([], 1, None), message
                    outcomes["duplicate"] += 1
                else:
                    assert outcome.rejection is None, (message, outcome.rejection)
                    (reading,) = outcome.readings
                    expected = message.reading
                    assert expected is not None
                    assert (reading.device, reading.measurement) == (expected.device, expected.measurement)
                    assert reading.fields == expected.fields, message
                    assert reading.tags == expected.tags
                    assert reading.time_from_device == (not expected.received)
                    if not expected.received:
                        assert reading.time_ns == expected.time_ns, message
                    outcomes["valid"] += 1
    encoder = ENCODERS[payload_format]
    assert outcomes["valid"] > 1000
    assert {f"rejected:{reason}" for reason in encoder.reasons} | {"rejected:payload_too_large"} <= set(outcomes)
    if encoder.name == "native":
        assert outcomes["rejected:device_mismatch"] > 0
    assert (outcomes["duplicate"] > 0) == encoder.timed
