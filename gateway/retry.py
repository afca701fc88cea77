"""The one backoff policy: capped exponential delays with full jitter, shared by reconnects and sink retries;
and a server's Retry-After, read once for every HTTP sink."""

from __future__ import annotations

import email.utils
import random
import time


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


def retry_after_s(value: str | None) -> float | None:
    """An HTTP Retry-After header as seconds to wait: a number of seconds or an HTTP date (RFC 9110 allows both);
    None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - time.time())
