"""The demo's simulated fleet: device_sim's messages, generated a slice at a time, scripted anomalies, published.

The fleet is generated a slice at a time (a minute of messages, at most 50,000), so the demo can run for any
time without building a huge message list first, and published in 2 s chunks with `device_sim.publish`, so a
stop takes effect within 2 s. device_sim numbers each slice's messages from seq 1; the slices are renumbered
here so that message ids (the dedup key) and timestamps keep counting across slices.

On top of device_sim's faults (duplicates, malformed messages) a `Script` makes a few devices misbehave for
the demo's alert rules (gateway/demo/rules.yaml): some overheat for a while each minute, one goes silent.

device_sim APIs used: `fleet.FleetSpec`, `fleet.generate`, `publisher.publish`, `link.LinkError`, and the
`topic`, `payload`, `kind` and `device` of `wire.Outgoing`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import orjson

log = logging.getLogger(__name__)

DUP_RATE = 0.03
MALFORMED_RATE = 0.02
SLICE_S = 60.0  # the fleet is generated this many seconds at a time (sensor values restart with each slice)
SLICE_MAX_MESSAGES = 50_000  # ... or fewer seconds, for a large fleet
CHUNK_S = 2.0  # and published this many seconds at a time: bounds how long stopping the fleet takes
TIMESTAMP_LAG_NS = 1_000_000_000  # device clocks run this far behind: every reading is stamped in the past
DEVICE_NAME = "dev-{n:05d}"  # device_sim's default id pattern

_NS_PER_MS = 1_000_000


# -- the script ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """Device number `device` misbehaves from `start_s` to `end_s` of every cycle, on its own clock (seconds
    since the demo began: seq x interval), so a resent duplicate is changed exactly like its original."""

    kind: Literal["overheat", "silent"]
    device: int  # numbered for a fleet of 50; a smaller fleet wraps it round (see Script.device)
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Script:
    """What the demo makes its devices do besides device_sim's random walk, every `cycle_s` seconds."""

    episodes: tuple[Episode, ...]
    cycle_s: float = 60.0
    overheat_c: float = 20.0  # added to the temperature at the height of an overheating episode ...
    ramp_s: float = 3.0  # ... reached this long after it begins, and left as long before it ends

    def device(self, episode: Episode, devices: int) -> str:
        return DEVICE_NAME.format(n=(episode.device - 1) % devices + 1)

    def lines(self, devices: int) -> list[str]:
        """The script in words, for the demo's header."""
        by_kind: dict[str, list[str]] = {}
        for episode in self.episodes:
            by_kind.setdefault(episode.kind, []).append(
                f"{self.device(episode, devices)} {episode.start_s:g}-{episode.end_s:g} s"
            )
        words = {"overheat": f"overheat by {self.overheat_c:g} °C", "silent": "go silent"}
        return [
            f"{words[kind]} each {self.cycle_s:g} s (device time): {', '.join(spans)}"
            for kind, spans in by_kind.items()
        ]


DEMO_SCRIPT = Script(
    (
        Episode("overheat", 7, 3.0, 13.0),
        Episode("overheat", 27, 8.0, 18.0),
        Episode("overheat", 47, 33.0, 43.0),
        Episode("silent", 50, 4.0, 30.0),
    )
)

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


def _seq(payload: bytes) -> int | None:
    match = _ID_AND_SEQ.match(payload)
    return None if match is None else int(match[3])


class _Scripted:
    """A Script applied to one fleet size and rate: which messages to hold back, which readings to heat."""

    def __init__(self, script: Script, devices: int, interval_ms: int) -> None:
        self.script = script
        self.interval_s = interval_ms / 1000
        self._episodes: dict[str, list[Episode]] = {}
        for episode in script.episodes:
            self._episodes.setdefault(script.device(episode, devices), []).append(episode)

    def _active(self, device: str, kind: str, t_s: float) -> Episode | None:
        at = t_s % self.script.cycle_s
        for episode in self._episodes.get(device, ()):
            if episode.kind == kind and episode.start_s <= at < episode.end_s:
                return episode
        return None

    def silent(self, device: str, round_: int) -> bool:
        """Whether the device holds back its message of this round (every kind of message: it is offline)."""
        return self._active(device, "silent", round_ * self.interval_s) is not None

    def heat(self, device: str, payload: bytes) -> bytes:
        """The payload with its temperature raised when an overheating episode covers its seq; else as is."""
        if device not in self._episodes:
            return payload
        seq = _seq(payload)
        if seq is None:
            return payload
        t_s = seq * self.interval_s
        episode = self._active(device, "overheat", t_s)
        if episode is None:
            return payload
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:  # a malformed message stays as device_sim broke it
            return payload
        metrics = body.get("metrics") if isinstance(body, dict) else None
        if not isinstance(metrics, dict):
            return payload
        temperature = metrics.get("temperature")
        if not isinstance(temperature, int | float) or isinstance(temperature, bool):
            return payload
        at = t_s % self.script.cycle_s
        height = min(1.0, (at - episode.start_s) / self.script.ramp_s, (episode.end_s - at) / self.script.ramp_s)
        metrics["temperature"] = round(temperature + self.script.overheat_c * max(0.0, height), 2)
        return orjson.dumps(body)


# -- the feed -----------------------------------------------------------------------------------------------


class FleetFeed:
    """An endless device_sim fleet, handed out in slices of `rounds` messages per device.

    Within a slice each device sends exactly `rounds` messages and uses at most `rounds` seqs, so shifting
    slice k's seqs by the rounds of the slices before it keeps every message id unique. Timestamps continue
    from one slice to the next, `interval` apart per device; a slice never starts earlier than its anchor
    (about a second before it is generated), so if publishing falls behind the timeline jumps forward.
    With a `script`, the messages a silent device holds back are left out of the slice (`held_back` counts
    them) and overheating devices' temperatures raised.
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
        script: Script | None = None,
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
        self.script = script
        self._scripted = _Scripted(script, devices, self.interval_ms) if script is not None else None
        self.slices = 0
        self.held_back = 0
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
            id_pattern=DEVICE_NAME,
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
        outgoing = [m._replace(payload=renumber(m.payload, offset)) for m in fleet.outgoing]
        scripted = self._scripted
        if scripted is None:
            return outgoing
        kept = []
        held: set[bytes] = set()  # a resend of a message never sent is held back too (device_sim resends in-slice)
        for index, message in enumerate(outgoing):
            device = message.device
            # device_sim deals messages in rounds, every device once a round: the round is the device's clock.
            if scripted.silent(device, offset + index // self.devices + 1) or message.payload in held:
                held.add(message.payload)
                self.held_back += 1
                continue
            kept.append(message._replace(payload=scripted.heat(device, message.payload)))
        return kept


class FleetPublisher:
    """Publishes FleetFeed slices until stopped, or until `deadline` (monotonic) when one is given."""

    def __init__(
        self,
        feed: FleetFeed,
        url: str,
        stop: threading.Event,
        deadline: float | None,
        *,
        protocol: Literal["5", "3.1.1"] = "5",
        username: str | None = None,
    ) -> None:
        self.feed = feed
        self.url = url
        self.stop = stop
        self.deadline = deadline
        self.protocol = 5 if protocol == "5" else 4
        self.username = username
        self.sent = 0
        self.errors = 0
        self.kinds: Counter[str] = Counter()  # valid / duplicate / malformed:<reason>, of messages handed out
        self.failure: str | None = None
        self._scheduled_s = 0.0  # when the messages handed out so far are due, from the start
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
                # A slice takes its devices' time, however many messages a silent device held back.
                slice_s = rounds / self.feed.rate_per_device
                if not outgoing:
                    self._scheduled_s += slice_s
                    self.stop.wait(max(0.0, self._started + self._scheduled_s - time.monotonic()))
                    continue
                rate = len(outgoing) / slice_s
                step = self.feed.messages_per_chunk
                for start in range(0, len(outgoing), step):
                    if self.stop.is_set() or not self._publish(outgoing[start : start + step], rate):
                        return
        except Exception as exc:
            log.exception("the simulated fleet failed")
            self.failure = f"{type(exc).__name__}: {exc}"

    def _chunk_rate(self, messages: int, rate: float) -> float:
        """`rate`, or up to 4 times that to catch up with the schedule: generating a slice and connecting
        for each chunk take time, which would otherwise lower the rate over a long run."""
        self._scheduled_s += messages / rate
        due_s = self._started + self._scheduled_s - time.monotonic()
        return min(4 * rate, max(rate, messages / due_s)) if due_s > 0 else 4 * rate

    def _publish(self, chunk: list[Any], rate: float) -> bool:
        """One `device_sim.publish` call (one connection), paced; False once publishing failed."""
        from device_sim.link import LinkError  # noqa: PLC0415 - only the demo needs the simulator
        from device_sim.publisher import publish  # noqa: PLC0415

        try:
            stats = publish(
                chunk,
                self.url,
                rate=self._chunk_rate(len(chunk), rate),
                protocol=self.protocol,
                username=self.username,
                client_id_prefix="gateway-demo-fleet",
                connect_timeout_s=5.0,
                stall_timeout_s=10.0,
            )
        except LinkError as exc:
            self.failure = str(exc)
            return False
        self.sent += stats.sent
        self.errors += stats.errors
        self.kinds.update(m.kind for m in chunk)
        if stats.failure:
            self.failure = stats.failure
            return False
        return True
