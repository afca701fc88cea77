"""The whole Pipeline in the test's process, fed by a source in memory (tests/support/memory_source.py): its journal
and SQLite sink are real, its threads are the ones `gateway run` starts. What the integration tests show against a
real broker, shown here in a fraction of a second: acknowledged only once committed, duplicates acknowledged and
stored once, dead letters published and confirmed (or kept when they cannot be), memory bounded while the journal
cannot commit, a thread that dies ends the run with exit status 1, and shutdown commits what was read."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.config.schema import GatewayConfig
from gateway.errors import EXIT_FAILED
from gateway.journal.store import Journal, JournalError
from gateway.pipeline import Pipeline
from gateway.reasons import Reason
from gateway.sinks.sqlite import SqliteSink
from tests.support.gateway_proc import sqlite_rows
from tests.support.memory_source import MemorySource
from tests.support.waits import wait_until

RULES = """
rules:
  - name: too_hot
    kind: threshold
    metric: t
    op: ">"
    value: 30
"""


def _config(tmp_path: Path, **sections: Any) -> GatewayConfig:
    base: dict[str, Any] = {
        "sqlite": {"path": tmp_path / "gateway.db", "batch_size": 50, "flush_interval_ms": 50},
        "journal": {"path": tmp_path / "journal.db"},
        "http": {"port": 0},
        "self_metrics": {"interval_s": 0},
    }
    return GatewayConfig(**(base | sections))


def _payload(device: str, n: int, t: float | None = None) -> bytes:
    return orjson.dumps({"id": f"{device}-{n}", "metrics": {"t": n if t is None else t}})


class Running:
    """A pipeline running on its own thread; `stop()` ends it the way SIGTERM does and keeps the exit status."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.source = pipeline.source
        self.exit_status: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline-under-test", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.exit_status = self.pipeline.run(self._stop, shutdown_timeout_s=5)

    def stop(self) -> int | None:
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive(), "the pipeline did not stop"
        return self.exit_status

    def wait_for_exit(self, timeout_s: float) -> int | None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the pipeline did not end by itself"
        return self.exit_status


@contextlib.contextmanager
def running(config: GatewayConfig, source: MemorySource | None = None) -> Iterator[Running]:
    source = source or MemorySource()
    pipeline = Pipeline(config, [SqliteSink(config.sqlite)] if config.sqlite else [], source)
    run = Running(pipeline)
    try:
        yield run
    finally:
        run.stop()


def _rejected_reasons(journal_path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(journal_path)) as conn:
        return [row[0] for row in conn.execute("SELECT reason FROM rejected ORDER BY rowid")]


def test_readings_are_stored_and_each_message_acknowledged_once(tmp_path: Path) -> None:
    config = _config(tmp_path)
    source = MemorySource()
    tokens = [source.deliver(f"devices/dev-{n % 5}/telemetry", _payload(f"dev-{n % 5}", n)) for n in range(50)]
    with running(config, source) as run:
        wait_until(lambda: sqlite_rows(tmp_path / "gateway.db") == 50, 10, "50 readings stored")
        wait_until(lambda: len(source.released) == 50, 10, "50 acknowledgements")
        stats = run.pipeline.stats
        assert (stats.messages_received, stats.messages_accepted, stats.readings_duplicate) == (50, 50, 0)
    assert sorted(source.released) == sorted(tokens)  # each exactly once


def test_nothing_is_acknowledged_before_the_journal_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal that cannot commit (disk full) holds every acknowledgement back and says so on /readyz; once it
    commits again, every message is acknowledged and stored."""
    commit = Journal.commit
    failing = threading.Event()
    failing.set()

    def flaky_commit(self: Journal, *args: Any, **kwargs: Any) -> Any:
        if failing.is_set():
            raise JournalError("journal commit failed: database or disk is full (injected)")
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(Journal, "commit", flaky_commit)
    source = MemorySource()
    for n in range(20):
        source.deliver("devices/dev-1/telemetry", _payload("dev-1", n))
    with running(_config(tmp_path), source) as run:
        wait_until(lambda: len(source.delivered) == 20, 10, "all 20 messages read")
        wait_until(lambda: "journal not writable" in run.pipeline.readiness()[1], 10, "/readyz naming the journal")
        assert source.released == []
        failing.clear()
        wait_until(lambda: len(source.released) == 20, 10, "20 acknowledgements once the journal commits")
        wait_until(lambda: sqlite_rows(tmp_path / "gateway.db") == 20, 10, "20 readings stored")
        assert run.pipeline.readiness() == (True, "ready")


def test_a_duplicate_is_acknowledged_and_stored_once(tmp_path: Path) -> None:
    source = MemorySource()
    first = source.deliver("devices/dev-1/telemetry", _payload("dev-1", 1))
    again = source.deliver("devices/dev-1/telemetry", _payload("dev-1", 1))  # the device sent it twice
    marker = source.deliver("devices/dev-1/telemetry", _payload("dev-1", 2))
    with running(_config(tmp_path), source) as run:
        wait_until(lambda: marker in source.released, 10, "the marker acknowledged")
        wait_until(lambda: sqlite_rows(tmp_path / "gateway.db") == 2, 10, "2 readings stored")
        assert run.pipeline.stats.readings_duplicate == 1
    assert {first, again} <= set(source.released)
    assert sqlite_rows(tmp_path / "gateway.db") == 2


def test_a_rejected_message_is_dead_lettered_and_leaves_the_journal_once_confirmed(tmp_path: Path) -> None:
    source = MemorySource()
    bad = source.deliver("devices/dev-1/telemetry", b"{not json")
    with running(_config(tmp_path), source) as run:
        wait_until(lambda: source.published, 10, "the dead-letter record published")
        wait_until(lambda: bad in source.released, 10, "the bad message acknowledged")
        wait_until(lambda: not run.pipeline.journal.pending_outgoing(), 10, "the confirmed record out of the journal")
    (record,) = source.published
    assert record.topic.startswith("gateway/deadletter/")
    assert orjson.loads(record.payload)["reason"] == Reason.MALFORMED_JSON
    assert _rejected_reasons(tmp_path / "journal.db") == [Reason.MALFORMED_JSON]  # kept for replay


def test_a_message_that_cannot_be_published_is_kept_as_rejected(tmp_path: Path) -> None:
    source = MemorySource(refuse=lambda m: "payload too large for the broker (injected)")
    source.deliver("devices/dev-1/telemetry", b"{not json")
    with running(_config(tmp_path), source) as run:
        wait_until(lambda: run.pipeline.stats.publish_failed == 1, 10, "the publish counted as failed")
        wait_until(
            lambda: Reason.PUBLISH_FAILED in _rejected_reasons(tmp_path / "journal.db"),
            10,
            "the record moved to the rejected table",
        )
        assert run.pipeline.journal.pending_outgoing() == []
    assert source.published == []


def test_reading_stops_while_the_journal_holds_max_messages_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = Journal.commit
    release = threading.Event()

    def stalled_commit(self: Journal, *args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(Journal, "commit", stalled_commit)
    source = MemorySource()
    for n in range(250):
        source.deliver(f"devices/dev-{n % 10}/telemetry", _payload(f"dev-{n % 10}", n))
    with running(_config(tmp_path, mqtt={"max_messages_in_memory": 100}), source):
        # The source asks can_read() before each message: it stays at the bound until the journal commits.
        wait_until(lambda: source.reads_refused > 0, 10, "reading paused with messages waiting")
        assert len(source.delivered) == 100
        release.set()
        wait_until(lambda: len(source.released) == 250, 20, "all 250 acknowledged once the journal commits")
        wait_until(lambda: sqlite_rows(tmp_path / "gateway.db") == 250, 20, "all 250 stored")


def test_a_thread_that_dies_ends_the_run_with_exit_status_1(tmp_path: Path) -> None:
    source = MemorySource()
    for n in range(10):
        source.deliver("devices/dev-1/telemetry", _payload("dev-1", n))
    config = _config(tmp_path)
    pipeline = Pipeline(config, [SqliteSink(config.sqlite)] if config.sqlite else [], source)
    process = pipeline.ingestor.process

    def process_or_fail(raw: Any) -> Any:
        if raw.topic == "devices/boom/telemetry":
            raise RuntimeError("a bug in the message path (injected)")
        return process(raw)

    pipeline.ingestor.process = process_or_fail  # type: ignore[method-assign]
    run = Running(pipeline)
    try:
        wait_until(lambda: len(source.released) == 10, 10, "the first 10 acknowledged")
        source.deliver("devices/boom/telemetry", _payload("boom", 1))
        wait_until(lambda: not pipeline.readiness()[0], 10, "not ready")
        assert "thread memory died: RuntimeError: a bug in the message path (injected)" in pipeline.readiness()[1]
        assert run.wait_for_exit(15) == EXIT_FAILED
    finally:
        run.stop()
    assert sqlite_rows(tmp_path / "gateway.db") == 10  # everything acknowledged was stored


def test_shutdown_commits_and_acknowledges_every_message_read(tmp_path: Path) -> None:
    source = MemorySource()
    for n in range(500):
        source.deliver(f"devices/dev-{n % 7}/telemetry", _payload(f"dev-{n % 7}", n))
    with running(_config(tmp_path), source) as run:
        wait_until(lambda: source.delivered, 10, "the first messages read")
        assert run.stop() == 0
    read = [m.ack_token for m in source.delivered]
    assert sorted(source.released) == sorted(read)  # all read were committed and acknowledged, none twice
    stored = sqlite_rows(tmp_path / "gateway.db")
    left = Journal(tmp_path / "journal.db", ["sqlite"])
    try:
        unstored = sum(len(c.readings) for c in left.reader().chunks_after(left.cursor("sqlite"), 10_000))
    finally:
        left.close()
    assert stored + unstored == len(read)  # stored, or in the journal for the next run


def test_an_alert_is_published_retained_from_the_journal(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    source = MemorySource()
    source.deliver("devices/boiler-1/telemetry", _payload("boiler-1", 1, t=35.0))
    with running(_config(tmp_path, alerts={"rules_file": rules}), source) as run:
        wait_until(lambda: source.published, 10, "the notification published")
        assert run.pipeline.stats.alert_notifications["firing"] == 1
    (notification,) = source.published
    assert (notification.topic, notification.retain) == ("alerts/boiler-1/too_hot", True)
    assert orjson.loads(notification.payload)["transition"] == "firing"


class SlowSqliteSink(SqliteSink):
    """A store whose writes take `write_s`; records when each write began."""

    write_s = 0.6

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.started: list[float] = []

    def write(self, readings: Any) -> None:
        self.started.append(time.monotonic())
        time.sleep(self.write_s)  # the scenario: a write that takes longer than a linger
        super().write(readings)


def test_a_partial_batch_waits_its_linger_from_its_commit_not_from_the_previous_write(tmp_path: Path) -> None:
    """flush_interval_ms (the linger) counts from when the waiting readings were committed. Timed from when the
    worker came back from a write, every write after a slow one waited a whole linger more, and under load the
    sink fell behind the source."""
    linger_s = 0.5
    config = _config(tmp_path, sqlite={"path": tmp_path / "gateway.db", "flush_interval_ms": int(linger_s * 1000)})
    assert config.sqlite is not None
    sink = SlowSqliteSink(config.sqlite)
    source = MemorySource()
    run = Running(Pipeline(config, [sink], source))
    try:
        source.deliver("devices/dev-1/telemetry", _payload("dev-1", 0))
        wait_until(lambda: len(sink.started) == 1, 10, "the first write begun")
        source.deliver("devices/dev-1/telemetry", _payload("dev-1", 1))  # committed while the first write runs
        wait_until(lambda: len(source.released) == 2, 10, "the second message committed")
        committed = time.monotonic()
        wait_until(lambda: len(sink.started) == 2, 10, "the second write begun")
        # It began one linger after its commit, or as soon as the first write ended if that was later; the old
        # timing began it a whole linger after the first write ended.
        first_ended = sink.started[0] + SlowSqliteSink.write_s
        assert sink.started[1] <= max(committed + linger_s, first_ended) + 0.25
        assert sink.started[1] < first_ended + linger_s - 0.1
        wait_until(lambda: sqlite_rows(tmp_path / "gateway.db") == 2, 10, "both readings stored")
    finally:
        run.stop()
