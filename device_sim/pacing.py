"""Smooth rate limiting: every message has a scheduled send time, one interval after the previous one.

The sender sleeps only once it is a whole `granularity` ahead of schedule, so at high rates it sends
short even bursts (rate x granularity messages) instead of paying an inexact sleep per message, and the
long-run rate stays exact because the schedule, not the sleeps, decides it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    """Call `wait()` before each send; it returns once that send is due. A rate of 0 means no limit."""

    def __init__(
        self,
        rate: float,
        *,
        granularity_s: float = 0.002,
        max_lag_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate < 0:
            raise ValueError(f"rate must not be negative, got {rate}")
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._granularity = granularity_s
        self._max_lag = max_lag_s
        self._clock = clock
        self._sleep = sleep
        self._due: float | None = None  # scheduled time of the next send

    def wait(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        due = now if self._due is None else self._due
        if due - now >= self._granularity:
            self._sleep(due - now)
        elif now - due > self._max_lag:
            # After a stall (broker away, full window) start afresh rather than burst to catch up.
            due = now
        self._due = due + self._interval
