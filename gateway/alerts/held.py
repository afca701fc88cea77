"""Threshold, range and rate rules: conditions over a metric that must hold `for` a while, on device time.

Per (rule, device):  inactive --breach--> pending --breach, `for` elapsed--> firing --clear--> resolved (inactive)
                                          pending --no breach--> inactive (cancelled, no notification)
With `for: 0s` a breach fires at once. While firing, a reading that meets neither the firing nor the clear
condition (the hysteresis band) changes nothing. With `keep_firing_for`, the alert resolves at the first
reading at least that long after the clear condition first held, unless a breach came in between.

A reading whose device time is not after the last one this pair evaluated (a redelivery, or a reading that
arrived out of order) changes nothing and is counted in `stats.stale`: `for` measures how long a condition
held on the device's own clock, and a late reading cannot tell whether it held in between.
"""

from __future__ import annotations

from gateway.alerts import conditions
from gateway.alerts.alert import Alert
from gateway.alerts.rules import RangeRule, RateRule, ThresholdRule
from gateway.alerts.runtime import FIRING, PENDING, Context, Episode, Machine, Slot
from gateway.model import FieldValue


class HeldMachine(Machine):
    """Between episodes a pair's state is the device time of its last evaluated reading (rate: a tuple)."""

    breach: conditions.Predicate  # the firing condition, set by each kind
    clear: conditions.Predicate  # the clear condition
    needs_number = True  # a string value is not evaluated but counted (stats.non_numeric)

    def __init__(self, rule: ThresholdRule | RangeRule | RateRule, ctx: Context) -> None:
        super().__init__(rule, ctx)
        self.for_ns = rule.for_
        self.keep_ns = rule.keep_firing_for

    def threshold_of(self, value: FieldValue) -> float | str | None:
        raise NotImplementedError

    def on_value(
        self, slot: Slot, pos: int, device: str, value: FieldValue, time_ns: int, reading_id: str, now_ns: int | None
    ) -> Alert | None:
        state = slot[pos]
        if type(state) is int:
            if time_ns <= state:
                self.ctx.stats.stale += 1
                return None
        elif state is not None:
            if time_ns <= state.last_ns:
                self.ctx.stats.stale += 1
                return None
            state.last_ns = time_ns
            return self.step(slot, pos, device, state, value, time_ns, reading_id, time_ns, now_ns)
        if not self.breach(value):
            slot[pos] = time_ns
            return None
        return self.start(slot, pos, device, value, time_ns, reading_id, now_ns)

    def start(
        self, slot: Slot, pos: int, device: str, value: FieldValue, time_ns: int, reading_id: str, now_ns: int | None
    ) -> Alert | None:
        """The condition began to hold: pending, or firing at once without `for`."""
        phase = PENDING if self.for_ns else FIRING
        episode = slot[pos] = Episode(phase, time_ns, time_ns, value, self.threshold_of(value), reading_id)
        if phase == FIRING:
            self.fired(device, episode, now_ns)
            return self.alert("firing", device, episode, time_ns)
        return self.alert("pending", device, episode, time_ns) if self.ctx.report_pending else None

    def step(
        self,
        slot: Slot,
        pos: int,
        device: str,
        episode: Episode,
        value: FieldValue,
        time_ns: int,
        reading_id: str,
        rest: int | tuple[int, FieldValue],
        now_ns: int | None,
    ) -> Alert | None:
        """A reading during an episode; `rest` is the pair's state once the episode ends."""
        if episode.phase == PENDING:
            if self.breach(value):
                if time_ns - episode.since_ns < self.for_ns:
                    return None
                episode.phase = FIRING
                episode.value, episode.threshold, episode.reading_id = value, self.threshold_of(value), reading_id
                self.fired(device, episode, now_ns)
                return self.alert("firing", device, episode, time_ns)
            slot[pos] = rest
            if self.ctx.report_pending:
                return self.alert("cancelled", device, episode, time_ns, value, reading_id, time_ns)
            return None
        if self.breach(value):
            episode.clear_since_ns = None
            return None
        if episode.clear_since_ns is None:
            if not self.clear(value):
                return None  # inside the hysteresis band
            if self.keep_ns:
                episode.clear_since_ns = time_ns
                return None
        elif time_ns - episode.clear_since_ns < self.keep_ns:
            return None
        slot[pos] = rest
        return self.alert("resolved", device, episode, time_ns, value, reading_id, time_ns)


class ThresholdMachine(HeldMachine):
    kind = "threshold"

    def __init__(self, rule: ThresholdRule, ctx: Context) -> None:
        super().__init__(rule, ctx)
        self._threshold = rule.value
        self.breach = conditions.comparison(rule.op, rule.value)
        clear = rule.clear
        self.clear = conditions.negation(self.breach) if clear is None else conditions.comparison(clear.op, clear.value)
        # == and != take strings too; an ordering (of the firing or the clear condition) needs a number.
        self.needs_number = rule.op in conditions.ORDERING_OPS or (
            clear is not None and clear.op in conditions.ORDERING_OPS
        )

    def threshold_of(self, value: FieldValue) -> float | str | None:
        return self._threshold


class RangeMachine(HeldMachine):
    kind = "range"

    def __init__(self, rule: RangeRule, ctx: Context) -> None:
        super().__init__(rule, ctx)
        self._min, self._max = rule.min, rule.max
        self.breach = conditions.outside(rule.min, rule.max)
        self.clear = conditions.inside(*rule.clear_band)

    def threshold_of(self, value: FieldValue) -> float | str | None:
        low = self._min
        return low if low is not None and value < low else self._max  # type: ignore[operator]


class RateMachine(HeldMachine):
    """The rate is the change between two readings at least `window` apart, scaled to `per`."""

    kind = "rate"

    def __init__(self, rule: RateRule, ctx: Context) -> None:
        super().__init__(rule, ctx)
        self._max = rule.max
        self._per = rule.per
        self._window = rule.window
        bound = rule.max
        back = rule.max if rule.clear is None else rule.clear
        if rule.direction == "rising":
            self.breach = lambda rate: rate > bound
            self.clear = lambda rate: rate <= back
        elif rule.direction == "falling":
            self.breach = lambda rate: rate < -bound
            self.clear = lambda rate: rate >= -back
        else:
            self.breach = lambda rate: abs(rate) > bound
            self.clear = lambda rate: abs(rate) <= back

    def threshold_of(self, value: FieldValue) -> float | str | None:
        return self._max

    def on_value(
        self, slot: Slot, pos: int, device: str, value: FieldValue, time_ns: int, reading_id: str, now_ns: int | None
    ) -> Alert | None:
        state = slot[pos]
        if type(state) is tuple:
            anchor_ns, anchor = state
            if time_ns <= anchor_ns:
                self.ctx.stats.stale += 1
                return None
            span = time_ns - anchor_ns
            if span < self._window:
                return None
            rate = (value - anchor) * self._per / span
            if not self.breach(rate):
                slot[pos] = (time_ns, value)
                return None
            alert = self.start(slot, pos, device, rate, time_ns, reading_id, now_ns)
            slot[pos].anchor = value
            return alert
        if state is None:
            slot[pos] = (time_ns, value + 0)  # type: ignore[operator]  # a number (the engine checks); a bool as 0 or 1
            return None
        if time_ns <= state.last_ns:
            self.ctx.stats.stale += 1
            return None
        span = time_ns - state.last_ns
        if span < self._window:
            return None
        rate = (value - state.anchor) * self._per / span
        state.last_ns, state.anchor = time_ns, value
        return self.step(slot, pos, device, state, rate, time_ns, reading_id, (time_ns, value), now_ns)
