"""The supervised runtime, with real Mosquitto and gateway processes: a thread that dies is never a silent stall.

The fault is injected into the gateway's own process (GatewayProcess.preamble patches one method before the
command line runs): an error out of a journal operation kills the journal thread, an error out of the message
path kills the network thread. Either way /readyz says so at once, the log names the thread and the error, the
process exits non-zero, and a restart stores every reading: nothing acknowledged is lost on that path.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gateway.pipeline import FAILURE_SHUTDOWN_S
from tests.support.gateway_proc import GatewayProcess, publish, sqlite_gateway, sqlite_rows
from tests.support.messages import native_messages
from tests.support.servers import Mosquitto
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration

JOURNAL_FAULT = """
import sqlite3
import gateway.journal.store

def _stored(self, sink, upto):
    raise sqlite3.OperationalError("disk I/O error (injected)")

gateway.journal.store.Journal.stored = _stored
"""

MESSAGE_PATH_FAULT = """
import gateway.ingest.stage

_on_message = gateway.ingest.stage.IngestStage.on_message

def _failing(self, raw):
    if raw.topic == "devices/boom/telemetry":
        raise RuntimeError("a bug in the message path (injected)")
    _on_message(self, raw)

gateway.ingest.stage.IngestStage.on_message = _failing
"""


class ReadinessWatch(threading.Thread):
    """Polls /readyz until the process is gone and keeps the first 503 answer: a process that shuts down
    fast after a thread died is not ready for only a moment."""

    def __init__(self, gateway: GatewayProcess) -> None:
        super().__init__(name="readyz-watch", daemon=True)
        self._gateway = gateway
        self.unready: str | None = None

    def run(self) -> None:
        assert self._gateway.proc is not None
        while self.unready is None and self._gateway.proc.poll() is None:
            try:
                status, why = self._gateway.readyz()
            except OSError:
                continue
            if status == 503 and "died" in why:
                self.unready = why


def _assert_died_and_exited(gateway: GatewayProcess, watch: ReadinessWatch, thread: str, error: str) -> None:
    gateway.wait_for_log(f"thread {thread} died: {error}", 15)
    assert gateway.proc is not None
    assert gateway.proc.wait(FAILURE_SHUTDOWN_S + 15) == 1, gateway.log_tail()
    watch.join(5)
    assert watch.unready is not None and f"thread {thread} died: {error}" in watch.unready, watch.unready
    assert "Traceback" in gateway.log_text()  # the log carries where it died, for the bug report


@pytest.mark.parametrize(
    ("thread", "fault", "error"),
    [
        ("journal", JOURNAL_FAULT, "OperationalError: disk I/O error (injected)"),
        ("mqtt", MESSAGE_PATH_FAULT, "RuntimeError: a bug in the message path (injected)"),
    ],
)
def test_a_thread_that_dies_makes_the_gateway_unready_and_exit_and_a_restart_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, thread: str, fault: str, error: str
) -> None:
    workdir = tmp_path / "gw"
    db = workdir / "gateway.db"
    messages = [
        *native_messages("sensor-1", 100),
        *native_messages("boom", 1),
        *native_messages("sensor-1", 100, start=100),
    ]
    gateway = sqlite_gateway(workdir, mosquitto.url, f"gw-supervised-{thread}")
    gateway.preamble = fault
    with gateway:
        watch = ReadinessWatch(gateway)
        watch.start()
        publish(mosquitto.url, messages)
        _assert_died_and_exited(gateway, watch, thread, error)
    gateway.preamble = None
    with gateway:
        wait_until(lambda: sqlite_rows(db) == len(messages), 30, "every reading stored", gateway.log_tail)
    assert sqlite_rows(db) == len(messages)
