"""Alert rule evaluation cost: 100,000 devices x 3 rules, microseconds per reading and bytes per device.

    python bench/rules.py [--devices 100000] [--rounds 7]

Rules: a threshold with `for` and hysteresis and a rate rule on `temperature` (selected by a device glob),
and a deadman rule over every device. Each round sends one reading per device, 10 s of device time after the
round before (0.5 % of the devices run hot now and then, so alerts fire and resolve), passes the receive
time as the wall clock, and runs the timers every 1,000 readings, as the pipeline would. Before any round is
timed, a warm-up round gives every device its state, measured with tracemalloc.

Per round, the same readings also go through a baseline loop that does only one dict lookup per reading; the
figures are the median over the rounds of (time of the round / readings), and the ratio engine / baseline.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.alerts import AlertEngine, parse_rules  # noqa: E402
from gateway.model import Reading  # noqa: E402

RULES = {
    "rules": [
        {"name": "hot", "kind": "threshold", "select": {"devices": ["dev-*"]}, "metric": "temperature", "op": ">",
         "value": 90, "for": "10s", "clear": {"op": "<", "value": 85}},
        {"name": "heating_fast", "kind": "rate", "select": {"devices": ["dev-*"]}, "metric": "temperature",
         "max": 2, "per": "1m"},
        {"name": "silent", "kind": "deadman", "for": "5m"},
    ]
}  # fmt: skip
T0 = 1_767_225_600 * 10**9
STEP = 10 * 10**9
TICK_EVERY = 1000


def make_round(devices: int, round_no: int, ids: list[str]) -> list[Reading]:
    """One reading per device; device i runs hot when i % 200 == 0, in rounds 2-3, 6-7, ... (so it fires)."""
    fields: dict[float, dict[str, float | bool | str]] = {}
    tags = [{"site": f"site-{k}"} for k in range(10)]
    readings = []
    for i in range(devices):
        temp = 95.0 if i % 200 == 0 and (round_no // 2) % 2 else 20.0 + (i % 7) * 0.3 + round_no * 0.05
        field = fields.get(temp)
        if field is None:
            field = fields[temp] = {"temperature": temp, "humidity": 50.0, "battery": 99.0}
        time_ns = T0 + round_no * STEP + i * 50_000  # the fleet's readings spread over 5 s of each round
        readings.append(Reading(ids[i], "telemetry", time_ns, field, tags[i % 10], f"{ids[i]}-{round_no}", round_no))
    return readings


def run_engine(engine: AlertEngine, readings: list[Reading]) -> tuple[int, int]:
    on_reading, tick = engine.on_reading, engine.tick
    alerts = 0
    start = time.perf_counter_ns()
    for n, reading in enumerate(readings, 1):
        alerts += len(on_reading(reading, reading.time_ns))
        if n % TICK_EVERY == 0:
            alerts += len(tick(reading.time_ns))
    return time.perf_counter_ns() - start, alerts


def run_baseline(table: dict[str, int], readings: list[Reading]) -> int:
    get = table.get
    start = time.perf_counter_ns()
    for reading in readings:
        get(reading.device)
    return time.perf_counter_ns() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    devices = args.devices
    ruleset = parse_rules(RULES)
    print(f"python bench/rules.py --devices {devices} --rounds {args.rounds}")
    print(f"{devices:,} devices x {len(ruleset)} rules ({', '.join(r.kind for r in ruleset.rules)})")

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    ids = [f"dev-{i:06d}" for i in range(devices)]
    engine = AlertEngine(ruleset)
    warm = make_round(devices, 0, ids)
    run_engine(engine, warm)
    del warm
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(
        f"memory: {held / devices:,.0f} bytes per device with its state in all {len(ruleset)} rules "
        f"({held / 2**20:,.1f} MiB, tracemalloc; includes the device id strings the engine keeps)"
    )

    table = {device: i for i, device in enumerate(ids)}
    engine_us, baseline_us = [], []
    for round_no in range(1, args.rounds + 1):
        readings = make_round(devices, round_no, ids)
        gc.collect()
        elapsed, alerts = run_engine(engine, readings)
        bare = run_baseline(table, readings)
        engine_us.append(elapsed / devices / 1000)
        baseline_us.append(bare / devices / 1000)
        print(
            f"  round {round_no}: engine {engine_us[-1]:.3f} us/reading, baseline {baseline_us[-1]:.3f} us/reading, "
            f"{alerts:,} transitions"
        )
    median, bare_median = statistics.median(engine_us), statistics.median(baseline_us)
    print(
        f"median: engine {median:.3f} us per reading ({1 / median:,.2f} M readings/s), "
        f"baseline {bare_median:.3f} us, ratio {median / bare_median:.1f}x; target <= 5 us: "
        f"{'met' if median <= 5 else 'MISSED'}"
    )

    start = time.perf_counter()
    data = engine.snapshot()
    took = time.perf_counter() - start
    fresh = AlertEngine(ruleset)
    start = time.perf_counter()
    fresh.restore(data, T0 + (args.rounds + 1) * STEP)
    print(
        f"snapshot: {len(data) / 2**20:.1f} MiB ({len(data) / devices:.0f} bytes per device) in {took * 1000:.0f} ms; "
        f"restore in {(time.perf_counter() - start) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
