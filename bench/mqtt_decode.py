"""Micro benchmark of the MQTT receive path: `decode_packets` over one buffer of typical PUBLISH packets.

    python bench/mqtt_decode.py [--packets 100000] [--rounds 5] [--protocol 5|4]

The packets are what a gateway drains: QoS 1, topic `devices/dev-NNNN/telemetry`, a ~100-byte JSON payload,
an empty MQTT 5 property block. Prints microseconds a packet for each round and the median, for the whole
buffer in one call (as asked: 100,000 packets, so the garbage collector sees them all) and in 64 KiB slices
(what the client's reads hand the decoder).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.mqtt.packets import MQTT_5, Publish, decode_packets, encode_publish

READ_SIZE = 1 << 16


def reading(i: int, devices: int = 2000) -> tuple[str, bytes]:
    """The i-th message of a fleet: topic `devices/dev-NNNN/telemetry`, a ~100-byte JSON reading."""
    device = f"dev-{i % devices:04d}"
    payload = (
        f'{{"device":"{device}","seq":{i // devices},"ts":{1764806400000 + i},'
        f'"temperature":21.{i % 10},"humidity":48.2,"battery":3.71}}'
    ).encode()
    return f"devices/{device}/telemetry", payload


def make_buffer(count: int, protocol: int) -> bytes:
    return b"".join(
        encode_publish(*reading(i), qos=1, packet_id=i % 65535 + 1, protocol=protocol) for i in range(count)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--protocol", type=int, choices=(4, 5), default=MQTT_5)
    args = parser.parse_args()
    buffer = bytearray(make_buffer(args.packets, args.protocol))
    whole, sliced = [], []
    for round_no in range(args.rounds):
        start = time.perf_counter()
        packets, consumed = decode_packets(buffer, args.protocol)
        elapsed = time.perf_counter() - start
        if consumed != len(buffer) or len(packets) != args.packets or not isinstance(packets[-1], Publish):
            raise SystemExit(f"decoded {len(packets)} packets, {consumed} of {len(buffer)} bytes")
        del packets
        whole.append(elapsed / args.packets * 1e6)
        sliced.append(decode_in_reads(buffer, args.protocol) / args.packets * 1e6)
        print(
            f"round {round_no + 1}: {whole[-1]:.2f} us/packet one buffer, {sliced[-1]:.2f} in 64 KiB reads", flush=True
        )
    size = len(buffer) / args.packets
    version = "5" if args.protocol == MQTT_5 else "3.1.1"
    print(
        f"median {statistics.median(whole):.2f} us/packet in one buffer, {statistics.median(sliced):.2f} in 64 KiB "
        f"reads ({args.packets:,} PUBLISH packets of {size:.0f} bytes, MQTT {version})"
    )


def decode_in_reads(buffer: bytearray, protocol: int) -> float:
    """Seconds to decode `buffer` as the client meets it: 64 KiB a read, the incomplete tail kept for the next."""
    reads = [bytes(buffer[i : i + READ_SIZE]) for i in range(0, len(buffer), READ_SIZE)]
    pending = bytearray()
    decoded = 0
    start = time.perf_counter()
    for chunk in reads:
        pending += chunk
        packets, consumed = decode_packets(pending, protocol)
        del pending[:consumed]
        decoded += len(packets)
    elapsed = time.perf_counter() - start
    if pending:
        raise SystemExit(f"{len(pending)} bytes left undecoded")
    return elapsed


if __name__ == "__main__":
    main()
