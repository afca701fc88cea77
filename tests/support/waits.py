"""The one way a test waits: poll a predicate until it holds, and fail loudly, naming what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    context: Callable[[], object] = lambda: "",
    interval: float = 0.05,
) -> None:
    """Poll `predicate` until it is true; on timeout fail naming `what` and `context()` (e.g. a log tail)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{context()}")
        time.sleep(interval)
