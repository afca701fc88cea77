"""One device's life during a run: when it samples, what it sends, and what goes wrong, as a stream of events.

A device takes a sample every `interval_ms` from `first_ms` (ms after the run's start), `slots` times. Per
sample, in a fixed order of draws from the device's own `random.Random`: a reboot (offline for reboot_s,
seq from 1 again), a silence (no samples for silence_s), a dropped connection (samples go on and are
buffered), then what the message is: broken, oversized, spoofed or valid, and a valid one may be sent twice
(with the next message) or held back (sent after the next one). A burst adds burst_size samples within the
interval. A device's stream depends only on its plan and the seed, never on other devices or on how the
run goes, so the manifest and the live run agree whatever the timing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import NamedTuple

from device_sim.fleetfile import Group
from device_sim.formats import Encoder, Message, Sample
from device_sim.sensors import DeviceSensors


class DevicePlan(NamedTuple):
    """Everything fixed about one device before the run."""

    name: str
    position: int  # in the fleet, from 0
    group: Group
    encoder: Encoder
    other: str  # another device's id, for spoofed messages
    connect_ms: int  # when it comes online, ms after the run's start (ramp-up)
    first_ms: int  # its first sample: connect_ms plus a random phase within one interval
    slots: int  # samples scheduled
    interval_ms: int
    seed: str


class Event(NamedTuple):
    at_ms: int  # ms after the run's start
    messages: tuple[Message, ...] = ()  # published in this order
    drop_ms: int = 0  # then, if > 0, the connection drops for this long
    abrupt: bool = False  # cut the socket (PUBLISHes in flight are resent) rather than disconnect cleanly
    reboot: bool = False


FAULTS = (
    "duplicate",
    "malformed",
    "out_of_order",
    "oversized",
    "spoofed_id",
    "burst",
    "disconnect",
    "reboot",
    "silence",
    "clock_skew",
)


class DeviceTimeline:
    """Iterate `events()` once; afterwards `sensors.episodes` and `counts` (faults injected) tell what happened."""

    def __init__(self, plan: DevicePlan, start_ms: int) -> None:
        self.plan = plan
        self._start_ms = start_ms
        self._rng = random.Random(plan.seed)
        group = plan.group
        self.sensors = DeviceSensors(list(group.sensors), list(group.anomalies), self._rng)
        self._kinds: dict[str, str] = {s.name: s.kind for s in group.sensors}
        self._rates = {
            name: 0.0 if name in plan.encoder.unsupported else getattr(group.faults, name) for name in FAULTS
        }
        faults = group.faults
        self.skew_ms = 0
        if self._rates["clock_skew"] and self._rng.random() < faults.clock_skew:
            limit = round(faults.clock_skew_max_s * 1000)
            self.skew_ms = self._rng.randint(-limit, limit)
            if plan.encoder.name == "tasmota":
                self.skew_ms = self.skew_ms // 1000 * 1000  # its clock shows whole seconds
        self.counts: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self.counts["clock_skew"] = int(self.skew_ms != 0)
        self._boot = 0
        self._seq = 0
        self._before: list[Message] = []  # duplicates: sent ahead of the next message
        self._after: list[Message] = []  # held back: sent after the next message

    def events(self) -> Iterator[Event]:
        plan, rng, faults, rates = self.plan, self._rng, self.plan.group.faults, self._rates
        timed = plan.encoder.timed
        skip_until = -1
        t = plan.first_ms
        for k in range(plan.slots):
            t = plan.first_ms + k * plan.interval_ms
            if t < skip_until:
                continue
            if rates["reboot"] and rng.random() < faults.reboot:
                self.counts["reboot"] += 1
                self._boot += 1
                self._seq = 0
                down = round(faults.reboot_s * 1000)
                yield Event(t, self._pending(), drop_ms=max(1, down), abrupt=timed, reboot=True)
                skip_until = t + down
                continue
            if rates["silence"] and rng.random() < faults.silence:
                self.counts["silence"] += 1
                skip_until = t + round(faults.silence_s * 1000)
                continue
            if rates["disconnect"] and rng.random() < faults.disconnect:
                self.counts["disconnect"] += 1
                yield Event(t, self._pending(), drop_ms=max(1, round(faults.disconnect_s * 1000)), abrupt=timed)
            messages, dups, hold = self._messages(t)
            if hold:
                if self._before or self._after:
                    yield Event(t, self._pending())
                self._after = messages + dups
            else:
                yield Event(t, self._pending(messages))
                self._before = dups
            if rates["burst"] and rng.random() < faults.burst:
                self.counts["burst"] += 1
                step = plan.interval_ms // (faults.burst_size + 1)
                for j in range(1, faults.burst_size + 1):
                    yield Event(t + j * step, self._pending(self._valid(t + j * step)))
        if self._before or self._after:
            yield Event(t + 1, self._pending())

    def _pending(self, messages: list[Message] | None = None) -> tuple[Message, ...]:
        out = (*self._before, *(messages or ()), *self._after)
        self._before = []
        self._after = []
        return out

    def _sample(self, t: int) -> Sample:
        self._seq += 1
        ts_ms = self._start_ms + t + self.skew_ms
        values = self.sensors.sample(ts_ms, self._rng)
        return Sample(
            device=self.plan.name,
            values=values,
            kinds=self._kinds,
            ts_ms=ts_ms,
            received_ms=self._start_ms + t,
            boot=self._boot,
            seq=self._seq,
            tags=dict(self.plan.group.tags),
        )

    def _valid(self, t: int) -> list[Message]:
        return self.plan.encoder.encode(self._sample(t), self._rng)

    def _messages(self, t: int) -> tuple[list[Message], list[Message], bool]:
        """The messages of the sample at t, their duplicates, and whether to hold them back (out of order)."""
        plan, rng, rates = self.plan, self._rng, self._rates
        encoder = plan.encoder
        sample = self._sample(t)
        r = rng.random()
        if r < rates["malformed"]:
            self.counts["malformed"] += 1
            return encoder.broken(sample, rng.choice(encoder.reasons), rng), [], False
        r -= rates["malformed"]
        if r < rates["oversized"]:
            self.counts["oversized"] += 1
            return encoder.oversized(sample, plan.group.faults.oversized_bytes, rng), [], False
        r -= rates["oversized"]
        if r < rates["spoofed_id"]:
            self.counts["spoofed_id"] += 1
            return encoder.spoofed(sample, plan.other, rng), [], False
        messages = encoder.encode(sample, rng)
        dups: list[Message] = []
        if rates["duplicate"] and rng.random() < rates["duplicate"]:
            self.counts["duplicate"] += 1
            messages = [m._replace(reading=m.reading._replace(duplicates=1)) if m.reading else m for m in messages]
            dups = [m._replace(kind="duplicate", reading=None, reason=None) for m in messages]
        hold = bool(rates["out_of_order"]) and rng.random() < rates["out_of_order"]
        self.counts["out_of_order"] += hold
        return messages, dups, hold
