"""A paho-mqtt client on a persistent session, as bench/naive_consumer.py and bench/bare_drain.py both need it:
the broker keeps what arrives while the client is away, so a backlog is there to drain."""

from __future__ import annotations

from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

RECEIVE_MAXIMUM = 2000  # the gateway's default mqtt.receive_maximum


def persistent_client(client_id: str, protocol: str, manual_ack: bool = False) -> mqtt.Client:
    v5 = protocol == "5"
    return mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=manual_ack,
    )


def connect(client: mqtt.Client, broker_url: str, protocol: str) -> None:
    """Clean start off and a session expiry under MQTT 5; clean session off under 3.1.1."""
    broker = urlsplit(broker_url)
    host, port = broker.hostname or "127.0.0.1", broker.port or 1883
    if protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        client.connect(host, port, clean_start=False, properties=props)
    else:
        client.connect(host, port)
