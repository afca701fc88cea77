"""Acceptance: a simulated fleet with every fault kind on, through a real Mosquitto and the gateway process
(config/devices.example.yaml: every payload format), then `device-sim verify` on both stores: 0 missing,
0 extra, 0 mismatched. The gateway's own counters must tell the same story as the manifest."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from device_sim.manifest import Manifest
from device_sim.timeline import FAULTS
from tests.support import ROOT
from tests.support.gateway_proc import GatewayProcess, store_env
from tests.support.servers import Mosquitto, VictoriaMetrics

pytestmark = pytest.mark.integration
FAULT_RATES = {name: 0.03 for name in FAULTS} | {"malformed": 0.15, "clock_skew": 0.3}
FAULT_TIMES = {"silence_s": 3, "reboot_s": 2, "disconnect_s": 1}


def device_sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device_sim", *args], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )


def test_every_fault_through_the_gateway_then_verify_finds_no_difference(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    env = store_env(tmp_path, mosquitto.url, victoria.url, "gw-sim-e2e")
    manifest_path, report_path = tmp_path / "manifest.jsonl", tmp_path / "report.json"
    faults = [arg for k, v in (FAULT_RATES | FAULT_TIMES).items() for arg in ("--fault", f"{k}={v}")]
    with GatewayProcess(tmp_path / "gw", env, config=ROOT / "config" / "devices.example.yaml") as gateway:
        run = device_sim(
            "run", "--fleet", "config/fleet.example.yaml", "--broker", mosquitto.url, "--duration", "12",
            "--ramp-up", "2", "--seed", "2026", *faults, "--manifest", str(manifest_path), "--report", str(report_path),
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        report = orjson.loads(report_path.read_bytes())
        assert set(report["run"]["sent"]["faults"]) == set(FAULTS), "every fault kind must have happened"
        assert report["run"]["errors"] == 0

        for store in (["--sqlite", str(tmp_path / "gateway.db")], ["--url", victoria.url]):
            verify = device_sim("verify", "--manifest", str(manifest_path), *store, "--wait", "30")
            assert verify.returncode == 0, verify.stdout + verify.stderr
            assert "missing     0\n  extra       0\n  mismatched  0" in verify.stdout
            assert "stored twice" not in verify.stdout
        metrics = gateway.metrics()

    manifest = Manifest.read_jsonl(manifest_path)
    expected: Counter[str] = Counter()
    for rejection in manifest.rejections:
        expected[rejection.reason] += rejection.count
    assert len(expected) >= 8, expected
    resent = report["run"]["resent"]  # a PUBLISH resent after an abrupt drop may be delivered twice
    for reason, count in expected.items():
        got = metrics[f'gateway_messages_rejected{{reason="{reason}"}}']
        assert count <= got <= count + resent, (reason, count, got)
    duplicates = sum(r.duplicates for r in manifest.readings)
    assert duplicates > 0
    assert duplicates <= metrics["gateway_readings_duplicate"] <= duplicates + resent
    for sink in ("sqlite", "influx"):
        assert metrics[f'gateway_readings_stored{{sink="{sink}"}}'] >= len(manifest.readings)
