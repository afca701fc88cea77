"""The deduplication window: has this reading been seen recently? O(1) per reading, bounded in time and size.

Readings are recognised by their ids (`key_for`). A reading without a device timestamp, id or sequence number
has an id made of the receive time and its values, which a redelivery does not share: its receive time is new.
Such messages are recognised by their delivery instead (`delivery_key`): a message the broker sends again after
a lost connection or a crash carries MQTT's DUP flag and the packet id of its first delivery, so a DUP message
whose topic and payload equal those of the message last committed under that packet id is that message again.
A message without the DUP flag is never matched this way, so a sensor that sends the same value every minute
keeps every reading.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from gateway.model import RawMessage, Reading

DedupKey = tuple[str, str]

# First element of a delivery key, where a reading key has its device: device ids are printable, so never this.
DELIVERY_MARKER = "\x00delivery"


def key_for(reading: Reading) -> DedupKey:
    """Formats derive `reading_id` as the device's message id, else its sequence number and time, else time +
    content hash, so the id alone identifies a re-sent reading."""
    return (reading.device, reading.reading_id)


def delivery_key(raw: RawMessage) -> DedupKey | None:
    """(marker, "<packet id>:<hash of topic and payload>") for a QoS 1 message; None for QoS 0 (never resent)."""
    if raw.delivery_slot is None:
        return None
    digest = hashlib.blake2b(raw.topic.encode(), digest_size=8)
    digest.update(b"\0")
    digest.update(raw.payload)
    return (DELIVERY_MARKER, f"{raw.delivery_slot}:{digest.hexdigest()}")


class DedupWindow:
    """Remembers keys for `window_ns`, at most `max_entries` of them (oldest forgotten first), and for each packet
    id the delivery last committed under it (at most 65,535: packet ids are 16 bits)."""

    def __init__(self, max_entries: int, window_ns: int) -> None:
        self.max_entries = max_entries
        self.window_ns = window_ns
        self._seen: OrderedDict[DedupKey, int] = OrderedDict()
        self._deliveries: dict[str, tuple[str, int]] = {}  # packet id -> (content digest, seen_ns)

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, key: DedupKey, now_ns: int) -> bool:
        """True when `key` was seen within the window (a duplicate); otherwise remember it."""
        seen = self._seen
        if key in seen:
            if now_ns - seen[key] <= self.window_ns:
                return True
            del seen[key]
        seen[key] = now_ns
        self._evict(now_ns)
        return False

    def remember_delivery(self, key: DedupKey, now_ns: int) -> None:
        """The message with this delivery key produced new readings: a later DUP copy of it is a redelivery."""
        packet_id, _, digest = key[1].partition(":")
        self._deliveries[packet_id] = (digest, now_ns)

    def is_redelivery(self, key: DedupKey, now_ns: int) -> bool:
        """True when the delivery last remembered under this key's packet id had the same content, within the
        window. Only for messages with the DUP flag: a first delivery may well repeat an earlier message's bytes."""
        packet_id, _, digest = key[1].partition(":")
        last = self._deliveries.get(packet_id)
        return last is not None and last[0] == digest and now_ns - last[1] <= self.window_ns

    def restore(self, key: DedupKey, seen_ns: int) -> None:
        """A key committed to the journal before a restart, oldest first."""
        if key[0] == DELIVERY_MARKER:
            self.remember_delivery(key, seen_ns)
        else:
            self.check_and_add(key, seen_ns)

    def forget(self, key: DedupKey) -> None:
        self._seen.pop(key, None)

    def _evict(self, now_ns: int) -> None:
        seen = self._seen
        while len(seen) > self.max_entries:
            seen.popitem(last=False)
        horizon = now_ns - self.window_ns
        while seen:
            oldest_key = next(iter(seen))
            if seen[oldest_key] >= horizon:
                break
            del seen[oldest_key]
