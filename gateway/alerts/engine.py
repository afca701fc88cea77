"""`AlertEngine`: readings and sequence events in, alert transitions out; `tick` drives the timers.

Pure and single-threaded: the owner calls it from one thread, passes the wall clock in (or lets it read
`time.time_ns`), stores what `snapshot()` returns, and sends the alerts it returns. Which rules apply to a
device is worked out on its first reading (devices.py); after that a reading costs one dict lookup for the
device and one call per rule whose metric it carries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from gateway.alerts import state
from gateway.alerts.alert import Alert
from gateway.alerts.devices import DeviceTable
from gateway.alerts.held import RangeMachine, RateMachine, ThresholdMachine
from gateway.alerts.rules import AnyRule, DeadmanRule, RangeRule, RateRule, RuleSet, ThresholdRule
from gateway.alerts.runtime import FIRING, Context, Machine, Stats
from gateway.alerts.watches import DeadmanMachine, SequenceMachine
from gateway.model import Reading

_NO_ALERTS: tuple[Alert, ...] = ()
SEQUENCE_KINDS = frozenset({"gap", "reset", "out_of_order"})


def build_machine(rule: AnyRule, ctx: Context) -> Machine:
    match rule:
        case ThresholdRule():
            return ThresholdMachine(rule, ctx)
        case RangeRule():
            return RangeMachine(rule, ctx)
        case RateRule():
            return RateMachine(rule, ctx)
        case DeadmanRule():
            return DeadmanMachine(rule, ctx)
        case _:
            return SequenceMachine(rule, ctx)


def _tags_match(wanted: tuple[tuple[str, str], ...], tags: Mapping[str, str] | None) -> bool:
    if tags is None:
        return False
    return all(tags.get(key) == value for key, value in wanted)


class AlertEngine:
    """Evaluates a RuleSet per (rule, device). See gateway/alerts/__init__.py for the clocks each kind uses."""

    def __init__(
        self, rules: RuleSet, *, clock: Callable[[], int] = time.time_ns, report_pending: bool = False
    ) -> None:
        """`clock` is the wall clock (ns) used when a call passes no `now_ns`; `report_pending` also returns
        the pending and cancelled transitions (for `gateway rules test`)."""
        self._ctx = Context(clock, report_pending)
        self._rules = rules
        self._machines = {rule.name: build_machine(rule, self._ctx) for rule in rules.rules}
        self._devices = self._ctx.table = DeviceTable(list(self._machines.values()))

    @property
    def rules(self) -> RuleSet:
        return self._rules

    @property
    def stats(self) -> Stats:
        return self._ctx.stats

    @property
    def devices(self) -> int:
        """Devices with state (each costs a slot; see bench/rules.py for the bytes)."""
        return len(self._devices)

    # -- the verbs ------------------------------------------------------------------------------------

    def on_reading(self, reading: Reading, now_ns: int | None = None) -> Sequence[Alert]:
        """Evaluate one reading. `now_ns` is the wall time it was received (deadman, repeats); default: clock."""
        device = reading.device
        slot = self._devices.slots.get(device)
        if slot is None:
            slot = self._devices.slot(device)
        plan = slot[0]
        fields = reading.fields
        out: list[Alert] | None = None
        for metric, machine, pos in plan.held:
            value = fields.get(metric)
            if value is None or (machine.tags and not _tags_match(machine.tags, reading.tags)):
                continue
            if machine.needs_number and isinstance(value, str):  # checked here: any TypeError below is a bug
                self._ctx.stats.non_numeric += 1
                continue
            alert = machine.on_value(slot, pos, device, value, reading.time_ns, reading.reading_id, now_ns)
            if alert is not None:
                if out is None:
                    out = []
                out.append(alert)
        if plan.deadman:
            now = self._ctx.clock() if now_ns is None else now_ns
            for watch, pos in plan.deadman:
                if (watch.metric is not None and watch.metric not in fields) or (
                    watch.tags and not _tags_match(watch.tags, reading.tags)
                ):
                    continue
                alert = watch.on_seen(slot, pos, device, now, reading.reading_id)
                if alert is not None:
                    if out is None:
                        out = []
                    out.append(alert)
        return _NO_ALERTS if out is None else out

    def on_sequence_event(
        self,
        device: str,
        kind: str,
        reading_id: str | None,
        time_ns: int,
        *,
        value: float | None = None,
        tags: Mapping[str, str] | None = None,
        now_ns: int | None = None,
    ) -> Sequence[Alert]:
        """A sequence tracker saw `kind` ("gap", "reset" or "out_of_order") at the reading `reading_id` (device
        time `time_ns`); `value` is for the alert (e.g. readings missing). Rules with a tag selector need `tags`."""
        if kind not in SEQUENCE_KINDS:
            raise ValueError(f"unknown sequence event {kind!r}; expected one of {sorted(SEQUENCE_KINDS)}")
        self._ctx.stats.sequence_events += 1
        slot = self._devices.slot(device)
        out: list[Alert] = []
        for machine, pos in slot[0].sequence:
            if machine.tags and not _tags_match(machine.tags, tags):
                continue
            out += machine.on_event(slot, pos, device, kind, reading_id, time_ns, value, now_ns)
        return out

    def tick(self, now_ns: int | None = None) -> list[Alert]:
        """Run the timers due by `now_ns` (wall clock; default: clock): deadman, repeats, sequence resolutions.
        Call it about once a second; `next_deadline()` says when it next has something to do."""
        ctx = self._ctx
        now = ctx.wall(now_ns)
        out: list[Alert] = []
        # Drained first: a target may push entries (always for later) while we go.
        for _due, _order, kind, target, device, token in list(ctx.timers.pop_due(now)):
            if target.retired:
                continue
            alert = target.on_timer(kind, device, token, now)
            if alert is not None:
                out.append(alert)
        return out

    def next_deadline(self) -> int | None:
        """Wall time (ns) of the earliest queued timer, or None."""
        return self._ctx.timers.next_due()

    def firing(self) -> Iterator[tuple[str, str]]:
        """(rule, device) of every episode firing now; walks all state, so for start-up, not per reading."""
        for name, machine in self._machines.items():
            for device, episode in machine.episodes():
                if episode.phase == FIRING:
                    yield name, device

    # -- state -----------------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Pending and firing episodes and deadman last-seen times, as compact JSON for the journal."""
        return state.snapshot(self._machines)

    def restore(self, data: bytes, now_ns: int | None = None) -> list[Alert]:
        """Load a snapshot into this (fresh) engine without notifying anything that was firing. Returns the
        `resolved` alerts of episodes whose rule is gone or changed, so their outputs can be cleared."""
        return state.restore(self._machines, data, self._ctx.wall(now_ns))

    def replace_rules(self, rules: RuleSet, now_ns: int | None = None) -> list[Alert]:
        """Swap in new rules (SIGHUP). Rules with the same name and definition keep their state; the others
        start afresh. Returns `resolved` for the firing episodes of rules that are gone or changed."""
        now = self._ctx.wall(now_ns)
        machines, ended = state.carry_over(self._machines, rules, lambda rule: build_machine(rule, self._ctx), now)
        self._rules, self._machines = rules, machines
        self._devices.relayout(list(machines.values()))
        self._ctx.timers.drop_retired()
        return ended
