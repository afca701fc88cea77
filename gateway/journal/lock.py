"""One gateway a journal: an exclusive lock on `<journal>.lock`, held for as long as the journal is open.

Two gateways on one journal file (`docker compose --scale gateway=2` with a shared volume) each take the same
outbox sequence numbers and move the same cursors, and acknowledged readings are lost. SQLite's own locks do not
prevent it (they only serialise transactions, and WAL mode is made for sharing), so the gateway takes a lock of
its own: `flock` on a file beside the journal, released by the kernel when the process ends however it ends, so
a stale lock file is harmless. The file says who holds it, for the message the second gateway gives.

Tools that only open the journal for a moment (`gateway deadletter list` and `replay`) do not take the lock:
they are meant to run while the gateway runs, and SQLite serialises their transactions with the gateway's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path

from gateway.errors import JournalInUse
from gateway.rfc3339 import rfc3339_ms


def lock_path(journal: Path) -> Path:
    return journal.with_name(f"{journal.name}.lock")


class JournalLock:
    def __init__(self, journal: Path) -> None:
        path = lock_path(journal)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise JournalInUse(
                f"journal.path {str(journal)!r} is in use by another gateway ({holder}; lock file {path}): "
                "every gateway needs a journal of its own (with docker compose --scale, a volume per replica; "
                "share the load with mqtt.shared_group)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        started = rfc3339_ms(time.time_ns())
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()} since {started}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if text:
            return text
    return "holder unknown"
