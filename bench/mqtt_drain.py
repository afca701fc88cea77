"""Bare MQTT drain: how fast a consumer empties a backlog of queued QoS 1 messages, acknowledging each, doing nothing
else. paho-mqtt 2.2 (manual ack) against gateway/mqtt's own client, MQTT 5 and 3.1.1.

    python bench/mqtt_drain.py [--messages 200000] [--rounds 3] [--receive-maximum 2000] [--only ours-5]

Each round and consumer: a fresh Mosquitto on a free port, the consumer's persistent session created (connect,
subscribe at QoS 1, disconnect), the backlog published into it with device_sim.blast (pre-encoded, every message
PUBACKed by the broker first), then the clock runs from the consumer's connect to its last PUBACK sent. paho acks
each message in on_message (its loop writes them); ours acks every read's messages in one send. MQTT 5 sessions ask
for the same Receive Maximum in both. Prints msg/s per round, the medians and the ratios ours/paho.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mqtt_decode import reading  # noqa: E402
from device_sim.blast import blast, publish_packet  # noqa: E402
from gateway.mqtt import MQTT_5, MQTT_311, MqttClient  # noqa: E402
from tests.support.servers import Mosquitto  # noqa: E402

BROKER_CONF = "autosave_interval 30\n"  # the benchmark measures consumers, not the broker's disk
CLIENT_ID = "drain-consumer"
TOPIC_FILTER = "devices/+/telemetry"
SESSION_EXPIRY = 3600


def backlog(count: int) -> list[bytes]:
    """QoS 1 PUBLISH packets (MQTT 3.1.1 on the publishing side) of ~100-byte JSON readings from 2,000 devices."""
    return [publish_packet(*reading(i), i % 65535 + 1) for i in range(count)]


def paho_client(broker: Mosquitto, protocol: int, receive_maximum: int) -> tuple[mqtt.Client, Callable[[], None]]:
    v5 = protocol == MQTT_5
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=CLIENT_ID,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=True,
    )

    def connect() -> None:
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY
            props.ReceiveMaximum = receive_maximum
            client.connect(broker.host, broker.port, 60, clean_start=False, properties=props)
        else:
            client.connect(broker.host, broker.port, 60)

    return client, connect


def drain_paho(broker: Mosquitto, protocol: int, count: int, receive_maximum: int, subscribe: bool) -> float:
    client, connect = paho_client(broker, protocol, receive_maximum)
    received = 0

    def on_message(c: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        c.ack(message.mid, message.qos)
        received += 1
        if received >= count:
            c.disconnect()

    if subscribe:  # create the session only
        client.on_connect = lambda c, *_: c.subscribe(TOPIC_FILTER, qos=1)
        client.on_subscribe = lambda c, *_: c.disconnect()
        connect()
        client.loop_forever()
        return 0.0
    client.on_message = on_message
    start = time.perf_counter()
    connect()
    client.loop_forever()  # returns after the DISCONNECT, which follows the last PUBACK
    return time.perf_counter() - start


def drain_ours(broker: Mosquitto, protocol: int, count: int, receive_maximum: int, subscribe: bool) -> float:
    client = MqttClient(
        broker.host, broker.port, client_id=CLIENT_ID, protocol=protocol, keepalive=60,
        session_expiry=SESSION_EXPIRY, receive_maximum=receive_maximum,
    )  # fmt: skip
    if subscribe:
        client.connect()
        client.subscribe([TOPIC_FILTER], 1)
        client.disconnect()
        return 0.0
    start = time.perf_counter()
    client.connect()
    received = 0
    while received < count:
        publishes = client.poll(1.0)
        if publishes:
            client.ack([p.packet_id for p in publishes if p.packet_id is not None])
            client.flush()
            received += len(publishes)
    client.disconnect()
    return time.perf_counter() - start


CONSUMERS: dict[str, tuple[Callable[[Mosquitto, int, int, int, bool], float], int]] = {
    "paho-5": (drain_paho, MQTT_5),
    "paho-3.1.1": (drain_paho, MQTT_311),
    "ours-5": (drain_ours, MQTT_5),
    "ours-3.1.1": (drain_ours, MQTT_311),
}


def one_round(name: str, packets: list[bytes], receive_maximum: int, workdir: Path) -> float:
    drain, protocol = CONSUMERS[name]
    with Mosquitto(workdir, extra_conf=BROKER_CONF) as broker:
        drain(broker, protocol, len(packets), receive_maximum, True)
        sent = blast(packets, broker.url)
        if sent.acknowledged != len(packets):
            raise SystemExit(f"the broker acknowledged {sent.acknowledged} of {len(packets)} messages")
        elapsed = drain(broker, protocol, len(packets), receive_maximum, False)
    rate = len(packets) / elapsed
    print(f"  {name:11s} {rate:9,.0f} msg/s  ({elapsed:5.2f} s)", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--receive-maximum", type=int, default=2000, help="MQTT 5 Receive Maximum, both clients")
    parser.add_argument("--only", choices=sorted(CONSUMERS), action="append", help="run only these consumers")
    args = parser.parse_args()
    names = args.only or list(CONSUMERS)
    packets = backlog(args.messages)
    print(f"{args.messages:,} queued QoS 1 messages, receive maximum {args.receive_maximum}; {args.rounds} rounds")
    rates: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-drain-") as tmp:
        for round_no in range(args.rounds):
            print(f"round {round_no + 1}", flush=True)
            for name in names:
                rates[name].append(one_round(name, packets, args.receive_maximum, Path(tmp) / f"{round_no}-{name}"))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, median in medians.items():
        rounds = ", ".join(f"{r:,.0f}" for r in rates[name])
        print(f"median {name:11s} {median:9,.0f} msg/s  (rounds: {rounds})")
    for version in ("5", "3.1.1"):
        ours, paho = medians.get(f"ours-{version}"), medians.get(f"paho-{version}")
        if ours and paho:
            print(f"ratio ours/paho MQTT {version}: {ours / paho:.2f}")


if __name__ == "__main__":
    main()
