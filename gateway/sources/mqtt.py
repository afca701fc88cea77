"""The MQTT source (gateway/sources/base.py's `Source`): connect, subscribe, receive, acknowledge late, reconnect,
and publish the gateway's own messages at QoS 1. paho-mqtt driven by our own loop.

We drive paho through its external-loop API (`loop_read` / `loop_write` / `loop_misc`) instead of
`loop_start()`: every call into paho then happens on this one thread (paho's socket writes are not
thread-safe), a read burst can be handed to the pipeline as one chunk, and acknowledgements that other
threads release are sent here, after the readings they cover are stored.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.config.schema import MqttConfig
from gateway.model import AckToken, OutgoingMessage, RawMessage
from gateway.retry import Backoff
from gateway.sources.base import Consumer

log = logging.getLogger(__name__)

MqttAckToken = tuple[int, int]  # (connection generation, packet id)
_BURST_MAX = 2000  # messages read before the pipeline gets a chunk and acks get a turn
_READ_SIZE = 1 << 16
_PUBACK = 0x40
_PUBACK_PREFIX = bytes([_PUBACK, 2])
_RETAIN_HANDLING = {
    "always": SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE,
    "new_subscription": SubscribeOptions.RETAIN_SEND_IF_NEW_SUB,
    "never": SubscribeOptions.RETAIN_DO_NOT_SEND,
}
_SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason: a client connected with our client id
_CONNECTION_LOST = 128  # paho's reason when the connection ends without a DISCONNECT ("Unspecified error")
_TAKEOVERS_REPORTED, _TAKEOVER_WINDOW_S = 3, 60.0  # this many in the window: not a restart, two clients


class _BufferedClient(mqtt.Client):
    """paho reads each packet with three or four recv() calls (type byte, length bytes, body); serving
    them from one 64 KiB read removes most of the syscalls on the ingest path. Overrides paho's private
    `_sock_recv` (paho-mqtt is pinned in requirements.lock; tests/integration/test_e2e.py exercises this path)."""

    _buffer = b""
    _offset = 0
    _buffered_sock: object = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._buffered_sock is not self._sock or self._offset >= len(self._buffer):
            self._buffered_sock = self._sock
            self._buffer = super()._sock_recv(_READ_SIZE)  # raises BlockingIOError when there is nothing
            self._offset = 0
            if not self._buffer:
                return self._buffer  # connection closed
        chunk = self._buffer[self._offset : self._offset + bufsize]
        self._offset += len(chunk)
        return chunk

    def ack_many(self, mids: list[int]) -> None:
        """PUBACK a burst of QoS 1 messages with one queued write instead of one syscall (and one wake-up
        byte) per message: 4 bytes a PUBACK, the same in MQTT 3.1.1 and 5 (success needs no reason code)."""
        if mids:
            packet = b"".join([_PUBACK_PREFIX + mid.to_bytes(2, "big") for mid in mids])
            self._packet_queue(_PUBACK, packet, 0, 0)

    @property
    def buffered(self) -> bool:
        return self._buffered_sock is self._sock and self._offset < len(self._buffer)


class MqttSource:
    """Owns the paho client. `run()` is the network thread; the other public methods may be called from any."""

    name = "mqtt"

    def __init__(self, config: MqttConfig, topic_filters: list[str]) -> None:
        self._config = config
        self._filters = [f"$share/{config.shared_group}/{f}" if config.shared_group else f for f in topic_filters]
        self._consumer: Consumer | None = None  # set by run(), before the first callback
        self._outgoing: deque[OutgoingMessage] = deque()
        self._publishing: dict[int, int] = {}  # packet id -> the message's id, until the broker's PUBACK
        self._published: list[int] = []
        self._generation = 0
        self._skip_retained = False
        self._connected = threading.Event()
        self._received = 0
        self._acks: deque[MqttAckToken] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        self.acknowledged = 0
        self._client = self._make_client()

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

    def _wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            with contextlib.suppress(BlockingIOError):  # already full of wake-ups: fine
                self._wake_w.send(b"\0")

    def send(self, messages: Iterable[OutgoingMessage]) -> None:
        """Publish at QoS 1; `on_published` gets the ids the broker acknowledged, and (id, why) of those that
        cannot be published at all. Thread-safe; paho keeps unacknowledged ones across reconnects."""
        self._outgoing.extend(messages)
        self._wake()

    def run(self, consumer: Consumer, stop: threading.Event) -> None:
        """Network loop until `stop` is set and pending acknowledgements are flushed (or the link is down)."""
        self._consumer = consumer
        backoff = Backoff(self._config.reconnect_min_s, self._config.reconnect_max_s)
        first = True
        while not stop.is_set():
            try:
                if first:
                    self._connect()
                    first = False
                else:
                    self._client.reconnect()
            except (OSError, ssl.SSLError, mqtt.WebsocketConnectionError) as exc:
                delay = backoff.next_delay()
                log.warning("broker %s unreachable (%s); retrying in %.1f s", self._config.url, exc, delay)
                stop.wait(delay)
                continue
            self._serve(consumer, stop, backoff)
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
        self._client.disconnect()
        self._client.loop_write()

    # -- connection -------------------------------------------------------------------------------

    def _make_client(self) -> _BufferedClient:
        cfg = self._config
        v5 = cfg.protocol == "5"
        client = _BufferedClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if cfg.username:
            password = cfg.password.get_secret_value() if cfg.password else None
            client.username_pw_set(cfg.username, password)
        if cfg.uses_tls:
            tls = cfg.tls
            insecure = bool(tls and tls.insecure)
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
                certfile=str(tls.cert_file) if tls and tls.cert_file else None,
                keyfile=str(tls.key_file) if tls and tls.key_file else None,
                # `insecure` skips verification of the certificate: paho's tls_insecure_set() alone only
                # skips the host name check, and an unknown or self-signed CA would still be refused.
                cert_reqs=ssl.CERT_NONE if insecure else None,
            )
            if insecure:
                client.tls_insecure_set(True)  # and no host name check (paho's own one included)
        # Our own publishes (dead-letter records) are few; paho's in-flight cap only adds bookkeeping.
        client.max_inflight_messages_set(0)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        # Registering a write callback tells paho an external loop writes the socket, so queuing an ack
        # does not send it on the spot: a burst of acks leaves in one loop_write.
        client.on_socket_register_write = lambda _c, _u, _s: None
        return client

    def _connect(self) -> None:
        cfg = self._config
        if cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = cfg.session_expiry_s
            props.ReceiveMaximum = cfg.receive_maximum
            self._client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=False, properties=props)
        else:
            self._client.connect(cfg.host, cfg.port, cfg.keepalive_s)

    def _handle_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        self._generation += 1
        # Subscribing again is needed with a new session; with a resumed one it would repeat every retained
        # message unless Retain Handling (MQTT 5) says otherwise, and under 3.1.1 those are skipped instead.
        policy = self._config.retained
        self._skip_retained = policy == "never" or (policy == "new_subscription" and bool(flags.session_present))
        if self._config.protocol == "5":
            options = SubscribeOptions(qos=int(self._config.qos), retainHandling=_RETAIN_HANDLING[policy])
            client.subscribe([(f, options) for f in self._filters])
        else:
            client.subscribe([(f, int(self._config.qos)) for f in self._filters])
        self._connected.set()
        log.info(
            "connected to %s (session %s), subscribed to %s",
            self._config.url,
            "resumed" if flags.session_present else "new",
            ", ".join(self._filters),
        )

    def _handle_disconnect(self, _c: mqtt.Client, _u: Any, flags: Any, reason: Any, _props: Any) -> None:
        self._connected.clear()
        # Packet ids of the old connection mean nothing on the next; the broker redelivers those
        # messages and the dedup window recognises them.
        self._acks.clear()
        log.info("connection closed: %s", reason)
        self._note_takeover(reason, flags)

    # Counted by the network thread; class defaults, so that the session's own state stays in __init__.
    session_takeovers = 0
    _recent_takeovers: tuple[float, ...] = ()

    def _note_takeover(self, reason: Any, flags: Any) -> None:
        """Two clients with one client id take the session from each other again and again. An MQTT 5 broker may
        say so (reason 142); Mosquitto 2.0 only closes the older connection, so connections the broker closed
        without a reason count as taken over once they come three in a minute (and so does the third's window)."""
        code = getattr(reason, "value", None)
        said = code == _SESSION_TAKEN_OVER
        if not said and (code != _CONNECTION_LOST or getattr(flags, "is_disconnect_packet_from_server", True)):
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

    def _handle_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._received += 1
        qos1 = msg.qos > 0
        token = (self._generation, msg.mid) if qos1 else None
        stale = msg.retain and self._skip_retained
        payload = bytes(msg.payload)
        raw = RawMessage(
            msg.topic, payload, msg.qos, time.time_ns(), token, bool(msg.dup), stale, msg.mid if qos1 else None
        )
        assert self._consumer is not None
        self._consumer.on_message(raw)

    def _handle_publish(self, _c: mqtt.Client, _u: Any, mid: int, _reason: Any, _props: Any) -> None:
        message_id = self._publishing.pop(mid, None)
        if message_id is not None:
            self._published.append(message_id)

    def _send_publishes(self, consumer: Consumer) -> None:
        failed: list[tuple[int, str]] = []
        while self._outgoing:
            topic, payload, retain, message_id = self._outgoing.popleft()
            try:
                info = self._client.publish(topic, payload, qos=1, retain=retain)
            except ValueError as exc:  # a topic or payload MQTT cannot carry: this message, never the session
                failed.append((message_id, str(exc)))
                log.error("cannot publish to %r: %s; kept in the journal as rejected", topic[:200], exc)
                continue
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                failed.append((message_id, mqtt.error_string(info.rc)))
                log.error("could not queue a publish to %r: %s", topic[:200], mqtt.error_string(info.rc))
                continue
            self._publishing[info.mid] = message_id
        if self._published or failed:
            confirmed, self._published = self._published, []
            consumer.on_published(confirmed, failed)

    # -- the loop ---------------------------------------------------------------------------------

    def _serve(self, consumer: Consumer, stop: threading.Event, backoff: Backoff) -> None:
        client = self._client
        sock = client.socket()
        if sock is None:
            return
        last_misc = 0.0
        while True:
            if stop.is_set():
                self._send_acks()
                client.loop_write()
                return
            reading = consumer.can_read()
            readers = [sock, self._wake_r] if reading else [self._wake_r]
            writers = [sock] if client.want_write() else []
            try:
                # Bytes already in our read buffer do not make the socket readable: do not wait for them.
                pending = reading and self._client.buffered
                readable, writable, _ = select.select(readers, writers, [], 0 if pending else 0.1 if reading else 0.01)
                if pending:
                    readable = [*readable, sock]
            except (OSError, ValueError):
                return
            if self._wake_r in readable:
                self._drain_wakeups()
            if sock in readable and reading:
                rc = self._read_burst(consumer)
                consumer.on_burst_end()
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    return
                if self._connected.is_set():
                    backoff.reset()
            self._send_acks()
            self._send_publishes(consumer)
            if (writable or client.want_write()) and client.loop_write() != mqtt.MQTT_ERR_SUCCESS:
                return
            now = time.monotonic()
            if now - last_misc >= 0.5:
                last_misc = now
                if client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                    return
                consumer.on_burst_end()  # lets a partial chunk go out on time when traffic is slow
            if client.socket() is not sock:
                return

    def _read_burst(self, consumer: Consumer) -> MQTTErrorCode:
        # loop_read handles one packet a call; keep reading while messages keep coming.
        for _ in range(_BURST_MAX):
            if not consumer.can_read():
                break
            before = self._received
            rc = self._client.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                return rc
            if self._received == before and not self._client.buffered:
                break
        return mqtt.MQTT_ERR_SUCCESS

    def _drain_wakeups(self) -> None:
        self._wake_pending = False
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _send_acks(self) -> None:
        if not self._acks:
            return
        generation = self._generation
        connected = self._connected.is_set()
        mids = []
        acks = self._acks
        while acks:
            token_generation, mid = acks.popleft()
            if token_generation == generation and connected:
                mids.append(mid)
        self._client.ack_many(mids)
        self.acknowledged += len(mids)
