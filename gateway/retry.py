"""The one backoff policy: capped exponential delays with full jitter, shared by reconnects and sink retries."""

from __future__ import annotations

import random


class Backoff:
    """`next_delay()` grows min_s, 2*min_s, ... up to max_s; each delay is drawn from [d/2, d] so that many
    gateways (or many sinks) that failed together do not retry in lockstep."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self, at_least: float | None = None) -> float:
        ceiling = min(self.max_s, self.min_s * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        delay = self._rng.uniform(ceiling / 2, ceiling)
        # A server's Retry-After is a floor, not a suggestion.
        return max(delay, at_least) if at_least is not None else delay

    def reset(self) -> None:
        self.attempts = 0
