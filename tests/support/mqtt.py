"""MQTT helpers the tests share: a tap (a subscriber that keeps what arrives) and a connected publisher."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple, Protocol

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.waits import wait_until

MARKER_LEVEL = "tap-marker"  # the topic level a tap's own markers carry
_markers = itertools.count(1)


class Broker(Protocol):
    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


class Received(NamedTuple):
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.time() on arrival

    def json(self) -> dict[str, object]:
        value: dict[str, object] = orjson.loads(self.payload)
        return value


class MqttTap:
    """An MQTT 5 client subscribed to `topics` (SUBACK awaited) that keeps every message in arrival order.

    `sync()` is the positive marker a negative check waits for: the tap publishes a marker to itself and waits
    until it comes back, so everything the broker had accepted for the tap before it has arrived too."""

    def __init__(
        self,
        broker: Broker,
        topics: str | Sequence[str],
        client_id: str = "tap",
        qos: int = 1,
        keep: Callable[[mqtt.MQTTMessage], bool] = lambda _message: True,
    ) -> None:
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self._keep = keep
        self._received: list[Received] = []
        self._markers: set[str] = set()
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.connect(broker.host, broker.port)
        self._client.subscribe([(topic, qos) for topic in self.topics])
        self._client.loop_start()
        assert subscribed.wait(5), f"no SUBACK for {self.topics}"

    def _on_message(self, _client: object, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if MARKER_LEVEL in message.topic.split("/"):
            with self._lock:
                self._markers.add(message.payload.decode())
            return
        if self._keep(message):
            with self._lock:
                self._received.append(Received(message.topic, bytes(message.payload), message.retain, time.time()))

    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def count(self) -> int:
        with self._lock:
            return len(self._received)

    def records(self) -> list[dict[str, object]]:
        """The JSON payloads, each with `published_on`: the topic it arrived on."""
        return [{**message.json(), "published_on": message.topic} for message in self.messages()]

    def wait_for(self, count: int, timeout: float = 10, what: str = "") -> list[Received]:
        """The messages once at least `count` have arrived; fails loudly when they do not within `timeout`."""
        wait_until(lambda: self.count() >= count, timeout, what or f"{count} messages on {self.topics}", self.count)
        return self.messages()

    def sync(self, timeout: float = 10) -> list[Received]:
        """Publish a marker to the first filter and wait for it: whatever reached the broker for this tap before
        (a retained message, anything another client had published and got its PUBACK for) has arrived.
        Not for a tap on topics the gateway ingests: it would take the marker for a device's message."""
        marker = str(next(_markers))
        topic = "/".join(MARKER_LEVEL if level in "+#" else level for level in self.topics[0].split("/"))
        self._client.publish(topic, marker, qos=1)
        wait_until(lambda: marker in self._markers, timeout, f"the tap's marker on {topic}")
        return self.messages()

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def __enter__(self) -> MqttTap:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@contextmanager
def mqtt_publisher(broker: Broker, client_id: str = "test-publisher") -> Iterator[mqtt.Client]:
    """A connected paho MQTT 5 client with its network loop running, for tests that publish message by message."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()  # while the loop still runs, so that DISCONNECT goes out
        client.loop_stop()


def publish_pipelined(
    broker: Broker, messages: Sequence[tuple[str, bytes]], client_id: str, timeout: float = 30
) -> None:
    """Publish every message at QoS 1 without waiting in between (paho queues them), then fail unless the broker
    acknowledged each one; for topics and payloads of any shape (device_sim's blast takes only what it encodes)."""
    with mqtt_publisher(broker, client_id) as publisher:
        infos = [publisher.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout)
            assert info.is_published()


def publish_each(client: mqtt.Client, messages: Sequence[tuple[str, bytes | str]], timeout: float = 10) -> None:
    """Publish at QoS 1, one at a time, and fail unless the broker acknowledged every one."""
    for topic, payload in messages:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"no PUBACK for {topic}"
