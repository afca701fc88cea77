"""Acceptance: 10,000 simulated devices, each on its own MQTT connection, at 1 message/s each for 60 s against
a real Mosquitto; the rate achieved is within 2% of the target. About 70 s; bench/sim_connections.py prints
the same run's figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.simload import connections_run

pytestmark = pytest.mark.integration


@pytest.mark.timeout(240)
def test_ten_thousand_devices_each_on_its_own_connection_keep_the_rate(tmp_path: Path) -> None:
    result = connections_run(tmp_path, devices=10_000, rate=1.0, duration_s=60.0, ramp_up_s=5.0)
    run = result.report["run"]
    print("\n".join(result.lines()))
    assert run["peak_connected"] == 10_000
    assert (run["published"], run["acknowledged"], run["errors"]) == (600_000, 600_000, 0)
    assert abs(result.deviation) <= 0.02, result.lines()
    assert run["cpu_s"] < run["elapsed_s"], "the simulator needs less than one core"
