"""Log output: JSON lines for machines, readable lines for terminals, rate-limited where input decides the volume.

Modules log through the standard `logging` module; fields that belong to a line go in `extra` (for example
`correlation_id`, the reading id or the id the gateway gave a rejected message, so one message can be followed
through logs, dead letters, stores and alerts). structlog renders every record, ours and the libraries', with the
same processors.

A record with `extra={"rate_key": ...}` is rate-limited per key: at most `burst` lines per `interval_s`; the next
line let through after a quiet spell says how many were suppressed (`suppressed`). A flood of malformed messages
costs a few lines a reason, not one a message.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Literal

import orjson
import structlog

LogFormat = Literal["auto", "json", "console"]


class RateLimitFilter(logging.Filter):
    def __init__(self, burst: int = 5, interval_s: float = 10.0) -> None:
        super().__init__()
        self._burst = burst
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (window start, let through, suppressed)

    def filter(self, record: logging.LogRecord) -> bool:
        key = getattr(record, "rate_key", None)
        if key is None:
            return True
        now = time.monotonic()
        with self._lock:
            start, passed, suppressed = self._windows.get(key, (now, 0, 0))
            if now - start >= self._interval_s:
                start, passed = now, 0
            if passed >= self._burst:
                self._windows[key] = (start, passed, suppressed + 1)
                return False
            self._windows[key] = (start, passed + 1, 0)
            if len(self._windows) > 10_000:  # keys come from input (reasons are few, but be safe)
                self._windows.clear()
        if suppressed:
            record.suppressed = suppressed
        return True


def _drop_internal(_logger: object, _name: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    event.pop("rate_key", None)
    return event


def configure(level: str, fmt: LogFormat = "auto", stream: object = None) -> None:
    """Route every `logging` record through structlog's renderer, to stderr."""
    out = stream if stream is not None else sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not getattr(out, "isatty", lambda: False)())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=lambda obj, **_: orjson.dumps(obj, default=str).decode())
        if use_json
        else structlog.dev.ConsoleRenderer(colors=getattr(out, "isatty", lambda: False)())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_internal,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)  # type: ignore[arg-type]
    handler.setFormatter(formatter)
    handler.addFilter(RateLimitFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
