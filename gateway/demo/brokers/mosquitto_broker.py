"""Mosquitto for `gateway demo --broker mosquitto`: found on this machine, started on a free port, stopped at the end.

The fallback to the default in-process amqtt: it needs Mosquitto installed, and speaks MQTT 5 with a
persistent session on disk, as in production.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Literal

from gateway.demo.brokers.base import LOCALHOST, free_port
from gateway.errors import EXIT_NO_BROKER, DemoError

MOSQUITTO_FALLBACKS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
MAX_QUEUED_MESSAGES = 100_000_000  # 0 ("no limit") has been buggy across Mosquitto 2.0.x; see config/mosquitto.conf


def find_mosquitto() -> str | None:
    """$MOSQUITTO_BIN when set (and nothing else), else `mosquitto` on PATH, else the Debian locations."""
    explicit = os.environ.get("MOSQUITTO_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((path for path in MOSQUITTO_FALLBACKS if os.access(path, os.X_OK)), None)


def require_mosquitto() -> str:
    """The Mosquitto binary, or a DemoError (exit 2) that says how to install it."""
    binary = find_mosquitto()
    if binary is None:
        where = (
            f"MOSQUITTO_BIN={os.environ['MOSQUITTO_BIN']} is not an executable"
            if os.environ.get("MOSQUITTO_BIN")
            else f"looked on PATH and at {', '.join(MOSQUITTO_FALLBACKS)}"
        )
        raise DemoError(
            f"Mosquitto, the broker `--broker mosquitto` runs, is not installed ({where}).\n"
            "Install it with `sudo apt-get install mosquitto`, or leave out --broker: the default broker, amqtt, "
            "runs inside the demo.",
            EXIT_NO_BROKER,
        )
    return binary


class MosquittoBroker:
    """A private Mosquitto on 127.0.0.1:<free port>; config, persistence and log in `workdir`."""

    name = "mosquitto"
    protocol: Literal["5", "3.1.1"] = "5"
    start_timeout_s = 10.0

    def __init__(self, binary: str, workdir: Path) -> None:
        if any(ch.isspace() for ch in str(workdir)):
            raise DemoError(f"the temporary directory must not contain whitespace (Mosquitto config): {workdir}")
        self.binary = binary
        self.workdir = workdir
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{LOCALHOST}:{self.port}"

    def describe(self) -> str:
        return f"mosquitto {self.url} (temporary, {self.workdir})"

    def subscribed(self, client_id: str, topic_filter: str) -> bool:
        # Mosquitto logs "<client id> <qos> <filter>" for each subscription (log_type subscribe).
        return self.log_contains(f"{client_id} ".encode()) and self.log_contains(f" {topic_filter}".encode())

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def config_text(self) -> str:
        return "\n".join(
            [
                "# Written by `gateway demo`; the guarantees are explained in config/mosquitto.conf.",
                f"listener {self.port} {LOCALHOST}",
                "allow_anonymous true",
                # As root Mosquitto would switch to the `mosquitto` user, which cannot write our temp dir.
                f"user {pwd.getpwuid(os.geteuid()).pw_name}",
                "set_tcp_nodelay true",
                "persistence true",
                f"persistence_location {self.workdir}/",
                "persistence_file mosquitto.db",
                "autosave_interval 10",
                "max_inflight_messages 0",
                f"max_queued_messages {MAX_QUEUED_MESSAGES}",
                "max_queued_bytes 0",
                f"log_dest file {self.log_path}",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "log_type subscribe",  # lets the demo see the gateway's subscription before publishing
                "",
            ]
        )

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        failure = ""
        for _attempt in range(5):  # the free port may be taken before Mosquitto binds it: pick another
            self.port = free_port()
            (self.workdir / "mosquitto.conf").write_text(self.config_text())
            failure = self._launch()
            if not failure:
                return
        raise DemoError(f"Mosquitto did not start: {failure}\n{self.log_tail()}", EXIT_NO_BROKER)

    def _launch(self) -> str:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with (self.workdir / "mosquitto.out").open("ab") as out:
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(self.workdir / "mosquitto.conf")],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                # Own session: Ctrl-C reaches only the demo, which stops the broker last, after the gateway.
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return f"exited with code {self._proc.returncode}"
            if self.log_contains(b" running", offset) and self._accepts_connections():
                return ""
            time.sleep(0.02)
        self.stop()
        return f"not ready within {self.start_timeout_s:g} s"

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection((LOCALHOST, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def log_contains(self, needle: bytes, offset: int = 0) -> bool:
        try:
            with self.log_path.open("rb") as log_file:
                log_file.seek(offset)
                return needle in log_file.read()
        except FileNotFoundError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        parts = []
        for path in (self.workdir / "mosquitto.out", self.log_path):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM (Mosquitto saves its state and exits), SIGKILL if that takes more than 5 s."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
