"""`gateway demo` from start to summary: broker, gateway and fleet started in order, watched, stopped in reverse."""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from gateway.demo.brokers.amqtt_broker import DEMO_USERNAME
from gateway.demo.brokers.base import DemoBroker
from gateway.demo.brokers.open_broker import open_broker
from gateway.demo.dashboard import Dashboard, Out, PlainStatus, Sampler
from gateway.demo.embedded_gateway import GatewayThread, fresh_store, start_pipeline, wait_until_subscribed
from gateway.demo.fleet import CHUNK_S, DEMO_SCRIPT, FleetFeed, FleetPublisher
from gateway.demo.options import DemoOptions
from gateway.demo.summary import print_summary, title_and_header
from gateway.errors import EXIT_FAILED
from gateway.pipeline import Pipeline
from gateway.tools.query import open_readonly

log = logging.getLogger(__name__)

STATUS_EVERY_S = 2.0  # plain output: a status line this often
REFRESH_EVERY_S = 0.5  # dashboard
EXIT_INTERRUPTED = 130


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
    title, header = title_and_header(options, feed, broker, pipeline)

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
    print_summary(out, options, pipeline, publisher, feed, final)
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
