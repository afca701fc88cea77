"""The gateway the demo runs in process: its configuration (arguments only), a Pipeline in a thread, a fresh
SQLite store, and the wait until it is subscribed."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from gateway.config.schema import (
    AlertsConfig,
    GatewayConfig,
    HttpConfig,
    JournalConfig,
    LogConfig,
    MqttConfig,
    SqliteConfig,
)
from gateway.demo.brokers.amqtt_broker import DEMO_USERNAME
from gateway.demo.brokers.base import LOCALHOST, DemoBroker, free_port
from gateway.errors import DemoError
from gateway.pipeline import Pipeline
from gateway.sinks.sqlite import SqliteSink
from gateway.sinks.sqlite import connect as sqlite_connect

log = logging.getLogger(__name__)

RULES_FILE = Path(__file__).with_name("rules.yaml")
CLIENT_ID = "gateway-demo"


class DemoConfig(GatewayConfig):
    """The gateway's configuration from these arguments only: GATEWAY_* variables cannot redirect the demo."""

    reads_environment = False


def demo_config(broker: DemoBroker, db: Path, http_port: int, log_level: str = "WARNING") -> GatewayConfig:
    return DemoConfig(
        mqtt=MqttConfig(
            url=broker.url,
            client_id=CLIENT_ID,
            protocol=broker.protocol,
            # amqtt keeps the session (and QoS 1 messages queued in it) of named clients only.
            username=DEMO_USERNAME if broker.name == "amqtt" else None,
        ),
        sqlite=SqliteConfig(path=db),
        journal=JournalConfig(path=journal_path(db)),
        http=HttpConfig(host=LOCALHOST, port=http_port),
        alerts=AlertsConfig(rules_file=RULES_FILE),
        log=LogConfig(level=log_level),
    )


def journal_path(db: Path) -> Path:
    return db.with_name(f"{db.stem}.journal.db")


class GatewayThread:
    """Pipeline.run in a thread, with its own stop Event and any exception it died of."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            if self.pipeline.run(self.stop):
                self.error = RuntimeError(self.pipeline.runtime.failure)
        except BaseException as exc:
            log.exception("the gateway pipeline failed")
            self.error = exc


def fresh_store(db: Path) -> None:
    """Remove the previous demo's SQLite file and journal: its dedup window would drop this run's message ids
    (they start from 1 again) as duplicates, and its alert state would carry over. A file that is not a
    gateway SQLite store is never removed: --db pointing at the wrong file ends the demo instead."""
    if db.exists() and not _is_gateway_store(db):
        raise DemoError(f"--db {db} exists and is not a gateway SQLite store; choose another path")
    for base in (db, journal_path(db)):
        for path in (base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm")):
            path.unlink(missing_ok=True)


def _is_gateway_store(db: Path) -> bool:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False
    return tables <= {"readings"}


def start_pipeline(broker: DemoBroker, db: Path, log_level: str) -> tuple[Pipeline, GatewayThread]:
    last: OSError | None = None
    for _attempt in range(5):  # the metrics port could be taken between free_port() and the bind
        config = demo_config(broker, db, free_port(), log_level)
        assert config.sqlite is not None
        try:
            # The sink would keep retrying a file it cannot open; the demo had better say so at once.
            db.parent.mkdir(parents=True, exist_ok=True)
            sqlite_connect(db).close()
            sink = SqliteSink(config.sqlite)
        except (OSError, sqlite3.Error) as exc:
            raise DemoError(f"cannot open the SQLite file {db}: {exc}") from None
        try:
            pipeline = Pipeline(config, [sink])
        except OSError as exc:
            sink.close()
            last = exc
            continue
        runner = GatewayThread(pipeline)
        runner.start()
        return pipeline, runner
    raise DemoError(f"could not start the gateway's metrics endpoint: {last}")


def metrics_url(pipeline: Pipeline) -> str:
    port = pipeline.http.port if pipeline.http is not None else pipeline.config.http.port
    return f"http://{pipeline.config.http.host}:{port}/metrics"


def wait_until_subscribed(pipeline: Pipeline, broker: DemoBroker, topic_filters: list[str], timeout_s: float) -> None:
    """Until the gateway is connected and subscribed: messages published earlier would be lost."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pipeline.readiness()[0] and all(broker.subscribed(CLIENT_ID, f) for f in topic_filters):
            return
        time.sleep(0.02)
    if not pipeline.readiness()[0]:
        raise DemoError(f"the gateway did not connect to {broker.url} within {timeout_s:g} s\n{broker.log_tail()}")
    log.warning("the broker does not show the gateway's subscription; publishing anyway")
