"""What every rule's state machine shares: the episode record, the engine context, alerts and repeats.

An episode is the life of one (rule, device) alert from pending to resolved. Between episodes a pair keeps
only the device time of the last reading it evaluated (an int), so an idle device costs a list item a rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

from gateway.alerts.alert import Alert, Transition
from gateway.alerts.rules import AnyRule
from gateway.alerts.timers import REPEAT, TimerQueue
from gateway.model import FieldValue


class SlotTable(Protocol):
    """Where machines keep their per-device states (gateway/alerts/devices.py's DeviceTable)."""

    def slot(self, device: str) -> Slot: ...

    def locate(self, machine: Machine, device: str) -> tuple[Slot, int] | None: ...

    def states(self, machine: Machine) -> Iterator[tuple[str, Any]]: ...


PENDING = 1
FIRING = 2
Slot = list[Any]  # one device's states: [plan, state of its first rule, ...] (see devices.py)


class Stats:
    """Counters for the owner to export as metrics."""

    __slots__ = ("non_numeric", "sequence_events", "stale")

    def __init__(self) -> None:
        self.sequence_events = 0
        self.stale = 0  # readings or events no newer than the last one evaluated: redelivered or out of order
        self.non_numeric = 0  # a string value where a rule needs a number


class Context:
    """Engine-wide things a machine needs: the device table, the timers, the wall clock, the counters."""

    __slots__ = ("clock", "report_pending", "stats", "table", "timers")

    def __init__(self, clock: Callable[[], int], report_pending: bool) -> None:
        self.timers = TimerQueue()
        self.clock = clock
        self.report_pending = report_pending
        self.stats = Stats()
        self.table: SlotTable  # set by the engine

    def wall(self, now_ns: int | None) -> int:
        return self.clock() if now_ns is None else now_ns


class Episode:
    """A pending or firing alert of one (rule, device)."""

    __slots__ = (
        "anchor",
        "clear_since_ns",
        "due_ns",
        "last_ns",
        "notified_ns",
        "phase",
        "reading_id",
        "since_ns",
        "threshold",
        "value",
    )

    def __init__(
        self,
        phase: int,
        last_ns: int,
        since_ns: int,
        value: FieldValue | None,
        threshold: float | str | None,
        reading_id: str | None,
    ) -> None:
        self.phase = phase
        self.last_ns = last_ns  # device time of the last reading evaluated (rate: also the anchor's time)
        self.since_ns = since_ns  # start of the episode: the alert's starts_at
        self.value = value  # of the reading that made it fire
        self.threshold = threshold
        self.reading_id = reading_id
        self.clear_since_ns: int | None = None  # keep_firing_for: when the clear condition first held
        self.anchor: FieldValue = 0.0  # rate: the value at last_ns
        self.due_ns = 0  # sequence: wall time it resolves
        self.notified_ns = 0  # wall time of the last firing or repeat notification

    FIELDS: ClassVar[tuple[str, ...]] = (
        "phase",
        "last_ns",
        "since_ns",
        "value",
        "threshold",
        "reading_id",
        "clear_since_ns",
        "anchor",
        "due_ns",
        "notified_ns",
    )

    def to_row(self) -> list[object]:
        return [getattr(self, name) for name in self.FIELDS]

    @classmethod
    def from_row(cls, row: list[object]) -> Episode:
        episode = cls.__new__(cls)
        for name, value in zip(cls.FIELDS, row, strict=True):
            setattr(episode, name, value)
        return episode


class Machine:
    """One rule's state machines over all devices. Subclasses add the verbs their kind needs."""

    kind: ClassVar[str]

    def __init__(self, rule: AnyRule, ctx: Context) -> None:
        self.rule = rule
        self.name = rule.name
        self.ctx = ctx
        self.retired = False
        self.tags = tuple(rule.select.tags.items())
        self.metric: str | None = getattr(rule, "metric", None)
        self.repeat_ns = rule.repeat_interval

    # -- state access: the states live in the device table's slots -----------------------------------

    def episodes(self) -> Iterator[tuple[str, Episode]]:
        for device, state in self.ctx.table.states(self):
            if isinstance(state, Episode):
                yield device, state

    def episode(self, device: str) -> Episode | None:
        found = self.ctx.table.locate(self, device)
        if found is None:
            return None
        state = found[0][found[1]]
        return state if isinstance(state, Episode) else None

    def adopt(self, device: str, episode: Episode, now_ns: int) -> None:
        """Take over an episode restored from a snapshot, re-arming its timers; notifies nothing."""
        slot = self.ctx.table.slot(device)
        pos = slot[0].positions.get(self)
        if pos is not None:
            slot[pos] = episode
            self.rearm(device, episode)

    def rearm(self, device: str, episode: Episode) -> None:
        if self.repeat_ns is not None and episode.phase == FIRING:
            self.ctx.timers.push(episode.notified_ns + self.repeat_ns, REPEAT, self, device, episode)

    # -- alerts and repeats ------------------------------------------------------------------------

    def alert(
        self,
        transition: Transition,
        device: str,
        episode: Episode,
        at_ns: int,
        value: FieldValue | None = None,
        reading_id: str | None = None,
        ends_at_ns: int | None = None,
    ) -> Alert:
        """Pending, firing and repeat carry the episode's triggering reading; resolved and cancelled carry the
        reading that ended the episode (`value`, `reading_id`)."""
        if transition in ("pending", "firing", "repeat"):
            value, reading_id = episode.value, episode.reading_id
        rule = self.rule
        return Alert(
            rule.name,
            device,
            rule.severity,
            rule.labels,
            transition,
            value,
            episode.threshold,
            reading_id,
            episode.since_ns,
            ends_at_ns,
            at_ns,
            rule.kind,
            self.metric,
        )

    def fired(self, device: str, episode: Episode, now_ns: int | None) -> None:
        """Bookkeeping of a firing notification: remember when (wall clock), and schedule the repeat."""
        now = self.ctx.wall(now_ns)
        episode.notified_ns = now
        if self.repeat_ns is not None:
            self.ctx.timers.push(now + self.repeat_ns, REPEAT, self, device, episode)

    def on_timer(self, kind: int, device: str, token: object, now_ns: int) -> Alert | None:
        if kind == REPEAT:
            return self._repeat(device, token, now_ns)
        return self.on_deadline(device, token, now_ns)

    def on_deadline(self, device: str, token: object, now_ns: int) -> Alert | None:
        return None

    def _repeat(self, device: str, token: object, now_ns: int) -> Alert | None:
        episode = self.episode(device)
        if episode is not token or episode is None or episode.phase != FIRING or self.repeat_ns is None:
            return None  # that episode ended: a lazily deleted timer
        due = episode.notified_ns + self.repeat_ns
        if due > now_ns:
            self.ctx.timers.push(due, REPEAT, self, device, episode)
            return None
        episode.notified_ns = now_ns
        self.ctx.timers.push(now_ns + self.repeat_ns, REPEAT, self, device, episode)
        return self.alert("repeat", device, episode, now_ns)
