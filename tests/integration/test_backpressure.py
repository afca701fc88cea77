"""Back-pressure with real Mosquitto, VictoriaMetrics and gateway processes: a full journal or a removed sink
stops nothing for good, memory stays bounded while the store is down, and /readyz says what is going on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.gateway_proc import GatewayProcess, publish, sqlite_gateway, sqlite_rows
from tests.support.messages import native_messages
from tests.support.servers import Mosquitto, VictoriaMetrics
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration

ONE_MIB = 1 << 20


def _readings(count: int, start: int = 0) -> list[tuple[str, bytes]]:
    """Distinct readings over 10 devices with ids and device timestamps (ms): each one sample and one row, once."""
    return native_messages("dev", count, start, devices=10, ts_ms=int(time.time() * 1000) - 600_000)


def _in_memory(gateway: GatewayProcess) -> float:
    """Messages the gateway has read and not acknowledged: what it holds in memory."""
    metrics = gateway.metrics()
    return metrics["gateway_messages_received"] - metrics["gateway_messages_acknowledged"]


def test_memory_stays_bounded_while_the_store_is_down_and_nothing_is_lost(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """With the store down and the journal full, the gateway used to read on (46,000 messages, RSS 64 -> 137
    MB): Mosquitto does not hold to receive_maximum. It stops reading at mqtt.max_messages_in_memory."""
    vm = VictoriaMetrics(tmp_path / "vm")  # its port is chosen now; the server starts later
    limit = 2000
    gateway = sqlite_gateway(
        tmp_path / "gw",
        mosquitto.url,
        "gw-memory-bound",
        sqlite=None,
        influx={"url": vm.url, "token": "t", "flush_interval_ms": 20},
        journal={"max_bytes": ONE_MIB, "max_backpressure_s": 1},
        mqtt={"max_messages_in_memory": limit},
    )
    total = 30_000
    with gateway:
        publish(mosquitto.url, _readings(total))
        assert gateway.wait_for("gateway_backpressure", 1, 30) == 1, gateway.log_tail()
        gateway.wait_for_log("stopped reading from the broker", 15)
        wait_until(lambda: "journal full (journal.max_bytes)" in gateway.readyz()[1], 10, "/readyz", gateway.log_tail)
        assert gateway.readyz()[0] == 503
        # Bounded, however long the outage: the scenario is sampling for two seconds while nothing can be
        # committed (there is no event to wait for: the bound must hold all along).
        held: list[float] = []
        for _ in range(20):
            time.sleep(0.1)
            held.append(_in_memory(gateway))
        assert max(held) <= limit + 64, held  # the bound, plus the one message a read can overshoot by
        assert gateway.metrics()["gateway_messages_received"] < total
        with vm:
            assert vm.wait_for_samples(total, timeout=120, settle=10) == total
            wait_until(lambda: gateway.readyz() == (200, "ready"), 15, "/readyz ready again", gateway.log_tail)
        assert "reading from the broker again" in gateway.log_text()
        assert "journal below journal.max_bytes again" in gateway.log_text()


def test_a_sink_removed_from_the_config_does_not_wedge_the_journal(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The removed sink's cursor stayed in the journal, the outbox was never trimmed, and once it reached
    journal.max_bytes acknowledgements stopped for good while /readyz said ready."""
    workdir = tmp_path / "gw"
    with VictoriaMetrics(tmp_path / "vm") as vm:
        both = sqlite_gateway(workdir, mosquitto.url, "gw-removed-sink", influx={"url": vm.url, "token": "t"})
        with both:
            publish(mosquitto.url, _readings(100))
            wait_until(lambda: sqlite_rows(workdir / "gateway.db") == 100, 20, "100 rows", both.log_tail)
            assert vm.wait_for_samples(100, timeout=20) == 100
    # VictoriaMetrics is gone and so is its section; the journal still knows the sink `influx`.
    sqlite_only = sqlite_gateway(workdir, mosquitto.url, "gw-removed-sink", journal={"max_bytes": ONE_MIB})
    total = 100 + 20_000
    with sqlite_only:
        log = sqlite_only.wait_for_log("sink 'influx' is no longer configured: dropped its journal cursor", 10)
        assert "it will never get the 0 readings" in log
        publish(mosquitto.url, _readings(20_000, start=100))
        wait_until(
            lambda: sqlite_rows(workdir / "gateway.db") == total, 60, "every reading stored", sqlite_only.log_tail
        )
        # Stored is not yet acknowledged: past journal.max_bytes, acknowledgements wait until the sink's cursor
        # move has trimmed the outbox, which the journal thread records after the rows are in.
        wait_until(
            lambda: sqlite_only.metrics()["gateway_messages_acknowledged"] == 20_000,
            15,
            "every message acknowledged",
            lambda: f"{sqlite_only.metrics()}\n{sqlite_only.log_tail()}",
        )
        assert sqlite_only.metrics()["gateway_journal_bytes"] < ONE_MIB
        assert sqlite_only.readyz() == (200, "ready")
