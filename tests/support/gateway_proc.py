"""Runs `python -m gateway run` as a real process, for integration tests and the benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import yaml

from device_sim.blast import blast, publish_packet
from tests.support import ROOT
from tests.support.servers import free_port
from tests.support.waits import wait_until

EXAMPLE_CONFIG = ROOT / "config" / "gateway.example.yaml"


def sqlite_env(broker_url: str, client_id: str, db: Path) -> dict[str, str]:
    """Environment for a gateway storing into the SQLite file `db`, with its journal beside it: the same identity
    (client id, session, journal) across restarts of one test."""
    return {
        "GATEWAY_MQTT__URL": broker_url,
        "GATEWAY_MQTT__CLIENT_ID": client_id,
        "GATEWAY_SQLITE__PATH": str(db),
        "GATEWAY_JOURNAL__PATH": str(db.parent / "journal.db"),
    }


def store_env(tmp_path: Path, broker_url: str, influx_url: str, client_id: str) -> dict[str, str]:
    """`sqlite_env` (`tmp_path / "gateway.db"`) plus the InfluxDB sink at `influx_url`: both sinks."""
    influx = {"GATEWAY_INFLUX__URL": influx_url, "GATEWAY_INFLUX__TOKEN": "test-token"}
    return {**sqlite_env(broker_url, client_id, tmp_path / "gateway.db"), **influx}


def publish(broker_url: str, messages: Sequence[tuple[str, bytes]], client_id: str = "test-publisher") -> None:
    """Publish at QoS 1 (MQTT 3.1.1, pre-encoded: fast) and fail unless the broker acknowledged every one."""
    packets = [publish_packet(topic, payload, i % 65535 + 1) for i, (topic, payload) in enumerate(messages)]
    stats = blast(packets, broker_url, client_id=client_id)
    assert stats.acknowledged == len(messages), f"broker acknowledged {stats.acknowledged} of {len(messages)}"


def run_cli(
    args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m gateway <args>` to completion, in this environment without a developer's GATEWAY_* variables,
    plus `env`."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env={**clean, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sqlite_rows(db: Path) -> int:
    """Rows in the SQLite sink's table (one a field of a reading); 0 before the sink created it."""
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def sqlite_gateway(workdir: Path, broker_url: str, client_id: str, **sections: object) -> GatewayProcess:
    """A gateway storing into SQLite only (`workdir/gateway.db`), journal `workdir/journal.db`, configured by a
    YAML file written from `sections` (merged over that base): the same identity across restarts."""
    workdir.mkdir(parents=True, exist_ok=True)
    config: dict[str, object] = {
        "mqtt": {"url": broker_url, "client_id": client_id},
        "sqlite": {"path": str(workdir / "gateway.db"), "flush_interval_ms": 20},
        "journal": {"path": str(workdir / "journal.db")},
    }
    for name, section in sections.items():
        base = config.get(name)
        config[name] = {**base, **section} if isinstance(base, dict) and isinstance(section, dict) else section
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return GatewayProcess(workdir, {}, config=path)


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
        self.preamble: str | None = None  # Python run before the gateway starts (a test's fault injection)
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> GatewayProcess:
        """Start the process and wait until its HTTP endpoint answers; `start()` waits for the broker too."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.preamble is None:
            args = [sys.executable, "-m", "gateway", "run"]
        else:  # the test's code first, in the gateway's own process, then the command line as usual
            args = [sys.executable, "-c", f"{self.preamble}\nfrom gateway.tools.cli import main\nmain()", "run"]
        if self.config is not None:
            args += ["--config", str(self.config)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        self._wait_alive(lambda: self.metrics() is not None, "the gateway's HTTP endpoint")
        return self

    def start(self) -> GatewayProcess:
        """Start the process and wait until it is connected to the broker (fails with the log's tail)."""
        self.launch()
        self._wait_alive(lambda: self.metrics().get("gateway_broker_connected") == 1, "the broker connection")
        return self

    def _wait_alive(self, answered: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
        """Wait for `answered()` (an OSError counts as not yet), failing at once when the process exits;
        the process is killed when the wait fails, as no `__exit__` follows a failed start."""

        def reached() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return answered()
            except OSError:
                return False

        try:
            wait_until(reached, timeout_s, what, self.log_tail)
        except BaseException:
            self.kill()
            raise

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
        """The metric's first value that is at least `at_least`; fails with the log's tail when none is in time."""
        seen = [0.0]

        def reached() -> bool:
            seen[0] = self.metrics().get(metric, 0.0)
            return seen[0] >= at_least

        wait_until(reached, timeout_s, f"{metric} >= {at_least}", lambda: f"last {seen[0]}\n{self.log_tail()}")
        return seen[0]

    def readyz(self) -> tuple[int, str]:
        """(HTTP status, body) of /readyz."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=5) as resp:
                return resp.status, resp.read().decode().strip()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.read().decode().strip()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, text: str, timeout_s: float) -> str:
        """The log once it holds `text`; fails with the log's tail when it does not within `timeout_s`."""
        wait_until(lambda: text in self.log_text(), timeout_s, f"log line {text!r}", self.log_tail)
        return self.log_text()

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
