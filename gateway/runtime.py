"""Who owns the gateway's threads: every runtime thread runs under the supervisor's guard, so a thread that
dies is never a silent stall.

A thread that raises makes the gateway not ready at once (`failure`, shown by /readyz), is logged with its name
and traceback, and wakes the pipeline, which shuts down as far as it still can and exits non-zero: a supervisor
(systemd, Docker, Kubernetes) restarts the process. Nothing acknowledged is lost on that path, because a message
is acknowledged only after the journal holds what it produced; what was read but not committed is redelivered.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)
# Collections of the youngest generation after this many allocations (CPython's default: 700), and of the
# older ones after 50 and 100 of the one below.
GC_THRESHOLDS = (50_000, 50, 100)

Spawn = Callable[[str, Callable[[], None]], threading.Thread]


def plain_thread(name: str, target: Callable[[], None]) -> threading.Thread:
    """An unsupervised daemon thread: for components used on their own (tools, tests)."""
    return threading.Thread(target=target, name=name, daemon=True)


def tune_garbage_collector() -> None:
    """For a process that runs the pipeline: it builds and drops tens of thousands of tuples a second beside
    long-lived tables (the dedup window holds up to a million keys), and CPython's default thresholds run a
    collection every 700 allocations and a full one, which walks every table, many times a second. What exists
    once the pipeline is built is frozen out of collection, and collections run less often (cycles are still
    collected). Measured with bench/ingest_path.py: a fifth of the per-message CPU time went to collections."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Supervisor:
    def __init__(self) -> None:
        self.failure: str | None = None  # "thread journal died: OperationalError: ...", the first one
        self.failed = threading.Event()
        self._wake: threading.Event | None = None

    def thread(self, name: str, target: Callable[[], None]) -> threading.Thread:
        """A daemon thread (not started) whose death is reported; a `Spawn` for the components."""

        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # whatever ends a thread must be reported, not lost
                self._died(name, exc)

        return threading.Thread(target=guarded, name=name, daemon=True)

    def wait(self, stop: threading.Event) -> None:
        """Until `stop` is set or a thread died."""
        self._wake = stop
        if self.failed.is_set():
            return
        stop.wait()

    def _died(self, name: str, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = f"thread {name} died: {type(exc).__name__}: {exc}"
        log.critical("thread %s died: %s: %s", name, type(exc).__name__, exc, exc_info=exc)
        self.failed.set()
        if self._wake is not None:
            self._wake.set()
