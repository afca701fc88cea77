"""Publishes a scenario live: every device's timeline merged into one schedule, on asyncio connections.

One scheduler walks the merged schedule (a heap with one pending event per device) and hands messages to
the connections; connections only move bytes. No task per device: 10,000 devices cost 10,000 small
protocol objects and one heap. Paced runs follow the schedule in real time (a device's sample at t ms goes
out t ms after the start); unpaced runs send as fast as the connections' windows allow.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import resource
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from device_sim.aioclient import Connection, LinkStats
from device_sim.brokerurl import parse_broker_url
from device_sim.scenario import Scenario, Tally
from device_sim.timeline import DeviceTimeline, Event
from gateway.mqtt.packets import MQTT_5, MQTT_311

CONNECT_TIMEOUT_S = 10.0  # no connection at all by then: the broker is not there
TICK_S = 0.5
RATE_WINDOW_S = 2.0
_YIELD_EVERY = 256  # events handled between two turns of the event loop
_UNPACED_BACKLOG = 50_000  # unpaced: messages queued in connections before the scheduler waits


@dataclass
class Snapshot:
    """Progress so far; `history` has one (elapsed_s, published, acked) entry per tick."""

    elapsed_s: float = 0.0
    published: int = 0
    acked: int = 0
    refused: int = 0
    resent: int = 0
    connected: int = 0
    peak_connected: int = 0
    connects: int = 0
    drops: int = 0
    devices: int = 0
    rate_per_s: float = 0.0  # acknowledged per second over the last RATE_WINDOW_S
    done: bool = False
    history: list[tuple[float, int, int]] = field(default_factory=list)


@dataclass
class RunResult:
    snapshot: Snapshot
    tally: Tally  # what was handed to the connections, by kind
    elapsed_s: float  # from the start to the last acknowledgement
    unacknowledged: int
    failure: str | None
    cpu_s: float  # from the start of sending
    max_rss_mb: float
    preload_s: float = 0.0  # generating every message before the start (run.preload)
    started_at: float = 0.0  # wall clock (epoch s) of the start

    @property
    def errors(self) -> int:
        return self.snapshot.refused + self.unacknowledged

    def as_dict(self) -> dict[str, Any]:
        s = self.snapshot
        return {
            "published": s.published,
            "acknowledged": s.acked,
            "errors": self.errors,
            "refused": s.refused,
            "unacknowledged": self.unacknowledged,
            "resent": s.resent,
            "elapsed_s": round(self.elapsed_s, 3),
            "rate_per_s": round(s.acked / self.elapsed_s, 1) if self.elapsed_s > 0 else 0.0,
            "devices": s.devices,
            "peak_connected": s.peak_connected,
            "connects": s.connects,
            "drops": s.drops,
            "failure": self.failure,
            "cpu_s": round(self.cpu_s, 2),
            "max_rss_mb": round(self.max_rss_mb, 1),
            "preload_s": round(self.preload_s, 2),
            "started_at": round(self.started_at, 3),
            "sent": self.tally.as_dict(),
            "history": [[round(t, 2), published, acked] for t, published, acked in s.history],
        }


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        *,
        on_tick: Callable[[Snapshot], None] | None = None,
        stall_timeout_s: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        before_start: Callable[[], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self._before_start = before_start  # called once everything is generated (and preloaded), before the clock
        self._on_tick = on_tick
        self._stall_timeout_s = stall_timeout_s
        self._stats = LinkStats()
        self.snapshot = Snapshot(devices=len(scenario.plans))
        self.tally = Tally()
        broker = scenario.fleet.broker
        address = parse_broker_url(broker.url)
        if broker.username is not None:
            address = address._replace(username=broker.username, password=broker.password)
        if address.tls and ssl_context is None:
            ssl_context = ssl.create_default_context()
        version = MQTT_5 if broker.protocol == "5" else MQTT_311
        plans = scenario.plans
        shared = broker.connections > 0

        def connection(client_id: str) -> Connection:
            return Connection(
                address,
                client_id,
                self._stats,
                version=version,
                qos=broker.qos,
                keepalive_s=broker.keepalive_s,
                session_expiry_s=broker.session_expiry_s,
                window=broker.window,
                ssl_context=ssl_context,
            )

        if shared:
            count = min(broker.connections, len(plans))
            self._connections = [connection(f"{broker.client_id_prefix}sim-{n}") for n in range(count)]
            self._route = [i % count for i in range(len(plans))]
        else:
            self._connections = [connection(broker.client_id_prefix + p.name) for p in plans]
            self._route = list(range(len(plans)))
        # A connection is cut abruptly (resends possible) only if every device on it can be deduplicated.
        self._abrupt_ok = [True] * len(self._connections)
        for plan, n in zip(plans, self._route, strict=True):
            self._abrupt_ok[n] = self._abrupt_ok[n] and plan.encoder.timed
        self._shared = shared
        self._timelines: list[DeviceTimeline] = []
        self.preload_s = 0.0
        self.started_at = 0.0

    async def run(self) -> RunResult:
        loop = asyncio.get_running_loop()
        prepared = time.monotonic()
        streams: list[Iterator[Event]] = []
        for timeline in self.scenario.timelines():
            self._timelines.append(timeline)
            events = timeline.events()
            streams.append(iter(list(events)) if self.scenario.fleet.run.preload else events)
        self.preload_s = time.monotonic() - prepared
        if self._before_start is not None:
            self._before_start()
        started = loop.time()
        self.started_at = time.time()
        cpu_before = _cpu_s()
        ticker = loop.create_task(self._tick(started))
        try:
            await self._schedule(started, streams)
            unacked = await self._finish()
        finally:
            ticker.cancel()
        end = loop.time()
        self._update(end - started)
        self.snapshot.done = True
        if self._on_tick is not None:
            self._on_tick(self.snapshot)
        for timeline in self._timelines:
            self.tally.faults.update(timeline.counts)
        return RunResult(
            snapshot=self.snapshot,
            tally=self.tally,
            elapsed_s=end - started,
            unacknowledged=unacked,
            failure=self._stats.failure,
            cpu_s=_cpu_s() - cpu_before,
            max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            preload_s=self.preload_s,
            started_at=self.started_at,
        )

    async def _schedule(self, started: float, streams: list[Iterator[Event]]) -> None:
        loop = asyncio.get_running_loop()
        pace = self.scenario.fleet.run.pace
        heap: list[tuple[int, int, Event | None]] = []
        for i, timeline in enumerate(self._timelines):
            if self._shared:
                first = next(streams[i], None)
                if first is not None:
                    heap.append((first.at_ms, i, first))
            else:
                heap.append((timeline.plan.connect_ms, i, None))  # come online, then the first sample
        if self._shared:
            for connection in self._connections:
                connection.start()
        heapq.heapify(heap)
        handled = 0
        stats = self._stats
        while heap and stats.failure is None:
            at_ms, i, event = heap[0]
            if pace:
                due_s = started + at_ms / 1000 - loop.time()
                if due_s > 0:
                    await asyncio.sleep(min(due_s, TICK_S))
                    continue
            heapq.heappop(heap)
            if event is None:
                self._connections[i].start()
            else:
                self._handle(i, event)
            following = next(streams[i], None)
            if following is not None:
                heapq.heappush(heap, (following.at_ms, i, following))
            handled += 1
            if handled % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
                if not pace:
                    while stats.published - stats.acked - stats.refused > _UNPACED_BACKLOG and stats.failure is None:
                        await asyncio.sleep(0.005)

    def _handle(self, i: int, event: Event) -> None:
        n = self._route[i]
        connection = self._connections[n]
        self.tally.count(event)
        for message in event.messages:
            connection.publish(message.topic, message.payload)
        if event.drop_ms:
            connection.drop(event.drop_ms / 1000, abrupt=event.abrupt and self._abrupt_ok[n])

    async def _finish(self) -> int:
        """Wait for every acknowledgement (giving up after stall_timeout_s without progress), then DISCONNECT."""
        loop = asyncio.get_running_loop()
        waiting = asyncio.gather(*(c.wait_idle() for c in self._connections))
        last_acked, last_progress = -1, loop.time()
        while not waiting.done() and self._stats.failure is None:
            await asyncio.wait({waiting}, timeout=0.5)
            acked = self._stats.acked + self._stats.refused
            if acked != last_acked:
                last_acked, last_progress = acked, loop.time()
            elif loop.time() - last_progress > self._stall_timeout_s:
                self._stats.failure = f"the broker acknowledged nothing for {self._stall_timeout_s:g} s"
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        left = await asyncio.gather(*(c.close(timeout_s=0) for c in self._connections))
        await asyncio.sleep(0.05)  # let the DISCONNECTs go out
        return sum(left)

    async def _tick(self, started: float) -> None:
        loop = asyncio.get_running_loop()
        last_ping = started
        while True:
            await asyncio.sleep(TICK_S)
            now = loop.time()
            self._update(now - started)
            if self._stats.connects == 0 and now - started > CONNECT_TIMEOUT_S and self._stats.failure is None:
                address = parse_broker_url(self.scenario.fleet.broker.url)
                self._stats.failure = f"no connection to {address.host}:{address.port} within {CONNECT_TIMEOUT_S:g} s"
            if now - last_ping >= 1.0:
                wall = time.monotonic()
                for connection in self._connections:
                    connection.ping_if_idle(wall)
                last_ping = now
            if self._on_tick is not None:
                self._on_tick(self.snapshot)

    def _update(self, elapsed_s: float) -> None:
        s, stats = self.snapshot, self._stats
        s.elapsed_s = elapsed_s
        s.published, s.acked, s.refused, s.resent = stats.published, stats.acked, stats.refused, stats.resent
        s.connected, s.connects, s.drops = stats.connected, stats.connects, stats.drops
        s.peak_connected = stats.peak_connected
        s.history.append((elapsed_s, stats.published, stats.acked))
        # The rate shown: over the last two seconds, so one tick's jitter does not make it jump.
        back = s.history[max(0, len(s.history) - 1 - round(RATE_WINDOW_S / TICK_S))]
        if elapsed_s > back[0]:
            s.rate_per_s = (stats.acked - back[2]) / (elapsed_s - back[0])


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
