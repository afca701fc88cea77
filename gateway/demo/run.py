"""`gateway demo` from start to summary: broker, gateway and fleet started in order, watched, stopped in reverse."""

from __future__ import annotations

import logging
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from gateway.alerts import load_rules
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
from gateway.demo.brokers.base import LOCALHOST, BrokerKind, DemoBroker, free_port
from gateway.demo.brokers.open_broker import open_broker
from gateway.demo.dashboard import Dashboard, Out, PlainStatus, Sampler, Snapshot, n, rejections_text
from gateway.demo.fleet import CHUNK_S, DEMO_SCRIPT, DUP_RATE, MALFORMED_RATE, FleetFeed, FleetPublisher
from gateway.errors import EXIT_FAILED, DemoError
from gateway.pipeline import Pipeline
from gateway.sinks.sqlite import SqliteSink
from gateway.sinks.sqlite import connect as sqlite_connect
from gateway.tools.query import format_number, open_readonly

log = logging.getLogger(__name__)

DEFAULT_DB = Path("data/demo.db")
DEFAULT_DEVICES = 50
DEFAULT_RATE = 5.0  # messages per second per device
RULES_FILE = Path(__file__).with_name("rules.yaml")
CLIENT_ID = "gateway-demo"
STATUS_EVERY_S = 2.0  # plain output: a status line this often
REFRESH_EVERY_S = 0.5  # dashboard
EXIT_INTERRUPTED = 130


# -- the gateway --------------------------------------------------------------------------------------------


class DemoConfig(GatewayConfig):
    """The gateway's configuration from these arguments only: GATEWAY_* variables cannot redirect the demo."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


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


# -- the demo -----------------------------------------------------------------------------------------------


@dataclass
class DemoOptions:
    db: Path = DEFAULT_DB
    duration_s: float | None = None
    devices: int = DEFAULT_DEVICES
    rate_per_device: float = DEFAULT_RATE
    seed: int = 1
    log_level: str = "WARNING"
    broker: BrokerKind = "amqtt"
    dashboard: bool | None = None  # None: a live dashboard when the output is a terminal
    stream: TextIO | None = field(default=None, repr=False)


class _Interrupts:
    """First SIGINT/SIGTERM: stop cleanly. Second: give up at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        self.requested.set()


def _configure_logging(level: str, dashboard: bool) -> None:
    # On the dashboard, log lines go through rich (to stderr, which the live display prints above itself).
    handler: logging.Handler = (
        RichHandler(console=Console(stderr=True), show_path=False) if dashboard else logging.StreamHandler(sys.stderr)
    )
    if not dashboard:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # The demo shows every alert transition itself; the gateway's warning line for each would only repeat it.
    logging.getLogger("gateway.alerts.stage").setLevel(max(logging.ERROR, logging.getLevelName(level)))


def run_demo(options: DemoOptions) -> int:
    """Run the demo; return the process exit code. Raises DemoError for set-up failures."""
    out = Out(options.stream)
    dashboard = out.rich if options.dashboard is None else options.dashboard and out.rich
    _configure_logging(options.log_level, dashboard)
    interrupts = _Interrupts()
    interrupts.install()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    try:
        broker = open_broker(options.broker, workdir)
        try:
            return _run(options, out, dashboard, broker, interrupts)
        finally:
            broker.stop()
    except KeyboardInterrupt:
        logging.disable(logging.CRITICAL)  # the gateway would complain about the broker going away
        out.line("[red]interrupted again: stopping at once[/]")
        return EXIT_INTERRUPTED
    finally:
        interrupts.restore()
        shutil.rmtree(workdir, ignore_errors=True)


def _run(options: DemoOptions, out: Out, dashboard: bool, broker: DemoBroker, interrupts: _Interrupts) -> int:
    broker.start()
    feed = FleetFeed(options.devices, options.rate_per_device, seed=options.seed, script=DEMO_SCRIPT)
    fresh_store(options.db)
    pipeline, gateway = start_pipeline(broker, options.db, options.log_level)
    publisher_stop = threading.Event()
    try:
        return _supervise(options, out, dashboard, broker, interrupts, feed, pipeline, gateway, publisher_stop)
    except BaseException:
        # A set-up failure or a second Ctrl-C: no orderly shutdown, but no thread keeps working either.
        publisher_stop.set()
        gateway.stop.set()
        raise


def _header(options: DemoOptions, feed: FleetFeed, broker: DemoBroker, pipeline: Pipeline) -> tuple[str, list[str]]:
    duration = f"for {options.duration_s:g} s" if options.duration_s is not None else "until Ctrl-C"
    title = (
        f"gateway demo: {options.devices} simulated devices, ~{feed.rate:g} msg/s "
        f"({DUP_RATE:.0%} duplicates, {MALFORMED_RATE:.0%} malformed), {duration}"
    )
    rules = load_rules(RULES_FILE).rules
    lines = [
        f"  broker   {escape(broker.describe())}",
        f"  store    SQLite {escape(str(options.db))}",
        f"  alerts   {', '.join(rule.name for rule in rules)} ({escape(str(_shown(RULES_FILE)))})",
    ]
    if feed.script is not None:
        lines += [f"  script   {line}" for line in feed.script.lines(feed.devices)]
    lines.append(f"  metrics  {metrics_url(pipeline)}")
    lines.append("  Ctrl-C stops." if options.duration_s is None else "  Ctrl-C stops early.")
    return title, lines


def _shown(path: Path) -> Path:
    """`path` relative to the working directory when it lies below it (as in a clone), else as it is."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _supervise(
    options: DemoOptions,
    out: Out,
    dashboard: bool,
    broker: DemoBroker,
    interrupts: _Interrupts,
    feed: FleetFeed,
    pipeline: Pipeline,
    gateway: GatewayThread,
    publisher_stop: threading.Event,
) -> int:
    wait_until_subscribed(pipeline, broker, pipeline.ingestor.topic_filters, timeout_s=10.0)
    conn = open_readonly(options.db)
    sampler = Sampler(pipeline.stats, conn, pipeline.config.mappings[0].measurement)
    title, header = _header(options, feed, broker, pipeline)

    started = time.monotonic()
    deadline = started + options.duration_s if options.duration_s is not None else None
    publisher = FleetPublisher(
        feed,
        broker.url,
        publisher_stop,
        deadline,
        protocol=broker.protocol,
        username=DEMO_USERNAME if broker.name == "amqtt" else None,
    )
    publisher.start()

    view: Dashboard | PlainStatus
    if dashboard:
        view = Dashboard(out, title, header, options.duration_s)
        view.__enter__()
        every_s = REFRESH_EVERY_S
    else:
        out.line(f"[bold]{escape(title)}[/]")
        for line in header:
            out.line(line)
        view = PlainStatus(out)
        every_s = STATUS_EVERY_S
    try:
        reason = _watch(options, interrupts, publisher, gateway, sampler, view, started, deadline, every_s)
    finally:
        if isinstance(view, Dashboard):
            view.__exit__()

    out.line(f"stopping ({escape(reason)}) ...")
    # Order: the fleet finishes its current chunk; the gateway takes what the broker holds, stores it and
    # acknowledges it; only then does the broker go.
    publisher_stop.set()
    if not publisher.join(CHUNK_S + 15):
        log.warning("the simulated fleet did not stop in time")
    settle_deadline = time.monotonic() + 5.0
    while pipeline.stats.messages_received < publisher.sent and gateway.alive and time.monotonic() < settle_deadline:
        time.sleep(0.05)
    gateway.stop.set()
    stopped = gateway.join(40)
    elapsed = time.monotonic() - started
    broker.stop()

    final = sampler.take(elapsed)
    conn.close()
    _print_summary(out, options, pipeline, publisher, feed, final)
    if not stopped:
        out.line("[red]the gateway did not stop within 40 s[/]")
    failed = publisher.failure is not None or gateway.error is not None or not stopped
    return EXIT_FAILED if failed else 0


def _watch(
    options: DemoOptions,
    interrupts: _Interrupts,
    publisher: FleetPublisher,
    gateway: GatewayThread,
    sampler: Sampler,
    view: Dashboard | PlainStatus,
    started: float,
    deadline: float | None,
    every_s: float,
) -> str:
    """Show a Snapshot every `every_s` until the time is up or something stops the demo; returns why."""
    next_show = started + (every_s if isinstance(view, PlainStatus) else 0.0)
    while True:
        now = time.monotonic()
        wake = next_show if deadline is None else min(next_show, deadline)
        if interrupts.requested.wait(max(0.0, min(wake - now, 0.25))):
            return f"{interrupts.signal_name} received; again to quit at once"
        now = time.monotonic()
        if publisher.failure is not None:
            return f"the simulated fleet failed: {publisher.failure}"
        if not gateway.alive:
            return f"the gateway pipeline stopped: {gateway.error!r}"
        if deadline is not None and now >= deadline:
            return f"{options.duration_s:g} s elapsed"
        if now >= next_show:
            view.show(sampler.take(now - started))
            next_show += every_s


def _print_summary(
    out: Out,
    options: DemoOptions,
    pipeline: Pipeline,
    publisher: FleetPublisher,
    feed: FleetFeed,
    final: Snapshot,
) -> None:
    stats = pipeline.stats
    kinds = publisher.kinds
    malformed = sum(k for kind, k in kinds.items() if kind.startswith("malformed:"))
    unstored = stats.readings_accepted - final.stored  # accepted but still queued when the gateway had to stop
    out.line()
    out.line(f"[bold]summary[/] after {final.elapsed_s:.1f} s")
    out.line(
        f"  published    {n(publisher.sent)} messages by {options.devices} simulated devices "
        f"({n(kinds['valid'])} new, {n(kinds['duplicate'])} resent, {n(malformed)} malformed; "
        f"{n(feed.held_back)} held back by silent devices)"
        + (f", [red]{n(publisher.errors)} failed[/]" if publisher.errors else "")
    )
    out.line(f"  received     {n(final.received)} messages")
    out.line(f"  stored       [green]{n(final.stored)}[/] readings from {final.devices} devices in {options.db}")
    out.line(f"  duplicates   [yellow]{n(final.duplicates)}[/] (dropped)")
    out.line(f"  rejected     [red]{escape(rejections_text(final.rejected))}[/]")
    fired = sum(1 for row in final.alerts if row.transition == "firing")
    resolved = sum(1 for row in final.alerts if row.transition == "resolved")
    out.line(f"  alerts       {fired} fired, {resolved} resolved, {len(final.firing)} still firing")
    for row in final.firing:
        out.line(
            f"               [red]{escape(row.rule)}[/] on {escape(row.device)} ({row.severity}), "
            f"value {format_number(row.value)}"
        )
    if unstored > 0:
        out.line(f"  [red]not stored   {n(unstored)} accepted readings (still queued at shutdown)[/]")
    if publisher.failure:
        out.line(f"  [red]fleet failed: {escape(publisher.failure)}[/]")
    out.line()
    out.line("Look at the data:")
    out.line(f"  gateway query --db {escape(str(options.db))}")
    out.line(f"  gateway query --db {escape(str(options.db))} --device dev-00007 --limit 10")
