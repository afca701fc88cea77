"""gateway/mqtt/packets.py against paho-mqtt's own encoder and decoder (public API only): what paho writes we
decode, what we write paho decodes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.mqtt.packets import (
    MQTT_5,
    MQTT_311,
    PubAck,
    Publish,
    RetainHandling,
    decode_packets,
    encode_connect,
    encode_disconnect,
    encode_pubacks,
    encode_publish,
    encode_subscribe,
    encode_unsubscribe,
    with_dup,
)
from tests.support.mqtt_peer import CONNACK_5, CONNACK_311, BrokerEnd

MQTT = b"\x00\x04MQTT"


# -- against paho-mqtt's own encoder and decoder (public API only; paho talks to a listening socket) ----------------


@dataclass
class PahoPeer:
    client: mqtt.Client
    broker: BrokerEnd
    protocol: int
    connect_packet: bytes = b""
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)


@pytest.fixture(params=[MQTT_5, MQTT_311], ids=["mqtt5", "mqtt311"])
def paho_peer(request: pytest.FixtureRequest) -> Iterator[PahoPeer]:
    """A paho client connected to a BrokerEnd (CONNACK sent and processed)."""
    protocol = request.param
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="paho-peer",
            protocol=mqtt.MQTTv5 if protocol == MQTT_5 else mqtt.MQTTv311,
            manual_ack=True,
        )
        if protocol == MQTT_5:
            connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            connect.SessionExpiryInterval = 3600
            connect.ReceiveMaximum = 1000
            client.connect("127.0.0.1", listener.getsockname()[1], 30, clean_start=False, properties=connect)
        else:
            client.connect("127.0.0.1", listener.getsockname()[1], 30)
        peer = PahoPeer(client, BrokerEnd(listener.accept()[0]), protocol)
    client.on_message = lambda _c, _u, message: peer.messages.append(message)
    broker = peer.broker
    try:
        peer.connect_packet = broker.read_packet()
        broker.send(CONNACK_5 if protocol == MQTT_5 else CONNACK_311)
        client.loop(timeout=1.0)
        assert client.is_connected()
        yield peer
    finally:
        client.disconnect()
        broker.close()


def test_paho_connect_is_what_we_encode(paho_peer: PahoPeer) -> None:
    protocol = paho_peer.protocol
    # paho sends Clean Session = 1 under 3.1.1 unless told otherwise; ours asks for a persistent session.
    ours = encode_connect(
        "paho-peer", protocol=protocol, keepalive=30, clean_start=protocol == MQTT_311,
        session_expiry=3600, receive_maximum=1000,
    )  # fmt: skip
    assert paho_peer.connect_packet == ours


def test_paho_publishes_decode(paho_peer: PahoPeer) -> None:
    client, broker, protocol = paho_peer.client, paho_peer.broker, paho_peer.protocol
    properties = None
    if protocol == MQTT_5:
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.MessageExpiryInterval = 60
        properties.UserProperty = [("source", "paho"), ("k", "v" * 300)]  # a property block over 127 bytes
    sent = [
        client.publish("devices/dev-1/telemetry", b'{"t":21.5}', qos=1, retain=True, properties=properties),
        client.publish("capteurs/étage", b"", qos=0),
        client.publish("a/b", bytes(range(256)) * 40, qos=1),
    ]
    raw = b"".join(broker.read_packet() for _ in sent)
    packets, used = decode_packets(raw, protocol)
    assert used == len(raw)
    assert packets == [
        Publish("devices/dev-1/telemetry", b'{"t":21.5}', 1, sent[0].mid, False, True),
        Publish("capteurs/étage", b"", 0, None, False, False),
        Publish("a/b", bytes(range(256)) * 40, 1, sent[2].mid, False, False),
    ]


def test_our_publishes_decode_in_paho_and_its_pubacks_in_ours(paho_peer: PahoPeer) -> None:
    client, broker, protocol = paho_peer.client, paho_peer.broker, paho_peer.protocol
    client.subscribe("#", qos=1)
    broker.read_packet()
    broker.send(b"\x90\x04\x00\x01\x00\x01" if protocol == MQTT_5 else b"\x90\x03\x00\x01\x01")
    broker.send(
        encode_publish("devices/dev-7/telemetry", b'{"v":1}', packet_id=300, retain=True, protocol=protocol)
        + with_dup(encode_publish("x/é", b"\x00\xff", packet_id=65535, protocol=protocol))
        + encode_publish("q0", b"zero", qos=0, protocol=protocol)
    )
    messages = paho_peer.messages
    deadline = time.monotonic() + 5
    while len(messages) < 3 and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    seen = [(m.topic, m.payload, m.qos, m.mid, bool(m.dup), bool(m.retain)) for m in messages]
    assert seen == [
        ("devices/dev-7/telemetry", b'{"v":1}', 1, 300, False, True),
        ("x/é", b"\x00\xff", 1, 65535, True, False),
        ("q0", b"zero", 0, 0, False, False),
    ]
    client.ack(300, 1)
    client.ack(65535, 1)
    raw = broker.read_packet() + broker.read_packet()
    assert decode_packets(raw, protocol) == ([PubAck(300), PubAck(65535)], len(raw))
    assert raw == encode_pubacks([300, 65535])


def test_paho_subscribe_and_unsubscribe_are_what_we_encode(paho_peer: PahoPeer) -> None:
    client, broker, protocol = paho_peer.client, paho_peer.broker, paho_peer.protocol
    if protocol == MQTT_5:
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        _rc, mid = client.subscribe([("a/+", options), ("b/#", options)])
    else:
        _rc, mid = client.subscribe([("a/+", 1), ("b/#", 1)])
    handling = RetainHandling.SEND_IF_NEW_SUBSCRIPTION
    assert broker.read_packet() == encode_subscribe(mid, ["a/+", "b/#"], 1, protocol=protocol, retain_handling=handling)
    _rc, mid = client.unsubscribe(["a/+"])
    assert broker.read_packet() == encode_unsubscribe(mid, ["a/+"], protocol=protocol)
    client.disconnect()
    assert broker.read_packet() == encode_disconnect(protocol=protocol)
