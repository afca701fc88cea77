"""Process management shared by the servers the tests and benchmarks run (``mosquitto.py``, ``victoria.py``):
start, wait until ready, stop, restart on the same port, and no process left behind at exit.

Must not import pytest: ``bench/`` uses it too.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

LOCALHOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A managed server could not be started, stopped or queried."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(env_var: str, name: str, fallback: str) -> str:
    found = os.environ.get(env_var) or shutil.which(name)
    if found:
        return found
    if Path(fallback).is_file():
        return fallback
    raise ServerError(
        f"{name} binary not found (looked at ${env_var}, PATH and {fallback}); "
        f"install it, e.g. `apt-get install {name}`"
    )


def tail_of(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"<{path} does not exist>"
    return "\n".join(text.splitlines()[-lines:]) or f"<{path} is empty>"


# Processes started by this module that are still running: killed at interpreter exit so that a
# crashed test run or an interrupted benchmark never leaves servers behind.
_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        # Each runs in a session and process group of its own (start_new_session): the group goes too, so a
        # server started through a wrapper script (rabbitmq-server) leaves no VM behind.
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        _LIVE.discard(proc)


class ManagedServer:
    """Start/stop/restart plumbing shared by the concrete servers.

    Subclasses provide ``_command()``, ``_prepare()`` (write config, create directories) and
    ``_probe()`` (True once the server answers). The process's stdout/stderr go to ``output_path``.
    """

    name = "server"
    ready_marker = b""  # what the server logs once it serves, besides answering the probe ("": the probe alone)
    start_timeout = 15.0
    stop_timeout = 15.0
    start_attempts = 5

    def __init__(self, workdir: Path, port: int | None) -> None:
        self.workdir = Path(workdir).resolve()
        if any(ch.isspace() for ch in str(self.workdir)):
            # Mosquitto's config parser splits on whitespace; keep both servers consistent.
            raise ValueError(f"workdir must not contain whitespace: {self.workdir!r}")
        self._auto_port = port is None
        self._port = free_port() if port is None else port
        self._proc: subprocess.Popen[bytes] | None = None
        self._ever_started = False
        self.start_count = 0
        self.last_start_seconds = math.nan

    # -- public API ---------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return LOCALHOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def output_path(self) -> Path:
        """Where the process's stdout and stderr go (appended to across restarts)."""
        return self.workdir / f"{self.name}.out"

    def log_tail(self, lines: int = 40) -> str:
        return f"--- {self.output_path} ---\n{tail_of(self.output_path, lines)}"

    def start(self) -> None:
        """Start the server and block until it answers; raise ServerError (with log tail) if not.

        A failed bind is retried a few times: on the same port once the server has run (restart
        must keep the port), on a fresh free port if the port was picked automatically.
        """
        if self.running:
            raise ServerError(f"{self.name} is already running (pid {self.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        failure = ""
        for attempt in range(self.start_attempts):
            if attempt and self._auto_port and not self._ever_started:
                self._port = free_port()
            self._prepare()
            failure = self._launch_and_wait()
            if not failure:
                self._ever_started = True
                self.start_count += 1
                self.last_start_seconds = time.monotonic() - began
                return
            if attempt + 1 < self.start_attempts:
                time.sleep(0.2 * (attempt + 1))
        raise ServerError(
            f"{self.name} did not start on {self.host}:{self.port} after {self.start_attempts} "
            f"attempts: {failure}\n{self.log_tail()}"
        )

    def stop(self, kill: bool = False) -> None:
        """Stop the server: SIGTERM (graceful, state is saved) or SIGKILL when ``kill``.

        Idempotent. Falls back to SIGKILL if SIGTERM does not end it within ``stop_timeout``.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=self.stop_timeout)
        _LIVE.discard(proc)
        self._proc = None

    def restart(self, kill: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL to simulate a crash) and start again: same port, same data."""
        self.stop(kill=kill)
        self.start()

    @contextlib.contextmanager
    def outage(self, after_s: float, for_s: float) -> Iterator[None]:
        """While the block runs: `after_s` into it the server stops (SIGTERM), for `for_s`, then starts again
        on the same port. The exit waits for the server to be back."""

        def bounce() -> None:
            time.sleep(after_s)  # the scenario: the outage begins this far into the block
            self.stop()
            time.sleep(for_s)  # the scenario: the outage itself
            self.start()

        bouncer = threading.Thread(target=bounce, name=f"{self.name}-outage")
        bouncer.start()
        try:
            yield
        finally:
            bouncer.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state} workdir={self.workdir}>"

    # -- subclass hooks -----------------------------------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write config files / create directories before each launch."""

    def _probe(self) -> bool:
        """One readiness check; True when the server is serving."""
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        """The process's environment (None: this process's own)."""
        return None

    @property
    def _ready_log(self) -> Path:
        """The file in which the server writes ``ready_marker``."""
        return self.output_path

    def _ready_marker_seen(self, log_offset: int) -> bool:
        """Extra readiness condition: ``ready_marker`` written to ``_ready_log`` since ``log_offset``."""
        if not self.ready_marker:
            return True
        try:
            with self._ready_log.open("rb") as log:
                log.seek(log_offset)
                return self.ready_marker in log.read()
        except FileNotFoundError:
            return False

    def _log_size(self) -> int:
        try:
            return self._ready_log.stat().st_size
        except FileNotFoundError:
            return 0

    # -- internals ----------------------------------------------------------------------------------

    def _launch_and_wait(self) -> str:
        """Launch once; return "" when ready, else a description of the failure."""
        log_offset = self._log_size()
        with self.output_path.open("ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self._command()}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._env(),
                # Own session: a Ctrl-C aimed at the test run / benchmark does not hit the server
                # directly, so stop() can still shut it down gracefully.
                start_new_session=True,
            )
        self._proc = proc
        _LIVE.add(proc)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            # The probe alone could be answered by a stranger that owns the port; the process
            # being alive *after* a successful probe plus the log marker rule that out.
            if self._probe() and self._ready_marker_seen(log_offset) and proc.poll() is None:
                return ""
            time.sleep(0.02)
        if proc.poll() is None:
            self.stop(kill=True)
            return f"not ready within {self.start_timeout:.0f}s"
        _LIVE.discard(proc)
        self._proc = None
        return f"process exited with code {proc.returncode}"
