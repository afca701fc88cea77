"""What a source is: messages in, acknowledgements out, publishes out with confirmation.

A source owns one thread (`run`) and calls its `Consumer` on it: so the ingest stage, which is that consumer,
needs no lock. Everything else may be called from any thread. The MQTT source implements it today
(gateway/sources/mqtt.py); tests drive the whole pipeline in process through a source of their own.

    consumer.on_message(raw)        each message, in the order the source delivers them
    consumer.on_burst_end()         after a burst of messages, and at least every half second when idle:
                                    the moment to hand what was read to the journal
    consumer.can_read()             asked before reading more: False stops reading (memory bound, shutdown)
    consumer.on_published(ids, failed)  publishes the far end confirmed, and (id, why) of those it never will

    source.release(tokens)          acknowledge these messages: what they produced is durable
    source.send(messages)           publish these; confirmation arrives through on_published
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from gateway.model import AckToken, OutgoingMessage, RawMessage


class Consumer(Protocol):
    def on_message(self, raw: RawMessage) -> None: ...

    def on_burst_end(self) -> None: ...

    def can_read(self) -> bool: ...

    def on_published(self, confirmed: list[int], failed: list[tuple[int, str]]) -> None: ...


class Source(Protocol):
    name: str  # its thread's name, and the name in logs

    @property
    def connected(self) -> bool:
        """Whether messages can arrive now (`/readyz` says "broker not connected" otherwise)."""

    @property
    def acknowledged(self) -> int:
        """Messages acknowledged so far (`gateway_messages_acknowledged`)."""

    @property
    def session_takeovers(self) -> int:
        """Times another client took this source's session (0 where the transport has no such thing)."""

    def run(self, consumer: Consumer, stop: threading.Event) -> None:
        """The source's thread: deliver to `consumer` until `stop` is set, then send the acknowledgements
        released so far and leave."""

    def release(self, tokens: Iterable[AckToken | None]) -> None:
        """Acknowledge the messages these tokens came with (None: nothing to acknowledge)."""

    def send(self, messages: Iterable[OutgoingMessage]) -> None:
        """Publish these; `Consumer.on_published` is told of each by its `id`."""

    def interrupt(self) -> None:
        """Wake the source's thread now, so that it asks `can_read()` again (a stop request)."""
