"""One timer structure for every rule and device: a binary heap with lazy deletion.

A deadman rule over 100,000 devices keeps one entry per device, not one per reading: a reading only updates
the device's last-seen time, and when an entry comes due its owner compares that time with the deadline and
either fires or pushes the entry again at the new deadline. Entries whose rule was replaced, or whose episode
ended, are skipped when they come due. Pushing and popping cost O(log n); nothing is ever searched.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.alerts.alert import Alert

DEADLINE = 0  # the owner's own deadline: deadman silence, sequence resolution
REPEAT = 1  # a firing alert's repeat notification


class TimerTarget(Protocol):
    retired: bool

    def on_timer(self, kind: int, device: str, token: object, now_ns: int) -> Alert | None: ...


# (due_ns, order, kind, target, device, token); `order` breaks ties so targets are never compared.
Entry = tuple[int, int, int, TimerTarget, str, object]


class TimerQueue:
    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due_ns: int, kind: int, target: TimerTarget, device: str, token: object = None) -> None:
        heapq.heappush(self._heap, (due_ns, next(self._order), kind, target, device, token))

    def next_due(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_ns: int) -> Iterator[Entry]:
        """Entries due at or before `now_ns`, earliest first; an entry pushed meanwhile for later waits."""
        heap = self._heap
        while heap and heap[0][0] <= now_ns:
            yield heapq.heappop(heap)

    def drop_retired(self) -> None:
        """After the rules are replaced: forget the entries of rules that are gone (they would be skipped anyway)."""
        self._heap = [entry for entry in self._heap if not entry[3].retired]
        heapq.heapify(self._heap)
