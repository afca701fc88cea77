"""Connections: 10,000 simulated devices, each on its own MQTT connection, at 1 message/s each for 60 s.

    python bench/sim_connections.py [--devices 10000] [--rate 1] [--duration 60] [--ramp-up 10] [--qos 1]

A private Mosquitto (persistence on, as config/mosquitto.conf) on a free port; `device-sim run` as its own
process. Prints the target and the achieved rate (acknowledged messages per second while every device was
online), the simulator's and the broker's CPU time and peak memory. Exits 1 if the rate is off by more than
2% or any message was not acknowledged.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.simload import connections_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second per device")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--ramp-up", type=float, default=10.0)
    parser.add_argument("--qos", type=int, default=1, choices=(0, 1))
    parser.add_argument("--protocol", default="5", choices=("5", "3.1.1"))
    parser.add_argument("--no-persistence", action="store_true", help="broker without its session store")
    args = parser.parse_args()
    print(
        f"{args.devices:,} devices, one connection each, {args.rate:g} msg/s each for {args.duration:g} s "
        f"(ramp-up {args.ramp_up:g} s), QoS {args.qos}, MQTT {args.protocol}; {os.cpu_count()} cores",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-sim-connections-") as tmp:
        result = connections_run(
            Path(tmp),
            devices=args.devices,
            rate=args.rate,
            duration_s=args.duration,
            ramp_up_s=args.ramp_up,
            qos=args.qos,
            protocol=args.protocol,
            persistence=not args.no_persistence,
        )
    for line in result.lines():
        print(line)
    ok = abs(result.deviation) <= 0.02 and result.report["run"]["errors"] == 0
    print("PASS: within 2% of the target" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
