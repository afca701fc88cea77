"""A deterministic fleet: the stream of messages a set of devices publishes, and what it should yield.

The same FleetSpec (with start_time_ns set) always gives byte-identical payloads in the same order and
the same manifest: every random choice comes from one `random.Random(seed)`, drawn in a fixed order.

Each device counts its own `seq` from 1; malformed messages use up a seq as well, so every message id
is unique per device and a duplicate is the only message that repeats one.
"""

from __future__ import annotations

import gc
import math
import random
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Final, NamedTuple

from device_sim.malform import BreakContext, break_body
from device_sim.manifest import ExpectedReading, ExpectedRejection, FieldValue, Manifest
from device_sim.signals import DeviceSignals, Metric
from device_sim.wire import (
    DUPLICATE,
    MALFORMED_REASONS,
    VALID,
    Outgoing,
    check_device_name,
    encode,
    epoch_ms,
    malformed_kind,
    rfc3339_ms,
    topic_for,
)

RFC3339_SHARE: Final = 0.2  # the rest carry epoch milliseconds, the cheaper encoding most devices use
DEVICE_ID_SHARE: Final = 0.25  # valid messages that repeat their (matching) device_id in the body
OVERSIZED_EVERY: Final = 200  # oversized payloads are big; keep them to one malformed message in 200
RESEND_WINDOW: Final = 16  # a duplicate resends one of the device's last few valid messages, like a retry
_COMMON_REASONS: Final = tuple(r for r in MALFORMED_REASONS if r != "oversized")
_NS_PER_MS: Final = 1_000_000
_NS_PER_S: Final = 1_000_000_000


@dataclass(frozen=True)
class FleetSpec:
    """What to simulate.

    Device n (counting from 1) sends readings stamped start_time_ns + seq * interval_ms, with start_time_ns
    rounded down to the millisecond. Leave it unset to end the timeline ten intervals before now: then
    every valid reading is in the past and every future_ts message (a day ahead) really is in the future.
    """

    devices: int
    messages: int
    seed: int
    id_pattern: str = "dev-{n:05d}"
    dup_rate: float = 0.0
    malformed_rate: float = 0.0
    start_time_ns: int | None = None
    interval_ms: int = 1000
    site_tags: bool = True

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError(f"devices must be at least 1, got {self.devices}")
        if self.messages < 0:
            raise ValueError(f"messages must not be negative, got {self.messages}")
        if self.interval_ms < 1:
            raise ValueError(f"interval_ms must be at least 1, got {self.interval_ms}")
        for name, rate in (("dup_rate", self.dup_rate), ("malformed_rate", self.malformed_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {rate}")
        if self.dup_rate + self.malformed_rate > 1.0:
            raise ValueError("dup_rate + malformed_rate must not exceed 1")

    def device_names(self) -> list[str]:
        """Names of devices 1..devices; they must be distinct and usable as a topic level."""
        names = [self.id_pattern.format(n=n) for n in range(1, self.devices + 1)]
        for name in names:
            check_device_name(name)
        if len(set(names)) != len(names):
            raise ValueError(f"id_pattern {self.id_pattern!r} gives the same name to several devices")
        return names

    def resolved(self, now_ns: int | None = None) -> FleetSpec:
        """This spec with start_time_ns filled in; pass the result around to reproduce a run exactly."""
        if self.start_time_ns is not None:
            return self
        now_ns = time.time_ns() if now_ns is None else now_ns
        # No device gets more than ceil(messages/devices) seqs; ten spare intervals keep all ts in the past.
        span_ns = (math.ceil(self.messages / self.devices) + 10) * self.interval_ms * _NS_PER_MS
        start = (now_ns - span_ns) // _NS_PER_S * _NS_PER_S
        return replace(self, start_time_ns=start)


class Fleet(NamedTuple):
    """A generated fleet: the resolved spec, the messages in publication order, and the expectations."""

    spec: FleetSpec
    outgoing: list[Outgoing]
    manifest: Manifest


class _Device:
    """Per-device state while generating: seq counter, sensor state and recent resendable messages."""

    __slots__ = ("name", "other", "recent", "seq", "signals", "tags", "topic")

    def __init__(self, name: str, other: str, tags: dict[str, str], rng: random.Random) -> None:
        self.name = name
        self.other = other  # a different device's name, for device_mismatch
        self.topic = topic_for(name)
        self.tags = tags
        self.seq = 0
        self.signals = DeviceSignals(rng)
        self.recent: deque[tuple[bytes, int]] = deque(maxlen=RESEND_WINDOW)  # (payload, reading index)


class _ReasonDealer:
    """Deals malformed reasons evenly (shuffled decks), with oversized as every 200th card."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._deck: list[str] = []
        self._dealt = 0

    def deal(self) -> str:
        self._dealt += 1
        if self._dealt % OVERSIZED_EVERY == 0:
            return "oversized"
        if not self._deck:
            self._deck = list(_COMMON_REASONS)
            self._rng.shuffle(self._deck)
        return self._deck.pop()


def generate(spec: FleetSpec) -> Fleet:
    """Build the fleet's message stream and manifest; deterministic once start_time_ns is set."""
    with _gc_paused():
        return _generate(spec.resolved())


@contextmanager
def _gc_paused() -> Iterator[None]:
    # Generation makes millions of acyclic objects; the cyclic collector would rescan them again and
    # again for nothing, which more than doubles the run time of a large fleet.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _generate(spec: FleetSpec) -> Fleet:
    assert spec.start_time_ns is not None  # resolved() always fills it
    start_ns = spec.start_time_ns // _NS_PER_MS * _NS_PER_MS  # ts travels in ms at best
    interval_ns = spec.interval_ms * _NS_PER_MS
    rng = random.Random(spec.seed)

    names = spec.device_names()
    devices = [
        _Device(
            name=name,
            other=names[(n + 1) % len(names)] if len(names) > 1 else f"{name}-impostor",
            tags={"site": f"site-{(n + 1) % 10}"} if spec.site_tags else {},
            rng=rng,
        )
        for n, name in enumerate(names)
    ]
    slots = _device_slots(spec.devices, spec.messages, rng)
    n_malformed = round(spec.messages * spec.malformed_rate)
    n_dups = round(spec.messages * spec.dup_rate)
    malformed_slots = set(rng.sample(range(spec.messages), n_malformed))
    dup_slots = set(rng.sample([i for i in range(spec.messages) if i not in malformed_slots], n_dups))
    dealer = _ReasonDealer(rng)

    outgoing: list[Outgoing] = []
    readings: list[ExpectedReading] = []
    resends: list[int] = []  # per reading, how often it was resent
    rejections: dict[tuple[str, str], int] = {}  # insertion order = first occurrence
    debt = 0  # duplicates owed because their slot's device had nothing to resend yet

    for slot, device_index in enumerate(slots):
        device = devices[device_index]
        if slot in malformed_slots:
            reason = dealer.deal()
            body, time_ns = _next_body(device, start_ns, interval_ns, rng)
            payload = break_body(reason, body, rng, BreakContext(time_ns, device.other))
            outgoing.append(Outgoing(device.topic, payload, malformed_kind(reason)))
            rejections[device.topic, reason] = rejections.get((device.topic, reason), 0) + 1
            continue
        debt += slot in dup_slots
        if debt and device.recent:
            debt -= 1
            payload, reading_index = rng.choice(device.recent)
            outgoing.append(Outgoing(device.topic, payload, DUPLICATE))
            resends[reading_index] += 1
            continue
        body, time_ns = _next_body(device, start_ns, interval_ns, rng)
        payload = encode(body)
        device.recent.append((payload, len(readings)))
        outgoing.append(Outgoing(device.topic, payload, VALID))
        readings.append(_expected(device, body, time_ns))
        resends.append(0)

    manifest = Manifest(
        readings=[r._replace(duplicates=n) for r, n in zip(readings, resends, strict=True)],
        rejections=[ExpectedRejection(t, reason, n) for (t, reason), n in rejections.items()],
    )
    return Fleet(spec, outgoing, manifest)


def _device_slots(devices: int, messages: int, rng: random.Random) -> list[int]:
    """Which device sends each message: rounds in which every device speaks once, in a shuffled order."""
    order = list(range(devices))
    slots: list[int] = []
    while len(slots) < messages:
        rng.shuffle(order)
        slots.extend(order[: messages - len(slots)])
    return slots


def _next_body(device: _Device, start_ns: int, interval_ns: int, rng: random.Random) -> tuple[dict[str, Any], int]:
    """The device's next well-formed message body (taking a new seq) and its nominal time."""
    device.seq += 1
    seq = device.seq
    time_ns = start_ns + seq * interval_ns
    ts: str | int = rfc3339_ms(time_ns) if rng.random() < RFC3339_SHARE else epoch_ms(time_ns)
    body: dict[str, Any] = {"id": f"{device.name}-{seq:08d}", "seq": seq, "ts": ts}
    if rng.random() < DEVICE_ID_SHARE:
        body["device_id"] = device.name
    body["metrics"] = device.signals.step(rng)
    if device.tags:
        body["tags"] = device.tags
    return body, time_ns


def _expected(device: _Device, body: dict[str, Any], time_ns: int) -> ExpectedReading:
    metrics: dict[str, Metric] = body["metrics"]
    return ExpectedReading(
        device=device.name,
        time_ns=time_ns,
        fields={name: _as_field(value) for name, value in metrics.items()},
        tags=dict(device.tags),
        id=body["id"],
        seq=body["seq"],
    )


def _as_field(value: Metric) -> FieldValue:
    # The gateway stores every number as a float; bool is an int subclass and must stay a bool.
    return value if isinstance(value, bool) else float(value)
