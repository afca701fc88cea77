"""Deadman and sequence rules: alerts about what did not come, or about how it came. Both end by timers on the
wall clock, because what they wait for is the absence of readings, and device time only moves with readings.

deadman:  a device seen by the rule (any reading, or one with the rule's metric) and then silent for `for`
          fires; its next reading resolves it. The pair's state is the wall time of its last reading, or the
          firing Episode; one heap entry per (rule, device), pushed again lazily when it comes due early.
sequence: a gap, reset (reboot) or out-of-order event reported by sequence tracking fires; it resolves once
          `resolve_after` has passed without another such event (events in between extend the episode).
"""

from __future__ import annotations

from gateway.alerts.alert import Alert
from gateway.alerts.rules import DeadmanRule, SequenceRule
from gateway.alerts.runtime import FIRING, Context, Episode, Machine, Slot
from gateway.alerts.timers import DEADLINE

_NS_PER_S = 1e9


class DeadmanMachine(Machine):
    kind = "deadman"

    def __init__(self, rule: DeadmanRule, ctx: Context) -> None:
        super().__init__(rule, ctx)
        self.for_ns = rule.for_

    def seen(self) -> dict[str, int]:
        """Device -> wall time of its last reading, for the devices not firing."""
        return {device: state for device, state in self.ctx.table.states(self) if type(state) is int}

    def watch(self, device: str, seen_ns: int) -> None:
        """Restore: the device was last seen at `seen_ns` (already adjusted by the caller)."""
        slot = self.ctx.table.slot(device)
        pos = slot[0].positions.get(self)
        if pos is not None and not isinstance(slot[pos], Episode):
            slot[pos] = seen_ns
            self.ctx.timers.push(seen_ns + self.for_ns, DEADLINE, self, device)

    def on_seen(self, slot: Slot, pos: int, device: str, now_ns: int, reading_id: str) -> Alert | None:
        state = slot[pos]
        slot[pos] = now_ns
        if type(state) is int:
            return None  # the queued entry finds the new time when it comes due
        self.ctx.timers.push(now_ns + self.for_ns, DEADLINE, self, device)
        if state is None:
            return None
        silent_s = (now_ns - state.last_ns) / _NS_PER_S
        return self.alert("resolved", device, state, now_ns, silent_s, reading_id, now_ns)

    def on_deadline(self, device: str, token: object, now_ns: int) -> Alert | None:
        found = self.ctx.table.locate(self, device)
        if found is None:
            return None
        slot, pos = found
        last = slot[pos]
        if type(last) is not int:
            return None  # firing already: its next reading resolves it and re-arms
        due = last + self.for_ns
        if due > now_ns:  # it reported since this entry was pushed: wait for the new deadline
            self.ctx.timers.push(due, DEADLINE, self, device)
            return None
        episode = slot[pos] = Episode(FIRING, last, due, (now_ns - last) / _NS_PER_S, self.for_ns / _NS_PER_S, None)
        self.fired(device, episode, now_ns)
        return self.alert("firing", device, episode, now_ns)


class SequenceMachine(Machine):
    """Between episodes a pair's state is the device time of its last event."""

    kind = "sequence"

    def __init__(self, rule: SequenceRule, ctx: Context) -> None:
        super().__init__(rule, ctx)
        self.events = frozenset(rule.events)
        self.resolve_ns = rule.resolve_after

    def adopt(self, device: str, episode: Episode, now_ns: int) -> None:
        super().adopt(device, episode, now_ns)
        self.ctx.timers.push(episode.due_ns, DEADLINE, self, device, episode)

    def on_event(
        self,
        slot: Slot,
        pos: int,
        device: str,
        kind: str,
        reading_id: str | None,
        time_ns: int,
        value: float | None,
        now_ns: int | None,
    ) -> list[Alert]:
        if kind not in self.events:
            return []
        state = slot[pos]
        now = self.ctx.wall(now_ns)
        if isinstance(state, Episode):
            if time_ns <= state.last_ns:
                self.ctx.stats.stale += 1
                return []
            state.last_ns = time_ns
            state.due_ns = now + self.resolve_ns  # the queued entry moves itself on when it comes due
            return []
        if state is not None and time_ns <= state:
            self.ctx.stats.stale += 1
            return []
        episode = Episode(FIRING, time_ns, time_ns, value, None, reading_id)
        episode.due_ns = now + self.resolve_ns
        fired = self.alert("firing", device, episode, time_ns)
        if not self.resolve_ns:
            slot[pos] = time_ns
            return [fired, self.alert("resolved", device, episode, now, value, reading_id, now)]
        slot[pos] = episode
        self.fired(device, episode, now)
        self.ctx.timers.push(episode.due_ns, DEADLINE, self, device, episode)
        return [fired]

    def on_deadline(self, device: str, token: object, now_ns: int) -> Alert | None:
        found = self.ctx.table.locate(self, device)
        if found is None or found[0][found[1]] is not token:
            return None
        slot, pos = found
        episode = slot[pos]
        if episode.due_ns > now_ns:
            self.ctx.timers.push(episode.due_ns, DEADLINE, self, device, episode)
            return None
        slot[pos] = episode.last_ns
        return self.alert("resolved", device, episode, now_ns, episode.value, None, now_ns)
