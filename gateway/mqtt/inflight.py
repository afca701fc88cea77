"""Our side of the session: packet identifiers, and our QoS 1 publishes until the broker acknowledges them.

A publish stays here across reconnects; it is sent when the broker's Receive Maximum leaves room, sent again
with DUP after a reconnect, and leaves only with its PUBACK.
"""

from __future__ import annotations

from collections import deque

from gateway.mqtt.errors import MqttError
from gateway.mqtt.packets import with_dup

_MAX_PACKET_ID = 0xFFFF


class PacketIds:
    """Allocates packet identifiers 1-65535 in turn, skipping those still in use (a publish or a subscribe)."""

    def __init__(self) -> None:
        self._in_use: set[int] = set()
        self._next = 1

    def allocate(self) -> int:
        if len(self._in_use) >= _MAX_PACKET_ID:
            raise MqttError("all 65535 packet identifiers are in use")
        candidate = self._next
        while candidate in self._in_use:
            candidate = candidate % _MAX_PACKET_ID + 1
        self._next = candidate % _MAX_PACKET_ID + 1
        self._in_use.add(candidate)
        return candidate

    def release(self, packet_id: int) -> None:
        self._in_use.discard(packet_id)

    def __contains__(self, packet_id: int) -> bool:
        return packet_id in self._in_use


class OutgoingPublishes:
    """QoS 1 publishes not yet acknowledged, in the order they were made; what this connection may send now."""

    def __init__(self, packet_ids: PacketIds) -> None:
        self._ids = packet_ids
        self._packets: dict[int, bytes] = {}  # packet id -> PUBLISH as first encoded (DUP clear)
        self._sent_before: set[int] = set()  # sent on some connection: DUP when sent again
        self._unsent: deque[int] = deque()  # not yet sent on this connection, oldest first
        self._on_the_wire: set[int] = set()  # sent on this connection, not acknowledged

    def __len__(self) -> int:
        return len(self._packets)

    def add(self, packet_id: int, packet: bytes) -> None:
        self._packets[packet_id] = packet
        self._unsent.append(packet_id)

    def take_sendable(self, window: int) -> list[bytes]:
        """The packets to send now, oldest first, while fewer than `window` are unacknowledged on this connection."""
        out = []
        while self._unsent and len(self._on_the_wire) < window:
            packet_id = self._unsent.popleft()
            packet = self._packets[packet_id]
            out.append(with_dup(packet) if packet_id in self._sent_before else packet)
            self._sent_before.add(packet_id)
            self._on_the_wire.add(packet_id)
        return out

    def acknowledged(self, packet_id: int) -> bool:
        """Forget the publish the broker acknowledged; False for an id that is not ours (a late or stray PUBACK)."""
        if self._packets.pop(packet_id, None) is None:
            return False
        self._sent_before.discard(packet_id)
        if packet_id in self._on_the_wire:
            self._on_the_wire.discard(packet_id)
        else:  # acknowledged before this connection sent it again: a broker's business; keep the counts right
            self._unsent.remove(packet_id)
        self._ids.release(packet_id)
        return True

    def connection_lost(self) -> None:
        """Everything unacknowledged is to be sent again, in its first order, on the next connection."""
        self._unsent = deque(self._packets)
        self._on_the_wire.clear()
