"""A `Source` (gateway/sources/base.py) that lives in memory, so that a whole Pipeline runs in the test's process.

`deliver()` queues a message as a broker would send it; the source's thread hands queued messages to the consumer
while it may read, as the MQTT source does, and records what the pipeline acknowledges and publishes. A publish
is confirmed at once unless `refuse` names a reason it can never be published.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from gateway.model import AckToken, OutgoingMessage, RawMessage
from gateway.sources.base import Consumer

_BURST = 100


class MemorySource:
    name = "memory"

    def __init__(self, refuse: Callable[[OutgoingMessage], str | None] = lambda _m: None) -> None:
        self.refuse = refuse
        self.connected = True
        self.session_takeovers = 0
        self.delivered: list[RawMessage] = []  # handed to the consumer, in order
        self.released: list[AckToken] = []  # acknowledged, in order
        self.published: list[OutgoingMessage] = []  # confirmed
        self.reads_refused = 0  # times can_read() said no while messages were waiting
        self._inbox: deque[RawMessage] = deque()
        self._outgoing: deque[OutgoingMessage] = deque()
        self._wake = threading.Condition()
        self._tokens = itertools.count(1)

    @property
    def acknowledged(self) -> int:
        return len(self.released)

    def deliver(self, topic: str, payload: bytes, qos: int = 1) -> AckToken | None:
        """Queue one message; returns the token its acknowledgement will carry (None at QoS 0)."""
        token = next(self._tokens) if qos else None
        raw = RawMessage(topic, payload, qos, time.time_ns(), token, delivery_slot=token)
        with self._wake:
            self._inbox.append(raw)
            self._wake.notify()
        return token

    # -- Source ----------------------------------------------------------------------------------

    def run(self, consumer: Consumer, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._wake:
                self._wake.wait(0.05)
            for _ in range(_BURST):
                if not consumer.can_read():
                    self.reads_refused += bool(self._inbox)
                    break
                with self._wake:
                    raw = self._inbox.popleft() if self._inbox else None
                if raw is None:
                    break
                self.delivered.append(raw)
                consumer.on_message(raw)
            consumer.on_burst_end()
            self._publish(consumer)

    def release(self, tokens: Iterable[AckToken | None]) -> None:
        self.released.extend(t for t in tokens if t is not None)

    def send(self, messages: Iterable[OutgoingMessage]) -> None:
        with self._wake:
            self._outgoing.extend(messages)
            self._wake.notify()

    def interrupt(self) -> None:
        with self._wake:
            self._wake.notify()

    def _publish(self, consumer: Consumer) -> None:
        confirmed: list[int] = []
        failed: list[tuple[int, str]] = []
        while True:
            with self._wake:
                if not self._outgoing:
                    break
                message = self._outgoing.popleft()
            why = self.refuse(message)
            if why is None:
                self.published.append(message)
                confirmed.append(message.id)
            else:
                failed.append((message.id, why))
        if confirmed or failed:
            consumer.on_published(confirmed, failed)
