"""SIGTERM mid-stream: the gateway exits 0 within 30 s and loses nothing.

Mosquitto, VictoriaMetrics and the gateway run as real processes; the gateway keeps its journal (SQLite, WAL)
in `tmp_path`, the same file across restarts. VictoriaMetrics keeps duplicate samples, so every sample that is
written twice is counted; it is never killed (a SIGKILLed VM loses its last ~5 s). `pytest -s` shows the figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from device_sim.blast import encode_all
from device_sim.fleet import FleetSpec, generate
from tests.support.crash_harness import FIELDS, Publisher, _compare_telemetry, _gateway, _stop_cleanly, _wait_stored
from tests.support.servers import Mosquitto, VictoriaMetrics

pytestmark = pytest.mark.integration


def test_sigterm_mid_stream_exits_0_within_30s_and_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    total = 40_000
    fleet = generate(FleetSpec(devices=400, messages=total, seed=2))
    gateway = _gateway(tmp_path, mosquitto, victoria).start()
    publisher = Publisher(encode_all(fleet.outgoing), mosquitto.url)
    publisher.start()
    try:
        acked = gateway.wait_for("gateway_messages_acknowledged", total * 0.4, timeout_s=60)
        assert acked >= total * 0.4, gateway.log_tail()
        before = gateway.metrics()
        stop_s = _stop_cleanly(gateway, timeout_s=30)  # within 30 s, or the stop fails
        stopped = [line for line in gateway.log_tail(10).splitlines() if "stopped:" in line]
        print(
            f"\nSIGTERM after {before['gateway_messages_acknowledged']:,.0f} acknowledged "
            f"(journal {before['gateway_journal_bytes']:,.0f} B): exit 0 in {stop_s:.2f} s\n  {stopped[-1:]}"
        )
        gateway.start()
        assert publisher.finish(60) == total
        took = _wait_stored(gateway, tmp_path / "gateway.db", total, timeout_s=90)
        metrics = gateway.metrics()
        _stop_cleanly(gateway)
    finally:
        gateway.kill()

    result, samples = _compare_telemetry(fleet.manifest, victoria)
    print(
        f"after the restart: stored the rest in {took:.1f} s, {metrics['gateway_readings_duplicate']:,.0f} "
        f"redelivered duplicates dropped; VictoriaMetrics: {result.stored:,} readings, {samples:,} samples, "
        f"missing {len(result.missing)}, duplicated samples {result.duplicated_samples}"
    )
    assert (len(result.missing), len(result.extra), len(result.mismatched)) == (0, 0, 0)
    assert result.duplicated_samples == 0
    assert samples == total * FIELDS
