"""`gateway demo`: the whole path on one machine, on embedded defaults, with nothing to configure.

    private Mosquitto (temp dir, free port) <- device_sim fleet (publisher thread, paced)
         |
         v
    Pipeline (in-process) -> SQLite (--db)        status line every 2 s, summary at the end

The fleet is generated a slice at a time (a minute of messages, at most 50,000), so the demo can run for any
time without building a huge message list first, and published in 2 s chunks with `device_sim.publish`, so a
stop takes effect within 2 s. device_sim numbers each slice's messages from seq 1; the slices are renumbered
here so that message ids (the dedup key) and timestamps keep counting across slices. The pipeline runs here
too; the broker is `gateway.embedded_broker`, the SQLite queries `gateway.query`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from gateway.config import GatewayConfig, HttpConfig, JournalConfig, LogConfig, MqttConfig, SqliteConfig
from gateway.embedded_broker import LOCALHOST, MOSQUITTO_FALLBACKS, Broker, find_mosquitto, free_port
from gateway.errors import EXIT_FAILED, EXIT_NO_BROKER, DemoError
from gateway.pipeline import Pipeline
from gateway.query import count_devices, open_readonly
from gateway.sinks.sqlite import SqliteSink
from gateway.sinks.sqlite import connect as sqlite_connect

log = logging.getLogger(__name__)

DEFAULT_DB = Path("data/demo.db")
DEFAULT_DEVICES = 50
DEFAULT_RATE = 5.0  # messages per second per device
DUP_RATE = 0.03
MALFORMED_RATE = 0.02
SLICE_S = 60.0  # the fleet is generated this many seconds at a time (sensor values restart with each slice)
SLICE_MAX_MESSAGES = 50_000  # ... or fewer seconds, for a large fleet
CHUNK_S = 2.0  # and published this many seconds at a time: bounds how long stopping the fleet takes
STATUS_EVERY_S = 2.0
TIMESTAMP_LAG_NS = 1_000_000_000  # device clocks run this far behind: every reading is stamped in the past

EXIT_INTERRUPTED = 130

_NS_PER_MS = 1_000_000


# -- the fleet ----------------------------------------------------------------------------------------------

_ID_AND_SEQ = re.compile(rb'^\{"id":"([^"]+)-(\d{8})","seq":(\d+),')


def renumber(payload: bytes, offset: int) -> bytes:
    """Shift a device_sim message's id and seq by `offset`; payloads that do not start with both are kept.

    Every device_sim body starts `{"id":"<device>-<seq:08d>","seq":<seq>,`; a duplicate is a byte copy of an
    earlier message, so it is renumbered to the same id and stays a duplicate.
    """
    match = _ID_AND_SEQ.match(payload)
    if match is None or int(match[2]) != int(match[3]):
        return payload
    seq = int(match[3]) + offset
    return b'{"id":"%s-%08d","seq":%d,' % (match[1], seq, seq) + payload[match.end() :]


class FleetFeed:
    """An endless device_sim fleet, handed out in slices of `rounds` messages per device.

    Within a slice each device sends exactly `rounds` messages and uses at most `rounds` seqs, so shifting
    slice k's seqs by the rounds of the slices before it keeps every message id unique. Timestamps continue
    from one slice to the next, `interval` apart per device; a slice never starts earlier than its anchor
    (about a second before it is generated), so if publishing falls behind the timeline jumps forward.
    """

    def __init__(
        self,
        devices: int,
        rate_per_device: float,
        *,
        seed: int = 1,
        dup_rate: float = DUP_RATE,
        malformed_rate: float = MALFORMED_RATE,
        slice_s: float = SLICE_S,
        now_ns: int | None = None,
    ) -> None:
        if rate_per_device <= 0:
            raise ValueError(f"rate per device must be positive, got {rate_per_device}")
        self.devices = devices
        self.rate_per_device = rate_per_device
        self.seed = seed
        self.dup_rate = dup_rate
        self.malformed_rate = malformed_rate
        self.interval_ms = max(1, round(1000 / rate_per_device))
        self.rounds_per_slice = max(1, min(round(slice_s * rate_per_device), SLICE_MAX_MESSAGES // devices))
        self.messages_per_chunk = max(1, round(CHUNK_S * self.rate))
        self.slices = 0
        self._seq_offset = 0
        self._next_start_ns = self._anchor(time.time_ns() if now_ns is None else now_ns)

    @property
    def rate(self) -> float:
        """Messages per second over the whole fleet."""
        return self.devices * self.rate_per_device

    def _anchor(self, now_ns: int) -> int:
        """The earliest start for a slice generated at `now_ns`: its first reading (start + interval) is
        stamped TIMESTAMP_LAG_NS before now, and each later one at least that long before it is published."""
        start = now_ns - TIMESTAMP_LAG_NS - self.interval_ms * _NS_PER_MS
        return start // _NS_PER_MS * _NS_PER_MS

    def next_slice(self, rounds: int | None = None, now_ns: int | None = None) -> list[Any]:
        """The next `rounds` (default rounds_per_slice) messages of every device, as device_sim Outgoing."""
        from device_sim.fleet import FleetSpec, generate  # noqa: PLC0415 - only the demo needs the simulator

        rounds = self.rounds_per_slice if rounds is None else rounds
        if rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {rounds}")
        now_ns = time.time_ns() if now_ns is None else now_ns
        start_ns = max(self._next_start_ns, self._anchor(now_ns))
        spec = FleetSpec(
            devices=self.devices,
            messages=self.devices * rounds,
            seed=self.seed + self.slices,
            dup_rate=self.dup_rate,
            malformed_rate=self.malformed_rate,
            start_time_ns=start_ns,
            interval_ms=self.interval_ms,
        )
        fleet = generate(spec)
        offset = self._seq_offset
        self.slices += 1
        self._seq_offset += rounds
        self._next_start_ns = start_ns + rounds * self.interval_ms * _NS_PER_MS
        return [m._replace(payload=renumber(m.payload, offset)) for m in fleet.outgoing]


class FleetPublisher:
    """Publishes FleetFeed slices until stopped, or until `deadline` (monotonic) when one is given."""

    def __init__(self, feed: FleetFeed, url: str, stop: threading.Event, deadline: float | None) -> None:
        self.feed = feed
        self.url = url
        self.stop = stop
        self.deadline = deadline
        self.sent = 0
        self.errors = 0
        self.kinds: Counter[str] = Counter()  # valid / duplicate / malformed:<reason>, of messages handed out
        self.failure: str | None = None
        self._handed_out = 0
        self._started = 0.0
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        self._started = time.monotonic()
        try:
            while not self.stop.is_set():
                rounds = self.feed.rounds_per_slice
                if self.deadline is not None:
                    remaining_s = self.deadline - time.monotonic()
                    rounds = min(rounds, round(remaining_s * self.feed.rate_per_device))
                    if rounds < 1:
                        break
                outgoing = self.feed.next_slice(rounds)
                step = self.feed.messages_per_chunk
                for start in range(0, len(outgoing), step):
                    if self.stop.is_set() or not self._publish(outgoing[start : start + step]):
                        return
        except Exception as exc:
            log.exception("the simulated fleet failed")
            self.failure = f"{type(exc).__name__}: {exc}"

    def _chunk_rate(self, messages: int) -> float:
        """The fleet's rate, or up to 4 times that to catch up with the schedule: generating a slice and
        connecting for each chunk take time, which would otherwise lower the rate over a long run."""
        rate = self.feed.rate
        due_s = self._started + (self._handed_out + messages) / rate - time.monotonic()
        return min(4 * rate, max(rate, messages / due_s)) if due_s > 0 else 4 * rate

    def _publish(self, chunk: list[Any]) -> bool:
        """One `device_sim.publish` call (one connection), paced; False once publishing failed."""
        from device_sim.link import LinkError  # noqa: PLC0415 - only the demo needs the simulator
        from device_sim.publisher import publish  # noqa: PLC0415

        try:
            stats = publish(
                chunk,
                self.url,
                rate=self._chunk_rate(len(chunk)),
                client_id_prefix="gateway-demo-fleet",
                connect_timeout_s=5.0,
                stall_timeout_s=10.0,
            )
        except LinkError as exc:
            self.failure = str(exc)
            return False
        self._handed_out += len(chunk)
        self.sent += stats.sent
        self.errors += stats.errors
        self.kinds.update(m.kind for m in chunk)
        if stats.failure:
            self.failure = stats.failure
            return False
        return True


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


def demo_config(broker_url: str, db: Path, http_port: int, log_level: str = "WARNING") -> GatewayConfig:
    return DemoConfig(
        mqtt=MqttConfig(url=broker_url, client_id="gateway-demo"),
        sqlite=SqliteConfig(path=db),
        journal=JournalConfig(path=db.with_name(f"{db.stem}.journal.db")),
        http=HttpConfig(host=LOCALHOST, port=http_port),
        log=LogConfig(level=log_level),
    )


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
            self.pipeline.run(self.stop)
        except BaseException as exc:
            log.exception("the gateway pipeline failed")
            self.error = exc


def start_pipeline(broker: Broker, db: Path, log_level: str) -> tuple[Pipeline, GatewayThread]:
    last: OSError | None = None
    for _attempt in range(5):  # the metrics port could be taken between free_port() and the bind
        config = demo_config(broker.url, db, free_port(), log_level)
        assert config.sqlite is not None
        try:
            # The sink would keep retrying a file it cannot open; the demo had better say so at once.
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


def wait_until_subscribed(pipeline: Pipeline, broker: Broker, topic_filters: list[str], timeout_s: float) -> None:
    """Until the gateway is connected and the broker logged its subscription: earlier messages would be lost."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pipeline.readiness()[0] and all(broker.log_contains(f.encode()) for f in topic_filters):
            return
        time.sleep(0.02)
    if not pipeline.readiness()[0]:
        raise DemoError(f"the gateway did not connect to {broker.url} within {timeout_s:g} s\n{broker.log_tail()}")
    log.warning("the broker did not log the gateway's subscription; publishing anyway")


# -- output -------------------------------------------------------------------------------------------------


class Out:
    """Markup lines: styled by rich on a terminal, plain (and flushed at once) otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.rich = self.stream.isatty()
        # soft_wrap: a long line is left to the terminal to wrap, not broken into several by rich.
        self._console = Console(file=self.stream, highlight=False, soft_wrap=True) if self.rich else None

    def line(self, markup: str = "") -> None:
        if self._console is not None:
            self._console.print(markup)
        else:
            self.stream.write(Text.from_markup(markup).plain + "\n")
            self.stream.flush()


def _n(count: int) -> str:
    return f"{count:,}"


def rejections_text(rejected: Counter[str]) -> str:
    total = sum(rejected.values())
    if not total:
        return "0"
    return f"{_n(total)} (" + ", ".join(f"{reason} {_n(n)}" for reason, n in sorted(rejected.items())) + ")"


def status_markup(elapsed_s: float, pipeline: Pipeline, devices: int) -> str:
    stats = pipeline.stats
    return (
        f"[dim]{elapsed_s:5.0f}s[/]  received [bold]{_n(stats.messages_received)}[/]"
        f"  stored [green]{_n(sum(stats.readings_stored.values()))}[/]"
        f"  duplicates [yellow]{_n(stats.readings_duplicate)}[/]"
        f"  devices [bold]{devices}[/]"
        f"  rejected [red]{escape(rejections_text(stats.messages_rejected))}[/]"
    )


# -- the demo -----------------------------------------------------------------------------------------------


@dataclass
class DemoOptions:
    db: Path = DEFAULT_DB
    duration_s: float | None = None
    devices: int = DEFAULT_DEVICES
    rate_per_device: float = DEFAULT_RATE
    seed: int = 1
    log_level: str = "WARNING"
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


def run_demo(options: DemoOptions) -> int:
    """Run the demo; return the process exit code. Raises DemoError for set-up failures."""
    out = Out(options.stream)
    binary = find_mosquitto()
    if binary is None:
        where = (
            f"MOSQUITTO_BIN={os.environ['MOSQUITTO_BIN']} is not an executable"
            if os.environ.get("MOSQUITTO_BIN")
            else f"looked on PATH and at {', '.join(MOSQUITTO_FALLBACKS)}"
        )
        raise DemoError(
            f"Mosquitto, the MQTT broker the demo runs, is not installed ({where}).\n"
            "Install it with `sudo apt-get install mosquitto`, or run `make demo`, which installs it.",
            EXIT_NO_BROKER,
        )
    logging.basicConfig(
        level=options.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    interrupts = _Interrupts()
    interrupts.install()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    broker = Broker(binary, workdir)
    try:
        return _run(options, out, broker, interrupts)
    except KeyboardInterrupt:
        logging.disable(logging.CRITICAL)  # the gateway would complain about the broker going away
        out.line("[red]interrupted again: stopping at once[/]")
        return EXIT_INTERRUPTED
    finally:
        broker.stop()
        interrupts.restore()
        shutil.rmtree(workdir, ignore_errors=True)


def _run(options: DemoOptions, out: Out, broker: Broker, interrupts: _Interrupts) -> int:
    broker.start()
    feed = FleetFeed(options.devices, options.rate_per_device, seed=options.seed)
    pipeline, gateway = start_pipeline(broker, options.db, options.log_level)
    publisher_stop = threading.Event()
    try:
        return _supervise(options, out, broker, interrupts, feed, pipeline, gateway, publisher_stop)
    except BaseException:
        # A set-up failure or a second Ctrl-C: no orderly shutdown, but no thread keeps working either.
        publisher_stop.set()
        gateway.stop.set()
        raise


def _supervise(
    options: DemoOptions,
    out: Out,
    broker: Broker,
    interrupts: _Interrupts,
    feed: FleetFeed,
    pipeline: Pipeline,
    gateway: GatewayThread,
    publisher_stop: threading.Event,
) -> int:
    wait_until_subscribed(pipeline, broker, pipeline.ingestor.topic_filters, timeout_s=10.0)
    conn = open_readonly(options.db)
    measurement = pipeline.config.mappings[0].measurement

    duration = f"for {options.duration_s:g} s" if options.duration_s is not None else "until Ctrl-C"
    out.line(
        f"[bold]gateway demo[/]: {options.devices} simulated devices, ~{feed.rate:g} msg/s "
        f"({DUP_RATE:.0%} duplicates, {MALFORMED_RATE:.0%} malformed), {duration}"
    )
    out.line(f"  broker   mosquitto {broker.url} (temporary, {escape(str(broker.workdir))})")
    out.line(f"  store    SQLite {escape(str(options.db))}")
    out.line(f"  metrics  {metrics_url(pipeline)}")
    out.line("  Ctrl-C stops." if options.duration_s is None else "  Ctrl-C stops early.")

    started = time.monotonic()
    deadline = started + options.duration_s if options.duration_s is not None else None
    publisher = FleetPublisher(feed, broker.url, publisher_stop, deadline)
    publisher.start()

    reason = ""
    next_status = started + STATUS_EVERY_S
    while True:
        now = time.monotonic()
        wake = next_status if deadline is None else min(next_status, deadline)
        if interrupts.requested.wait(max(0.0, min(wake - now, 0.25))):
            reason = f"{interrupts.signal_name} received; again to quit at once"
            break
        now = time.monotonic()
        if publisher.failure is not None:
            reason = f"the simulated fleet failed: {publisher.failure}"
            break
        if not gateway.alive:
            reason = f"the gateway pipeline stopped: {gateway.error!r}"
            break
        if deadline is not None and now >= deadline:
            reason = f"{options.duration_s:g} s elapsed"
            break
        if now >= next_status:
            out.line(status_markup(now - started, pipeline, count_devices(conn, measurement)))
            next_status += STATUS_EVERY_S

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

    devices = count_devices(conn, measurement)
    conn.close()
    _print_summary(out, options, pipeline, publisher, devices, elapsed)
    if not stopped:
        out.line("[red]the gateway did not stop within 40 s[/]")
    failed = publisher.failure is not None or gateway.error is not None or not stopped
    return EXIT_FAILED if failed else 0


def _print_summary(
    out: Out, options: DemoOptions, pipeline: Pipeline, publisher: FleetPublisher, devices: int, elapsed_s: float
) -> None:
    stats = pipeline.stats
    stored = sum(stats.readings_stored.values())
    kinds = publisher.kinds
    malformed = sum(n for kind, n in kinds.items() if kind.startswith("malformed:"))
    unstored = stats.readings_accepted - stored  # accepted but still queued when the gateway had to stop
    out.line()
    out.line(f"[bold]summary[/] after {elapsed_s:.1f} s")
    out.line(
        f"  published    {_n(publisher.sent)} messages by {options.devices} simulated devices "
        f"({_n(kinds['valid'])} new, {_n(kinds['duplicate'])} resent, {_n(malformed)} malformed)"
        + (f", [red]{_n(publisher.errors)} failed[/]" if publisher.errors else "")
    )
    out.line(f"  received     {_n(stats.messages_received)} messages")
    out.line(f"  stored       [green]{_n(stored)}[/] readings from {devices} devices in {escape(str(options.db))}")
    out.line(f"  duplicates   [yellow]{_n(stats.readings_duplicate)}[/] (dropped)")
    out.line(f"  rejected     [red]{escape(rejections_text(stats.messages_rejected))}[/]")
    if unstored > 0:
        out.line(f"  [red]not stored   {_n(unstored)} accepted readings (still queued at shutdown)[/]")
    if publisher.failure:
        out.line(f"  [red]fleet failed: {escape(publisher.failure)}[/]")
    out.line()
    out.line("Look at the data:")
    out.line(f"  gateway query --db {escape(str(options.db))}")
    out.line(f"  gateway query --db {escape(str(options.db))} --device dev-00001 --limit 10")
