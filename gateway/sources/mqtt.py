"""The MQTT source (gateway/sources/base.py's `Source`): connect, subscribe, receive, acknowledge late, reconnect,
and publish the gateway's own messages at QoS 1, over the gateway's own MQTT client (gateway/mqtt/).

One thread does all of it: every socket call happens here, a read burst reaches the consumer as one chunk, and
the acknowledgements other threads release are sent here, after the readings they cover are stored. The client
decodes a whole socket read in one pass and acknowledges a burst with one send; paho, which this replaced,
spent more time on each PUBLISH than the rest of the gateway (bench/mqtt_drain.py).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable

from gateway.config.schema import MqttConfig
from gateway.model import AckToken, OutgoingMessage, RawMessage, new_tuple
from gateway.mqtt.client import MqttClient
from gateway.mqtt.errors import ConnectionClosed, ConnectionRefused, MqttError, ProtocolError, SubscribeRefused
from gateway.mqtt.packets import MQTT_5, MQTT_311, Publish, RetainHandling
from gateway.mqtt.reason_codes import reason_name
from gateway.mqtt.transport import TlsOptions
from gateway.retry import Backoff
from gateway.sources.base import Consumer

log = logging.getLogger(__name__)

MqttAckToken = tuple[int, int]  # (connection number, packet id): an id means nothing on another connection
_BURST_MAX = 2000  # messages read before the consumer seals a chunk and acks get a turn
_IDLE_TURN_S = 0.5  # at least this often the consumer hears from us (a partial chunk goes out on time)
_RETAIN_HANDLING = {
    "always": RetainHandling.SEND_ON_SUBSCRIBE,
    "new_subscription": RetainHandling.SEND_IF_NEW_SUBSCRIPTION,
    "never": RetainHandling.DO_NOT_SEND,
}
_SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT reason: a client connected with our client id
_TAKEOVERS_REPORTED, _TAKEOVER_WINDOW_S = 3, 60.0  # this many in the window: not a restart, two clients


def make_client(config: MqttConfig) -> MqttClient:
    v5 = config.protocol == "5"
    tls = None
    if config.uses_tls:
        t = config.tls
        tls = TlsOptions(t.ca_file, t.cert_file, t.key_file, t.insecure) if t is not None else TlsOptions()
    return MqttClient(
        config.host,
        config.port,
        client_id=config.client_id,
        protocol=MQTT_5 if v5 else MQTT_311,
        keepalive=config.keepalive_s,
        clean_start=False,
        username=config.username,
        password=config.password.get_secret_value() if config.password else None,
        session_expiry=config.session_expiry_s if v5 else None,
        receive_maximum=config.receive_maximum if v5 else None,
        tls=tls,
    )


class MqttSource:
    """Owns the MQTT client. `run()` is the network thread; the other public methods may be called from any."""

    name = "mqtt"

    def __init__(self, config: MqttConfig, topic_filters: list[str]) -> None:
        self._config = config
        self._filters = [f"$share/{config.shared_group}/{f}" if config.shared_group else f for f in topic_filters]
        self._client = make_client(config)
        self._outgoing: deque[OutgoingMessage] = deque()
        self._publishing: dict[int, int] = {}  # our packet id -> the message's id, until the broker's PUBACK
        self._held: deque[Publish] = deque()  # read, not yet delivered: the consumer said stop mid-read
        self._skip_retained = False
        self._connected = threading.Event()
        self._acks: deque[MqttAckToken] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        self.acknowledged = 0
        self.session_takeovers = 0
        self._recent_takeovers: tuple[float, ...] = ()

    # -- public -----------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def release(self, tokens: Iterable[AckToken | None]) -> None:
        """Acknowledge these messages (their readings are stored). Thread-safe; sent by the network thread."""
        self._acks.extend(t for t in tokens if t is not None)  # type: ignore[misc]  # only ours come back
        self._wake()

    def interrupt(self) -> None:
        """Wake the network thread now (it waits on the socket up to 0.1 s), so it sees a stop request."""
        self._wake()

    def send(self, messages: Iterable[OutgoingMessage]) -> None:
        """Publish at QoS 1; `on_published` gets the ids the broker acknowledged, and (id, why) of those that
        cannot be published at all. Thread-safe; the client keeps unacknowledged ones across reconnects."""
        self._outgoing.extend(messages)
        self._wake()

    def run(self, consumer: Consumer, stop: threading.Event) -> None:
        """Network loop until `stop` is set and pending acknowledgements are flushed (or the link is down)."""
        backoff = Backoff(self._config.reconnect_min_s, self._config.reconnect_max_s)
        while not stop.is_set():
            try:
                self._connect()
            except ConnectionRefused as exc:  # credentials, client id, protocol: someone has to act
                delay = backoff.next_delay()
                log.error("%s; retrying in %.1f s", exc, delay)
                stop.wait(delay)
                continue
            except MqttError as exc:
                delay = backoff.next_delay()
                log.warning("broker %s unreachable (%s); retrying in %.1f s", self._config.url, exc, delay)
                stop.wait(delay)
                continue
            try:
                self._serve(consumer, stop, backoff)
            except (ConnectionClosed, ProtocolError) as exc:
                self._connection_lost(exc)
            if not stop.is_set():
                delay = backoff.next_delay()
                log.warning("disconnected from broker; reconnecting in %.1f s", delay)
                stop.wait(delay)
            if not stop.is_set() and not consumer.can_read():
                # Paused long enough for the keepalive to end the connection (the journal is full): a new
                # connection would only be flooded again. The broker keeps the messages meanwhile.
                log.warning("not reconnecting until the gateway can take messages again")
                while not stop.is_set() and not consumer.can_read():
                    stop.wait(0.1)
        self._connected.clear()
        self._client.disconnect()

    # -- connection -------------------------------------------------------------------------------

    def _connect(self) -> None:
        client = self._client
        session_present = client.connect()
        # Subscribing again is needed with a new session; with a resumed one it would repeat every retained
        # message unless Retain Handling (MQTT 5) says otherwise, and under 3.1.1 those are skipped instead.
        policy = self._config.retained
        self._skip_retained = policy == "never" or (policy == "new_subscription" and session_present)
        try:
            client.subscribe(self._filters, int(self._config.qos), _RETAIN_HANDLING[policy])
        except SubscribeRefused as exc:  # the others are subscribed: serve them, and say which are not
            log.error("%s; messages on those filters will not arrive (check the broker's ACL)", exc)
        # What arrived with the CONNACK and SUBACK (a resumed session's backlog, retained messages) is read
        # already: the socket will not say so again.
        self._held.extend(client.read_available())
        self._connected.set()
        log.info(
            "connected to %s (session %s), subscribed to %s",
            self._config.url,
            "resumed" if session_present else "new",
            ", ".join(self._filters),
        )

    def _connection_lost(self, exc: MqttError) -> None:
        self._connected.clear()
        self._client.close()
        # Packet ids of the old connection mean nothing on the next; the broker redelivers those messages (and
        # the ones read but held back) and the dedup window recognises them.
        self._acks.clear()
        self._held.clear()
        log.info("connection closed: %s", exc)
        if isinstance(exc, ConnectionClosed):
            self._note_takeover(exc)

    def _note_takeover(self, exc: ConnectionClosed) -> None:
        """Two clients with one client id take the session from each other again and again. An MQTT 5 broker may
        say so (reason 0x8E); Mosquitto 2.0 only closes the older connection, so connections the broker closed
        without a word count as taken over once they come three in a minute (and so does the third's window)."""
        said = exc.reason_code == _SESSION_TAKEN_OVER
        if not said and not exc.peer_closed:
            return
        now = time.monotonic()
        recent = (*(t for t in self._recent_takeovers if now - t < _TAKEOVER_WINDOW_S), now)
        self._recent_takeovers = recent
        if said or len(recent) > _TAKEOVERS_REPORTED:
            self.session_takeovers += 1
        elif len(recent) == _TAKEOVERS_REPORTED:
            self.session_takeovers += _TAKEOVERS_REPORTED
        if len(recent) % _TAKEOVERS_REPORTED == 0:
            log.error(
                "the broker closed this gateway's connection %d times in %.0f s (%s): most likely another client "
                "uses mqtt.client_id %r, and each connection takes the session from the other; give every gateway "
                "its own client id (mqtt.shared_group shares a stream between gateways)",
                len(recent),
                now - recent[0],
                "session taken over" if said else "without a reason",
                self._config.client_id,
                extra={"rate_key": "session_taken_over"},
            )

    # -- the loop ---------------------------------------------------------------------------------

    def _serve(self, consumer: Consumer, stop: threading.Event, backoff: Backoff) -> None:
        """Until the connection ends (ConnectionClosed, ProtocolError) or `stop` is set."""
        client = self._client
        sock, wake = client.fileno(), self._wake_r.fileno()
        last_turn = time.monotonic()
        while True:
            if stop.is_set():
                self._send_acks()
                client.flush()
                return
            reading = consumer.can_read()
            readers = [sock, wake] if reading else [wake]
            writers = [sock] if client.want_write else []
            timeout = min(0.1 if reading else 0.01, client.service_due_in())
            readable, _, _ = select.select(readers, writers, [], 0 if reading and self._held else timeout)
            if wake in readable:
                self._drain_wakeups()
            if reading and (self._held or sock in readable):
                self._read_burst(consumer, sock in readable)
                consumer.on_burst_end()
                last_turn = time.monotonic()
                backoff.reset()
            self._send_acks()
            self._send_publishes(consumer)
            client.service()
            client.flush()
            if time.monotonic() - last_turn >= _IDLE_TURN_S:
                last_turn = time.monotonic()
                consumer.on_burst_end()  # lets a partial chunk go out on time when traffic is slow

    def _read_burst(self, consumer: Consumer, readable: bool) -> None:
        """Hand the consumer what is held and what the socket has, up to _BURST_MAX messages, asking
        `can_read()` before each: a message it refuses waits in `_held` (one socket read at most)."""
        client = self._client
        delivered = 0
        while delivered < _BURST_MAX:
            if not self._held:
                if not readable:
                    return
                self._held.extend(client.read_available())
                readable = bool(self._held)  # a read that completed nothing: the socket is drained for now
                if not self._held:
                    return
            held = self._held
            connection = client.connections
            skip_retained = self._skip_retained
            while held and delivered < _BURST_MAX:
                if not consumer.can_read():
                    return
                p = held.popleft()
                qos1 = p.packet_id is not None
                token = (connection, p.packet_id) if qos1 else None
                retained = p.retain and skip_retained
                raw = new_tuple(
                    RawMessage, (p.topic, p.payload, p.qos, time.time_ns(), token, p.dup, retained, p.packet_id)
                )
                consumer.on_message(raw)
                delivered += 1

    def _send_publishes(self, consumer: Consumer) -> None:
        client = self._client
        failed: list[tuple[int, str]] = []
        while self._outgoing:
            message = self._outgoing.popleft()
            try:
                packet_id = client.publish(message.topic, message.payload, message.retain)
            except ValueError as exc:  # a topic or payload MQTT (or this broker) cannot carry: this message only
                failed.append((message.id, str(exc)))
                log.error("cannot publish to %r: %s; kept in the journal as rejected", message.topic[:200], exc)
                continue
            self._publishing[packet_id] = message.id
        confirmed: list[int] = []
        for packet_id, reason_code in client.take_confirmed():
            message_id = self._publishing.pop(packet_id, None)
            if message_id is None:
                continue
            if reason_code < 0x80:
                confirmed.append(message_id)
            else:
                why = f"the broker refused it: {reason_name(reason_code, client.protocol)} ({reason_code:#04x})"
                failed.append((message_id, why))
                log.error("a publish was refused by the broker (%s); kept in the journal as rejected", why)
        if confirmed or failed:
            consumer.on_published(confirmed, failed)

    def _drain_wakeups(self) -> None:
        self._wake_pending = False
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass

    def _wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            with contextlib.suppress(BlockingIOError):  # already full of wake-ups: fine
                self._wake_w.send(b"\0")

    def _send_acks(self) -> None:
        if not self._acks:
            return
        connection = self._client.connections
        connected = self._connected.is_set()
        ids = []
        acks = self._acks
        while acks:
            token_connection, packet_id = acks.popleft()
            if token_connection == connection and connected:
                ids.append(packet_id)
        self._client.ack(ids)
        self.acknowledged += len(ids)
