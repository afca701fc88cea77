"""paho-mqtt's own ceiling: a persistent session's backlog drained with manual acknowledgement and no work at all.

    python bench/bare_drain.py --broker mqtt://127.0.0.1:1883 --protocol 5 --expect 200000
    python bench/bare_drain.py --broker mqtt://127.0.0.1:1883 --protocol 5 --register   # create the session, leave

Exits once `--expect` messages arrived and their acknowledgements are written; bench/drain.py times it from
process start to exit, as it times the gateway from process start to the last reading stored.
"""

from __future__ import annotations

import argparse
import sys
import threading

import paho.mqtt.client as mqtt
from paho_session import connect, persistent_client

TOPIC_FILTER = "devices/+/telemetry"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--client-id", default="bare-drain")
    parser.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--register", action="store_true", help="subscribe (creating the session) and leave")
    args = parser.parse_args()
    client = persistent_client(args.client_id, args.protocol, manual_ack=True)
    subscribed = threading.Event()
    done = threading.Event()
    received = 0

    def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal received
        c.ack(msg.mid, msg.qos)
        received += 1
        if received >= args.expect > 0:
            done.set()

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(TOPIC_FILTER, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    connect(client, args.broker, args.protocol)
    client.loop_start()
    if args.register:
        if not subscribed.wait(10):
            sys.exit("not subscribed within 10 s")
    elif not done.wait(600):
        sys.exit(f"received {received} of {args.expect} within 600 s")
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
