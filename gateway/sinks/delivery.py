"""Writing readings to a sink, the one way: a retryable failure is retried with the one backoff (a server's
Retry-After as its floor); a refusal is halved until each part is stored or is a single refused reading, so a
bad reading costs only itself. The sink worker and `gateway deadletter replay` both write through it; each says
how long it waits and what becomes of a refused reading."""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.errors import PermanentSinkError, RetryableSinkError
from gateway.model import Reading
from gateway.retry import Backoff
from gateway.sinks import Sink


class Delivery:
    """Subclasses decide `wait_to_retry` and `refused`; `on_refusal` and `stored` are there for counting."""

    def __init__(self, sink: Sink, max_retry_delay_s: float) -> None:
        self.sink = sink
        self._max_retry_delay_s = max_retry_delay_s

    def write(self, readings: Sequence[Reading], first: int = 0) -> bool:
        """Store `readings` (positions `first`, `first + 1`, ... of the caller's list). False when
        `wait_to_retry` gave up: what was not stored by then stays unstored."""
        backoff = Backoff(0.2, self._max_retry_delay_s)
        first_try = time.monotonic()
        while True:
            started = time.perf_counter()
            try:
                self.sink.write(readings)
            except RetryableSinkError as exc:
                delay = backoff.next_delay(at_least=exc.retry_after)
                if not self.wait_to_retry(exc, delay, len(readings), first_try):
                    return False
                continue
            except PermanentSinkError as exc:
                self.on_refusal(exc)
                if len(readings) > 1:
                    middle = len(readings) // 2
                    return self.write(readings[:middle], first) and self.write(readings[middle:], first + middle)
                self.refused(first, readings[0], exc)
            else:
                self.stored(readings, time.perf_counter() - started)
            return True

    def wait_to_retry(self, error: RetryableSinkError, delay_s: float, readings: int, first_try: float) -> bool:
        """Wait `delay_s` before trying `readings` readings again (first tried at monotonic `first_try`);
        False gives up."""
        raise NotImplementedError

    def refused(self, position: int, reading: Reading, error: PermanentSinkError) -> None:
        """The store refuses the reading at `position` on its own: the rest of the batch is stored."""
        raise NotImplementedError

    def on_refusal(self, error: PermanentSinkError) -> None:
        """Every refusal, of a whole batch or of a part of it, before it is halved."""

    def stored(self, readings: Sequence[Reading], seconds: float) -> None:
        """`readings` were stored by one write that took `seconds`."""
