"""Runs `python -m gateway run` as a real process, for integration tests and the benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = ROOT / "config" / "gateway.example.yaml"


def store_env(tmp_path: Path, broker_url: str, influx_url: str, client_id: str) -> dict[str, str]:
    """Environment for a gateway writing to both sinks, with its journal beside them: the same identity
    (client id, session, journal) across restarts of one test."""
    return {
        "GATEWAY_MQTT__URL": broker_url,
        "GATEWAY_MQTT__CLIENT_ID": client_id,
        "GATEWAY_INFLUX__URL": influx_url,
        "GATEWAY_INFLUX__TOKEN": "test-token",
        "GATEWAY_SQLITE__PATH": str(tmp_path / "gateway.db"),
        "GATEWAY_JOURNAL__PATH": str(tmp_path / "journal.db"),
    }


class GatewayProcess:
    def __init__(self, workdir: Path, env: Mapping[str, str], config: Path | None = EXAMPLE_CONFIG) -> None:
        self.workdir = workdir
        self.http_port = free_port()
        self.env = {
            **os.environ,
            "GATEWAY_HTTP__PORT": str(self.http_port),
            "GATEWAY_LOG__LEVEL": "INFO",
            # Off unless a test asks: the gateway's own points would add rows to stores tests count exactly.
            "GATEWAY_SELF_METRICS__INTERVAL_S": "0",
            **env,
        }
        self.config = config
        self.log_path = workdir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "gateway", "run"]
        if self.config is not None:
            args += ["--config", str(self.config)]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.metrics().get("gateway_broker_connected") == 1:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gateway did not connect within 20 s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 40) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def metrics(self) -> dict[str, float]:
        """`/metrics` as {name{labels}: value}, `_total` suffixes dropped."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name.replace("_total", "")] = float(value)
        return values

    def wait_for(self, metric: str, at_least: float, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        value = 0.0
        while time.monotonic() < deadline:
            value = self.metrics().get(metric, 0.0)
            if value >= at_least:
                return value
            time.sleep(0.1)
        return value

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        try:
            self.stop()
        finally:
            self.kill()
