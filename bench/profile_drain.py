"""Where the gateway's time goes while it drains a backlog: the drain scenario's gateway round under py-spy.

    python bench/profile_drain.py [--messages 200000] [--devices 2000] [--out drain.txt] [--gil/--no-gil]

Sets up the backlog as bench/drain.py does, starts the gateway, attaches `py-spy record --threads` (with --gil
by default) to it for the whole drain, and writes collapsed stacks (one line a stack, a sample count at its end:
flamegraph.pl or speedscope read them). Prints the drain rate and the top frames by share of samples.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import drain  # noqa: E402
from bench.e2e import wait_stored  # noqa: E402
from device_sim.blast import blast, encode_all  # noqa: E402
from device_sim.fleet import FleetSpec, generate  # noqa: E402
from tests.support.gateway_proc import GatewayProcess  # noqa: E402
from tests.support.servers import Mosquitto, VictoriaMetrics  # noqa: E402


def top_frames(collapsed: Path, limit: int) -> list[tuple[str, float]]:
    """Inclusive share of samples per function (each counted once a stack)."""
    totals: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        for frame in set(stack.split(";")):
            totals[frame] += n
    return [(frame, n / samples) for frame, n in totals.most_common(limit)] if samples else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=Path("drain-profile.txt"))
    parser.add_argument("--gil", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()

    fleet = generate(FleetSpec(devices=args.devices, messages=args.messages, seed=2026))
    packets = encode_all(fleet.outgoing)
    readings = len(fleet.manifest.readings)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        workdir = Path(tmp)
        with (
            Mosquitto(workdir / "mosquitto", extra_conf=drain.BROKER_CONF) as broker,
            VictoriaMetrics(workdir / "vm") as vm,
        ):
            env = {
                "GATEWAY_MQTT__URL": broker.url,
                "GATEWAY_INFLUX__URL": vm.url,
                "GATEWAY_INFLUX__TOKEN": "bench",
                "GATEWAY_LOG__LEVEL": "WARNING",
            }
            gateway = GatewayProcess(workdir / "gateway", env, config=drain.gateway_config(workdir))
            gateway.start().stop()
            blast(packets, broker.url)
            start = time.perf_counter()
            proc = gateway.launch().proc
            assert proc is not None
            spy = [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(proc.pid),
                "--threads",
                "--rate",
                "250",
            ]
            spy += ["--format", "raw", "--output", str(args.out.resolve()), *(["--gil"] if args.gil else ["--idle"])]
            recorder = subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                end, stored = wait_stored(vm, readings, timeout_s=drain.STORE_TIMEOUT_S)
            finally:
                gateway.stop()
                recorder.wait(30)
    print(f"stored {stored:,} of {readings:,} readings: {stored / (end - start):,.0f} readings/s (under py-spy)")
    for frame, share in top_frames(args.out, args.top):
        print(f"{share:6.1%}  {frame}")


if __name__ == "__main__":
    main()
