"""One MQTT connection that publishes with a bounded window of unacknowledged messages.

paho's network thread (loop_start) does all socket work and reconnects on its own; this class only
decides when the caller may hand paho another message and counts what the broker confirmed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device_sim.brokerurl import BrokerAddress

PROTOCOLS = {5: MQTTProtocolVersion.MQTTv5, 4: MQTTProtocolVersion.MQTTv311, 3: MQTTProtocolVersion.MQTTv31}
SESSION_EXPIRY_S = 300  # long enough to ride out a broker restart, short enough not to litter the broker
KEEPALIVE_S = 30
V3_QOS2_WINDOW = 20


class LinkError(ConnectionError):
    """The broker refused us, could not be reached in time, or stopped acknowledging."""


class Link:
    """A paho client plus the bookkeeping that lets a caller wait for room and for acknowledgements."""

    def __init__(
        self,
        address: BrokerAddress,
        client_id: str,
        *,
        qos: int,
        protocol: int,
        window: int,
        stall_timeout_s: float,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)} (3.1, 3.1.1, 5), got {protocol}")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        self._address = address
        self._qos = qos
        self._v5 = protocol == 5
        self._window = max(1, window)
        if qos == 2 and not self._v5:
            # MQTT 3.1.1 cannot announce a Receive Maximum, yet brokers still cap unfinished incoming
            # QoS 2 flows (Mosquitto: 20) and drop a client that exceeds the cap.
            self._window = min(self._window, V3_QOS2_WINDOW)
        self._limit = self._window  # the window, or less if an MQTT 5 broker asks for less
        self._stall_timeout = stall_timeout_s
        self._cond = threading.Condition()
        self._published = 0  # handed to paho
        self._settled = 0  # acknowledged, refused or known lost
        self._confirmed = 0  # acknowledged with success (QoS 0: written to the socket)
        self._connected = False
        self._connects = 0
        self._refusal: str | None = None
        self._wake_at = -1  # the sender sleeps until this few messages are unsettled; -1: not sleeping
        self._last_progress = time.monotonic()

        # A fixed client id and a session that outlives the connection: after a reconnect the broker
        # still knows us, and paho resends every QoS 1/2 message the broker had not acknowledged.
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=PROTOCOLS[protocol],
            clean_session=None if self._v5 else False,
        )
        # Flow control is ours (the window); paho's own inflight limit would rescan its whole message
        # table on every PUBACK, which caps throughput, so it is lifted, as is its queue limit.
        self._client.max_inflight_messages_set(0)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        if address.username is not None:
            self._client.username_pw_set(address.username, address.password)
        if address.tls:
            self._client.tls_set()
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting in paho's network thread; it keeps reconnecting until `close`."""
        properties = None
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(self._address.host, self._address.port, keepalive=KEEPALIVE_S, properties=properties)
        self._client.loop_start()

    def wait_connected(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._connected:
                self._raise_if_refused()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LinkError(
                        f"no connection to {self._address.host}:{self._address.port} within {timeout_s:g} s"
                    )
                self._cond.wait(remaining)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # -- publishing ------------------------------------------------------------------------------

    def send(self, topic: str, payload: bytes) -> None:
        """Publish once the window has room and the link is up; LinkError if the broker stalls."""
        with self._cond:
            if self._published - self._settled >= self._limit or not self._connected:
                # Wake as soon as one slot frees: refilling in bursts lets the pipe run dry, and a broker
                # without TCP_NODELAY then holds its last PUBACKs for a delayed ACK (~40 ms a time).
                self._wait_until(self._limit - 1)
            self._published += 1
        info = self._client.publish(topic, payload, qos=self._qos)
        # At QoS 1/2 NO_CONN means "kept for the next connection", so only other codes lose the message.
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS and not (self._qos and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN):
            with self._cond:
                self._settle(ok=False)

    def drain(self) -> None:
        """Wait until every published message is settled; LinkError if the broker stalls."""
        with self._cond:
            self._wait_until(0, need_connection=False)

    def _wait_until(self, outstanding: int, *, need_connection: bool = True) -> None:
        # Caller holds self._cond. Sleeps until at most `outstanding` messages are unsettled.
        self._wake_at = outstanding
        # Idle time counts from whichever is later: a slow --rate can leave the last ack long past.
        started = time.monotonic()
        try:
            while self._published - self._settled > outstanding or (need_connection and not self._connected):
                self._raise_if_refused()
                idle = time.monotonic() - max(started, self._last_progress)
                if idle >= self._stall_timeout:
                    raise LinkError(
                        f"broker {self._address.host}:{self._address.port} made no progress for "
                        f"{idle:.0f} s ({self._published - self._settled} messages unacknowledged)"
                    )
                self._cond.wait(min(1.0, self._stall_timeout - idle))
        finally:
            self._wake_at = -1

    @property
    def confirmed(self) -> int:
        return self._confirmed

    @property
    def reconnects(self) -> int:
        return max(0, self._connects - 1)

    def _raise_if_refused(self) -> None:
        if self._refusal is not None:
            raise LinkError(f"broker {self._address.host}:{self._address.port} refused us: {self._refusal}")

    def _settle(self, *, ok: bool) -> None:
        # Caller holds self._cond.
        if self._settled < self._published:
            self._settled += 1
            self._confirmed += ok
        self._last_progress = time.monotonic()
        if self._published - self._settled <= self._wake_at:
            self._cond.notify_all()

    # -- paho callbacks (network thread) --------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            if reason.is_failure:
                self._refusal = str(reason)
            else:
                # MQTT 5 forbids more unacknowledged QoS 1/2 messages than the broker's Receive Maximum.
                receive_max = getattr(properties, "ReceiveMaximum", None)
                if self._qos and isinstance(receive_max, int):
                    self._limit = min(self._window, receive_max)
                self._connected = True
                self._connects += 1
                self._last_progress = time.monotonic()
            self._cond.notify_all()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        pass  # paho retries on its own; wait_connected's deadline decides when to give up

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self._connected = False
            if self._qos == 0:
                # QoS 0 packets not yet written are dropped with the connection: they are lost.
                self._settled = self._published
            self._last_progress = time.monotonic()
            self._cond.notify_all()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Properties
    ) -> None:
        with self._cond:
            self._settle(ok=not reason.is_failure)
