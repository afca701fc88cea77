"""End-to-end throughput: the gateway against the naive baseline, same messages, same machine, same run.

    python bench/e2e.py [--scenario live|drain] [--messages 200000] [--devices 2000] [--rounds 3]

live: for each round and each consumer, a fresh Mosquitto and VictoriaMetrics on free ports, the consumer
started and subscribed, then every message published (QoS 1, pre-encoded, so the publisher is not the limit).
The time runs from the first publish to the moment the store holds the last reading.
drain (bench/drain.py): the backlog is queued in the consumer's persistent session first; the time runs from
the consumer's process start to the last reading stored; paho's bare manual-ack loop (bench/bare_drain.py) is
measured beside them as the MQTT library's own ceiling.
Every consumer must store every reading, or the round fails. Prints per-round figures, medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import drain  # noqa: E402
from device_sim.blast import blast, encode_all  # noqa: E402
from device_sim.fleet import FleetSpec, generate  # noqa: E402
from tests.support.gateway_proc import GatewayProcess  # noqa: E402
from tests.support.servers import Mosquitto, VictoriaMetrics  # noqa: E402

FIELDS_PER_READING = 4  # temperature, humidity, battery, relay
BROKER_CONF = "autosave_interval 30\n"  # the benchmark measures consumers, not the broker's disk


def count_readings(vm: VictoriaMetrics) -> int:
    """Counted inside VictoriaMetrics: exporting 200,000 samples a poll would load the machine being measured."""
    query = urllib.parse.urlencode({"query": "sum(count_over_time(telemetry_temperature[1d]))"})
    with urllib.request.urlopen(f"{vm.url}/api/v1/query?{query}", timeout=10) as resp:
        result = json.load(resp)["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def wait_stored(vm: VictoriaMetrics, expected: int, timeout_s: float) -> tuple[float, int]:
    """Poll the store until it holds `expected` readings; returns (time it first did, count)."""
    deadline = time.perf_counter() + timeout_s
    count = 0
    while time.perf_counter() < deadline:
        vm.force_flush()
        count = count_readings(vm)
        if count >= expected:
            return time.perf_counter(), count
        time.sleep(0.2)
    return time.perf_counter(), count


def run_baseline(broker: Mosquitto, vm: VictoriaMetrics, workdir: Path) -> subprocess.Popen[bytes]:
    log = (workdir / "baseline.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "naive_consumer.py"), "--broker", broker.url, "--influx", vm.url],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    time.sleep(2.0)  # connected and subscribed (it has no readiness endpoint; that is the point)
    return proc


def one_round(kind: str, packets: list[bytes], readings: int, workdir: Path) -> float:
    workdir.mkdir(parents=True)
    with Mosquitto(workdir / "mosquitto", extra_conf=BROKER_CONF) as broker, VictoriaMetrics(workdir / "vm") as vm:
        gateway: GatewayProcess | None = None
        baseline: subprocess.Popen[bytes] | None = None
        if kind == "gateway":
            gateway = GatewayProcess(
                workdir / "gateway",
                {
                    "GATEWAY_MQTT__URL": broker.url,
                    "GATEWAY_INFLUX__URL": vm.url,
                    "GATEWAY_INFLUX__TOKEN": "bench",
                    "GATEWAY_LOG__LEVEL": "WARNING",
                },
                config=ROOT / "bench" / "gateway.bench.yaml",
            ).start()
        else:
            baseline = run_baseline(broker, vm, workdir)
        try:
            start = time.perf_counter()
            sent = blast(packets, broker.url)
            end, stored = wait_stored(vm, readings, timeout_s=300)
            if stored != readings:
                detail = gateway.log_tail() if gateway else (workdir / "baseline.log").read_text()[-3000:]
                raise SystemExit(f"{kind}: the store holds {stored} readings, expected {readings}\n{detail}")
            elapsed = end - start
            print(
                f"  {kind:8s} {readings / elapsed:9,.0f} readings/s  ({elapsed:5.2f} s; "
                f"publish alone {sent.elapsed_s:5.2f} s = {sent.rate_per_s:,.0f} msg/s)",
                flush=True,
            )
            return readings / elapsed
        finally:
            if gateway is not None:
                gateway.stop()
            if baseline is not None:
                baseline.send_signal(signal.SIGTERM)
                baseline.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenario", choices=["live", "drain"], default="live")
    args = parser.parse_args()

    fleet = generate(FleetSpec(devices=args.devices, messages=args.messages, seed=2026))
    packets = encode_all(fleet.outgoing)
    readings = len(fleet.manifest.readings)
    print(f"{args.messages:,} messages from {args.devices:,} devices, {os.cpu_count()} cores; {args.rounds} rounds")
    kinds = drain.CONSUMERS if args.scenario == "drain" else ("baseline", "gateway")
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        for round_no in range(args.rounds):
            print(f"round {round_no + 1} ({args.scenario})", flush=True)
            for kind in kinds:
                workdir = Path(tmp) / f"{round_no}-{kind}"
                if args.scenario == "drain":
                    results[kind].append(drain.one_round(kind, packets, readings, workdir, wait_stored))
                else:
                    results[kind].append(one_round(kind, packets, readings, workdir))
    base, gw = statistics.median(results["baseline"]), statistics.median(results["gateway"])
    if args.scenario == "drain":
        bare = statistics.median(results["paho-bare"])
        print(f"median paho bare drain (MQTT 5, manual ack, no work) {bare:,.0f} messages/s")
        print(f"ratio gateway/paho-bare {gw / bare:.2f}")
    print(f"median baseline {base:,.0f} readings/s")
    print(f"median gateway  {gw:,.0f} readings/s  (validation and dedup on, ack after the journal commit)")
    print(f"ratio gateway/baseline {gw / base:.2f}")


if __name__ == "__main__":
    main()
