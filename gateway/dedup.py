"""The deduplication window: has this reading been seen recently? O(1) per reading, bounded in time and size."""

from __future__ import annotations

from collections import OrderedDict

from gateway.model import Reading

DedupKey = tuple[str, str]


def key_for(reading: Reading) -> DedupKey:
    """Formats derive `reading_id` as the device's message id, else its sequence number, else time + content
    hash, so the id alone identifies a re-sent reading."""
    return (reading.device, reading.reading_id)


class DedupWindow:
    """Remembers keys for `window_ns`, at most `max_entries` of them (oldest forgotten first)."""

    def __init__(self, max_entries: int, window_ns: int) -> None:
        self.max_entries = max_entries
        self.window_ns = window_ns
        self._seen: OrderedDict[DedupKey, int] = OrderedDict()

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
