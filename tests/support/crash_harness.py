"""The crash-safety tests' harness (tests/integration/test_kill9_recovery.py and its neighbours): a gateway on
the test's broker and VictoriaMetrics, a publisher thread, waits for an idle or stored gateway, a clean stop,
and the store compared with the fleet's manifest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from device_sim.blast import blast
from device_sim.manifest import Manifest
from tests.support.gateway_proc import GatewayProcess, sqlite_rows, store_env
from tests.support.servers import Mosquitto, VictoriaMetrics
from tests.support.storecheck import Comparison, compare
from tests.support.waits import wait_until

FIELDS = 4  # temperature, humidity, battery, relay: samples per reading in VictoriaMetrics, rows in SQLite
TELEMETRY = '{__name__=~"telemetry_.*"}'
SINKS = ("influx", "sqlite")
ACKED = "gateway_messages_acknowledged"


def _gateway(tmp_path: Path, broker: Mosquitto, vm: VictoriaMetrics) -> GatewayProcess:
    """One gateway identity: fixed client id (persistent session) and one journal across its restarts."""
    return GatewayProcess(tmp_path / "gateway", store_env(tmp_path, broker.url, vm.url, f"gw-crash-{broker.port}"))


class Publisher(threading.Thread):
    """Publishes pre-encoded QoS 1 packets with device_sim.blast, all at once (`rate` 0) or in slices paced
    at `rate` messages a second, until done or `halt()`. `sent` counts the prefix the broker acknowledged."""

    def __init__(self, packets: Sequence[bytes], url: str, rate: float = 0, slice_size: int = 500) -> None:
        super().__init__(name="publisher", daemon=True)
        self._packets = packets
        self._url = url
        self._rate = rate
        self._slice = slice_size if rate else len(packets)
        self._halt = threading.Event()
        self.sent = 0
        self.error: str | None = None
        self.elapsed_s = 0.0

    def halt(self) -> None:
        self._halt.set()
        if self.ident is None:  # never started
            return
        self.join(30)
        assert not self.is_alive()

    def run(self) -> None:
        start = time.monotonic()
        try:
            for first in range(0, len(self._packets), self._slice):
                if self._rate and self._halt.wait(max(0.0, start + first / self._rate - time.monotonic())):
                    break
                stats = blast(self._packets[first : first + self._slice], self._url, client_id="crash-publisher")
                assert stats.acknowledged == stats.sent
                self.sent = first + stats.sent
        except Exception as exc:  # reported by finish()
            self.error = f"{type(exc).__name__}: {exc}"
        self.elapsed_s = time.monotonic() - start

    def finish(self, timeout_s: float) -> int:
        self.join(timeout_s)
        assert not self.is_alive(), "publisher still running"
        assert self.error is None, self.error
        return self.sent


def _pending_in_journal(metrics: dict[str, float]) -> float:
    return metrics.get("gateway_journal_bytes", 0) + sum(
        metrics.get(f'gateway_sink_pending_chunks{{sink="{sink}"}}', 0) for sink in SINKS
    )


def _wait_idle(gateway: GatewayProcess, timeout_s: float, quiet_s: float = 1.5) -> dict[str, float]:
    """Wait until the gateway receives nothing new for `quiet_s` and both sinks have stored the whole journal."""
    last_received = -1.0
    quiet_since = time.monotonic()
    metrics: dict[str, float] = {}

    def idle() -> bool:
        nonlocal last_received, quiet_since
        metrics.update(gateway.metrics())
        received = metrics["gateway_messages_received"]
        if received != last_received or _pending_in_journal(metrics):
            last_received, quiet_since = received, time.monotonic()
            return False
        return time.monotonic() - quiet_since >= quiet_s

    wait_until(
        idle,
        timeout_s,
        f"the gateway idle (nothing received for {quiet_s} s, the journal stored)",
        lambda: f"{metrics}\n{gateway.log_tail()}",
        interval=0.1,
    )
    return metrics


def _wait_stored(gateway: GatewayProcess, db: Path, readings: int, timeout_s: float) -> float:
    """Wait until the SQLite sink holds `readings` readings and the journal is drained; returns the time taken."""
    began = time.monotonic()
    rows = 0

    def stored() -> bool:
        nonlocal rows
        if _pending_in_journal(gateway.metrics()):
            return False
        rows = sqlite_rows(db)
        return rows >= readings * FIELDS

    wait_until(
        stored,
        timeout_s,
        f"{readings} readings in the SQLite sink and the journal drained",
        lambda: f"SQLite sink holds {rows / FIELDS:.0f} of {readings} readings\n{gateway.log_tail()}",
        interval=0.5,
    )
    _wait_idle(gateway, timeout_s=max(5.0, began + timeout_s - time.monotonic()), quiet_s=0.5)
    return time.monotonic() - began


def _stop_cleanly(gateway: GatewayProcess, timeout_s: float = 40) -> float:
    """Seconds SIGTERM took to exit 0; fails (TimeoutExpired) when the process is still there after `timeout_s`."""
    began = time.monotonic()
    code = gateway.stop(timeout_s=timeout_s)
    took = time.monotonic() - began
    assert code == 0, gateway.log_tail()
    return took


def _compare_telemetry(manifest: Manifest, vm: VictoriaMetrics) -> tuple[Comparison, int]:
    """What VictoriaMetrics holds against the manifest, and its count of telemetry samples (after a flush)."""
    vm.force_flush()
    return compare(manifest, vm), vm.count_samples(TELEMETRY)
