"""Per-device sequence tracking: from the `seq` a device puts in its messages, lost readings (gaps), late
arrivals (out of order) and device reboots (resets).

Classification of a reading with seq `s` from a device whose highest seq so far is `last`:

* `s == last + 1`: in order.
* `s > last + 1`: a gap of `s - last - 1` readings; they may still arrive (then they also count as out of order).
* `s <= last`: a reset when the device's clock moved on (its timestamp is newer than the newest reading seen,
  i.e. it rebooted and counts from the start again), or, for readings stamped with the receive time, when the
  seq fell by more than `reorder_window`; otherwise a late, out-of-order arrival.

Only new readings are tracked (duplicates are dropped before), in the order the gateway receives them. State is
in memory: after a restart each device's first reading sets its baseline again. Counts are kept per device for
at most `max_devices` devices with events; the rest are summed under the device label `_other`.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal, NamedTuple

from gateway.model import Reading

EventKind = Literal["gap", "out_of_order", "reset"]
OTHER_DEVICES = "_other"


class SequenceEvent(NamedTuple):
    device: str
    kind: EventKind
    n: int  # readings missing for a gap, else 1
    reading_id: str
    time_ns: int
    seq: int


class SequenceTracker:
    def __init__(self, reorder_window: int = 1000, max_devices: int = 10_000, max_tracked: int = 1_000_000) -> None:
        self._reorder_window = reorder_window
        self._max_devices = max_devices
        self._max_tracked = max_tracked
        self._last: dict[str, tuple[int, int]] = {}  # device -> (highest seq, newest time_ns)
        self.counts: dict[EventKind, Counter[str]] = {"gap": Counter(), "out_of_order": Counter(), "reset": Counter()}

    def observe(self, reading: Reading) -> SequenceEvent | None:
        seq = reading.seq
        if seq is None:
            return None
        device = reading.device
        previous = self._last.get(device)
        if previous is None:
            if len(self._last) >= self._max_tracked:  # ids are device-controlled: forget the oldest-seen
                del self._last[next(iter(self._last))]
            self._last[device] = (seq, reading.time_ns)
            return None
        last, newest_ns = previous
        if seq == last + 1:
            self._last[device] = (seq, max(newest_ns, reading.time_ns))
            return None
        if seq > last + 1:
            self._last[device] = (seq, max(newest_ns, reading.time_ns))
            return self._event(reading, "gap", seq - last - 1)
        rebooted = reading.time_ns > newest_ns if reading.time_from_device else last - seq > self._reorder_window
        if rebooted:
            self._last[device] = (seq, reading.time_ns)
            return self._event(reading, "reset", 1)
        return self._event(reading, "out_of_order", 1)

    def _event(self, reading: Reading, kind: EventKind, count: int) -> SequenceEvent:
        counter = self.counts[kind]
        device = reading.device
        if device not in counter and len(counter) >= self._max_devices:
            device = OTHER_DEVICES
        counter[device] += count
        assert reading.seq is not None
        return SequenceEvent(reading.device, kind, count, reading.reading_id, reading.time_ns, reading.seq)

    @property
    def devices(self) -> int:
        return len(self._last)
