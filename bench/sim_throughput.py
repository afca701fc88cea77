"""Raw throughput of the simulator: messages per second into a fresh Mosquitto at QoS 0 and QoS 1.

    python bench/sim_throughput.py [--messages 600000] [--devices 1000] [--rounds 3]

Each configuration (processes x connections per process) runs `device-sim run --no-pace --preload` (every
message generated before the clock starts, then sent as fast as the broker acknowledges) against a fresh
Mosquitto on a free port with no subscriber, `--rounds` times; the table shows medians, and for the fastest
configuration what limited it, from CPU time: the simulator's processes (their reports), the broker
(/proc/<pid>/stat) and the whole machine (/proc/stat, which also shows load from other processes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.simload import ThroughputResult, throughput_run  # noqa: E402

CONFIGS = ((1, 1), (1, 4), (2, 2), (4, 2))  # (processes, connections per process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=600_000)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"{args.messages:,} messages from {args.devices:,} devices a run, {args.rounds} rounds, {cores} cores")
    with tempfile.TemporaryDirectory(prefix="bench-sim-throughput-") as tmp:
        for qos in (0, 1):
            print(f"\nQoS {qos}: processes x connections   median msg/s   rounds", flush=True)
            best: tuple[float, tuple[int, int], ThroughputResult] | None = None
            for processes, connections in CONFIGS:
                runs = []
                for round_no in range(args.rounds):
                    workdir = Path(tmp) / f"q{qos}-{processes}x{connections}-{round_no}"
                    workdir.mkdir()
                    runs.append(
                        throughput_run(
                            workdir,
                            messages=args.messages,
                            devices=args.devices,
                            processes=processes,
                            connections=connections,
                            qos=qos,
                        )
                    )
                rates = [r.rate_per_s for r in runs]
                median = statistics.median(rates)
                middle = sorted(runs, key=lambda r: r.rate_per_s)[len(runs) // 2]
                print(
                    f"       {processes} x {connections}{'':22}{median:12,.0f}   "
                    + ", ".join(f"{r:,.0f}" for r in rates),
                    flush=True,
                )
                if best is None or median > best[0]:
                    best = (median, (processes, connections), middle)
            assert best is not None
            median, (processes, connections), run = best
            print(
                f"  fastest: {processes} process(es) x {connections} connection(s), {median:,.0f} msg/s; "
                f"limited by {run.limit(cores)}"
            )


if __name__ == "__main__":
    main()
