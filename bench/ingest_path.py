"""Micro benchmark of the work the gateway does per message on its busiest thread, stage by stage, in process.

    python bench/ingest_path.py [--messages 100000] [--devices 2000] [--rounds 5]

The drain scenario's messages (bench/e2e.py: the simulator's fleet, the example config and alert rules) go
through what the source's thread does for each one: MQTT decoding, `Ingestor.process` (decode, validation,
dedup, sequence tracking), the alert rules; then what the journal thread does for each chunk (its encoding)
and the InfluxDB sink for each batch (line protocol). CPU microseconds a message, median of the rounds: the
figure to compare before and after a change, steadier than a whole drain on a loaded machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_sim.fleet import FleetSpec, generate  # noqa: E402
from gateway.alerts.stage import AlertStage  # noqa: E402
from gateway.config.schema import load_config  # noqa: E402
from gateway.ingest.ingestor import Ingestor  # noqa: E402
from gateway.journal.chunks import encode_readings  # noqa: E402
from gateway.model import RawMessage, Reading  # noqa: E402
from gateway.mqtt.packets import MQTT_5, decode_packets, encode_publish  # noqa: E402
from gateway.runtime import tune_garbage_collector  # noqa: E402
from gateway.sinks.lineprotocol import LineEncoder  # noqa: E402

CHUNK = 2000  # about what the journal thread commits at once during a drain
BATCH = 5000  # influx.batch_size


def one_round(messages: list[tuple[str, bytes]], stream: bytes, expected: int) -> dict[str, float]:
    config = load_config(ROOT / "config" / "gateway.example.yaml")
    config = config.model_copy(
        update={"alerts": config.alerts.model_copy(update={"rules_file": ROOT / "config" / "rules.example.yaml"})}
    )
    ingestor, alerts, encoder = Ingestor(config), AlertStage(config.alerts), LineEncoder()
    spent: dict[str, float] = {}

    started = time.process_time()
    packets = list(decode_packets(stream, MQTT_5)[0])
    spent["mqtt decode"] = time.process_time() - started

    started = time.process_time()
    raws = [RawMessage(p.topic, p.payload, 1, time.time_ns(), (1, p.packet_id), p.dup, False, p.packet_id)
            for p in packets]  # fmt: skip
    spent["RawMessage"] = time.process_time() - started

    readings: list[Reading] = []
    outcomes = []
    started = time.process_time()
    for raw in raws:
        outcomes.append(ingestor.process(raw))
    spent["Ingestor.process"] = time.process_time() - started

    started = time.process_time()
    for raw, outcome in zip(raws, outcomes, strict=True):
        if outcome.readings or outcome.sequence_events:
            alerts.on_readings(outcome.readings, outcome.sequence_events, raw.received_at_ns)
        readings.extend(outcome.readings)
    spent["alert rules"] = time.process_time() - started

    started = time.process_time()
    for i in range(0, len(readings), CHUNK):
        encode_readings(readings[i : i + CHUNK])
    spent["journal chunk encoding"] = time.process_time() - started

    started = time.process_time()
    for i in range(0, len(readings), BATCH):
        encoder.encode(readings[i : i + BATCH])
    spent["line protocol"] = time.process_time() - started
    assert len(readings) == expected, f"{len(readings)} readings, expected {expected}"
    return {stage: seconds * 1e6 / len(messages) for stage, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--gc", choices=["tuned", "default"], default="tuned", help="tuned: as `gateway run` sets it up (runtime.py)"
    )
    args = parser.parse_args()
    fleet = generate(FleetSpec(devices=args.devices, messages=args.messages, seed=2026))
    messages = [(topic, payload) for topic, payload, *_ in fleet.outgoing]
    stream = b"".join(
        encode_publish(topic, payload, qos=1, packet_id=i % 65535 + 1, protocol=MQTT_5)
        for i, (topic, payload) in enumerate(messages)
    )
    expected = len(fleet.manifest.readings)
    if args.gc == "tuned":
        tune_garbage_collector()
    rounds = [one_round(messages, stream, expected) for _ in range(args.rounds)]
    print(f"{len(messages):,} messages from {args.devices:,} devices, garbage collector {args.gc}")
    print(f"CPU microseconds a message, median of {args.rounds} rounds (each round's in brackets)")
    for stage in rounds[0]:
        figures = [r[stage] for r in rounds]
        print(f"  {stage:24s} {statistics.median(figures):6.2f}   ({', '.join(f'{f:.2f}' for f in figures)})")
    totals = [sum(r.values()) for r in rounds]
    print(f"  {'total':24s} {statistics.median(totals):6.2f}   (min {min(totals):.2f})")


if __name__ == "__main__":
    main()
