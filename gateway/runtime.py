"""Who owns the gateway's threads: every runtime thread runs under the supervisor's guard, so a thread that
dies is never a silent stall.

A thread that raises makes the gateway not ready at once (`failure`, shown by /readyz), is logged with its name
and traceback, and wakes the pipeline, which shuts down as far as it still can and exits non-zero: a supervisor
(systemd, Docker, Kubernetes) restarts the process. Nothing acknowledged is lost on that path, because a message
is acknowledged only after the journal holds what it produced; what was read but not committed is redelivered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Spawn = Callable[[str, Callable[[], None]], threading.Thread]


def plain_thread(name: str, target: Callable[[], None]) -> threading.Thread:
    """An unsupervised daemon thread: for components used on their own (tools, tests)."""
    return threading.Thread(target=target, name=name, daemon=True)


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
