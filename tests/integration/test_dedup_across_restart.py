"""The dedup window survives a gateway restart: redelivered messages are not stored twice.

Mosquitto, VictoriaMetrics and the gateway run as real processes; the gateway keeps its journal (SQLite, WAL)
in `tmp_path`, the same file across restarts. VictoriaMetrics keeps duplicate samples, so every sample that is
written twice is counted; it is never killed (a SIGKILLed VM loses its last ~5 s). `pytest -s` shows the figures.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from device_sim.blast import blast, encode_all
from device_sim.fleet import FleetSpec, generate
from tests.support.crash_harness import FIELDS, TELEMETRY, _gateway, _stop_cleanly, _wait_idle, _wait_stored
from tests.support.servers import Mosquitto, VictoriaMetrics
from tests.support.storecheck import compare

pytestmark = pytest.mark.integration


def test_dedup_window_survives_a_restart(tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics) -> None:
    total = 10_000
    fleet = generate(FleetSpec(devices=100, messages=total, seed=3))
    packets = encode_all(fleet.outgoing)
    gateway = _gateway(tmp_path, mosquitto, victoria).start()
    try:
        blast(packets, mosquitto.url)
        _wait_stored(gateway, tmp_path / "gateway.db", total, timeout_s=60)
        _stop_cleanly(gateway)
        victoria.force_flush()
        before = victoria.count_samples(TELEMETRY)
        assert before == total * FIELDS

        gateway.start()
        blast(packets, mosquitto.url)  # the same ids, published again
        acked = gateway.wait_for("gateway_messages_acknowledged", total, timeout_s=60)
        metrics = _wait_idle(gateway, timeout_s=30)
        _stop_cleanly(gateway)
    finally:
        gateway.kill()

    restored = re.findall(r"restored (\d+) dedup keys", gateway.log_path.read_text())
    victoria.force_flush()
    after = victoria.count_samples(TELEMETRY)
    print(
        f"\nrepublished {total:,} after a restart ({restored[-1:]} dedup keys restored): acknowledged {acked:,.0f}, "
        f"duplicates {metrics['gateway_readings_duplicate']:,.0f}, accepted {metrics['gateway_readings_accepted']:,.0f}"
        f"; VictoriaMetrics samples {before:,} -> {after:,}"
    )
    assert acked == total
    assert metrics["gateway_readings_duplicate"] == total
    assert metrics["gateway_readings_accepted"] == 0
    assert after == before
    assert compare(fleet.manifest, victoria).duplicated_samples == 0
