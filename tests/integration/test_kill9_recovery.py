"""At-least-once delivery across kill -9: three kills during 200,000 messages lose nothing.

Mosquitto, VictoriaMetrics and the gateway run as real processes; the gateway keeps its journal (SQLite, WAL)
in `tmp_path`, the same file across restarts. VictoriaMetrics keeps duplicate samples, so every sample that is
written twice is counted; it is never killed (a SIGKILLed VM loses its last ~5 s). `pytest -s` shows the figures.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest

from device_sim.blast import encode_all
from device_sim.fleet import FleetSpec, generate
from tests.support.crash_harness import (
    ACKED,
    FIELDS,
    Publisher,
    _compare_telemetry,
    _gateway,
    _stop_cleanly,
    _wait_stored,
)
from tests.support.gateway_proc import GatewayProcess, sqlite_rows
from tests.support.servers import Mosquitto, VictoriaMetrics

pytestmark = pytest.mark.integration


def _rss_mb(gateway: GatewayProcess) -> tuple[float, float]:
    """(current, peak) resident set size of the gateway process in MiB; zeros when it cannot be read."""
    assert gateway.proc is not None
    try:
        status = Path(f"/proc/{gateway.proc.pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
    return int(values.get("VmRSS", 0)) / 1024, int(values.get("VmHWM", 0)) / 1024


def test_three_kill9_during_200k_messages_lose_nothing(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    seed = 20261127
    total = 200_000
    fleet = generate(FleetSpec(devices=2000, messages=total, seed=seed))
    packets = encode_all(fleet.outgoing)
    rng = random.Random(seed)
    # Kill points as shares of the messages acknowledged so far, one in each third of the run.
    kill_at = [int(rng.uniform(lo, hi) * total) for lo, hi in ((0.1, 0.3), (0.4, 0.6), (0.7, 0.9))]
    gateway = _gateway(tmp_path, mosquitto, victoria).start()
    began = time.monotonic()
    publisher = Publisher(packets, mosquitto.url)
    publisher.start()
    acked_before = 0.0  # by the gateway processes killed so far
    restarts: list[float] = []
    try:
        for threshold in kill_at:
            # The whole run's budget of 150 s, shared by the three waits.
            gateway.wait_for(ACKED, threshold - acked_before, timeout_s=max(0.0, began + 150 - time.monotonic()))
            time.sleep(rng.uniform(0.0, 0.3))  # the scenario: a kill at a random moment, not at a metrics poll
            metrics = gateway.metrics()
            rss, peak = _rss_mb(gateway)
            gateway.kill()
            acked_before += metrics["gateway_messages_acknowledged"]
            t = time.monotonic()
            gateway.start()
            restarts.append(time.monotonic() - t)
            print(
                f"\nkill -9 at {time.monotonic() - began:5.1f} s: ~{acked_before:,.0f} acknowledged in all, "
                f"journal {metrics['gateway_journal_bytes']:,.0f} B, RSS {rss:.0f} MiB (peak {peak:.0f}); "
                f"up again in {restarts[-1]:.2f} s"
            )
        published = publisher.finish(120)
        assert published == total
        _wait_stored(gateway, tmp_path / "gateway.db", total, timeout_s=150)
        metrics = gateway.metrics()
        rss, peak = _rss_mb(gateway)
        elapsed = time.monotonic() - began
        stop_s = _stop_cleanly(gateway)
    finally:
        gateway.kill()

    result, samples = _compare_telemetry(fleet.manifest, victoria)
    print(
        f"200k run: published in {publisher.elapsed_s:.1f} s, all stored after {elapsed:.1f} s with 3 kills "
        f"(restarts took {', '.join(f'{r:.2f}' for r in restarts)} s); last gateway: "
        f"{metrics['gateway_readings_duplicate']:,.0f} duplicates dropped, RSS {rss:.0f} MiB (peak {peak:.0f}), "
        f"SIGTERM stop {stop_s:.1f} s\nVictoriaMetrics: {result.stored:,} distinct readings, {samples:,} samples, "
        f"missing {len(result.missing)}, extra {len(result.extra)}, mismatched {len(result.mismatched)}, "
        f"duplicated samples {result.duplicated_samples:,} ({result.duplicated_samples / FIELDS:,.0f} readings)"
    )
    assert (len(result.missing), len(result.extra), len(result.mismatched)) == (0, 0, 0), result.missing[:5]
    assert result.stored == total
    assert sqlite_rows(tmp_path / "gateway.db") == total * FIELDS
    # Exactly 200,000 readings as InfluxDB counts them (one point per series and timestamp: result.stored above),
    # and exactly once in SQLite, which overwrites like InfluxDB. VictoriaMetrics keeps a re-written sample
    # twice, and a kill that lands after it accepted a batch but before the journal committed the sink's
    # cursor makes the restarted gateway write that batch again (README, "Stored once"): at most one batch a
    # kill, never a reading that was not sent.
    assert result.duplicated_samples <= 3 * 5000 * FIELDS, (
        f"{result.duplicated_samples:,} samples ({result.duplicated_samples // FIELDS:,} readings) stored twice"
    )
    assert samples == total * FIELDS + result.duplicated_samples
