"""The value the engine emits on every transition of a (rule, device) pair."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, NamedTuple

from gateway.model import FieldValue

Transition = Literal["pending", "cancelled", "firing", "repeat", "resolved"]
NOTIFYING: frozenset[str] = frozenset({"firing", "repeat", "resolved"})


class Alert(NamedTuple):
    """One transition. `firing`, `repeat` and `resolved` are notifications; `pending` and `cancelled` (a pending
    condition that stopped holding before `for` elapsed) are only reported when the engine is asked to."""

    rule: str
    device: str
    severity: str
    labels: Mapping[str, str]
    transition: Transition
    value: FieldValue | None  # the metric's value (rate: change per `per`; deadman: seconds of silence)
    threshold: float | str | None  # the bound that was crossed (deadman: its duration in seconds)
    reading_id: str | None  # the reading (or sequence event) that caused the transition; None for timers
    starts_at_ns: int  # when the episode began: the first reading that met the condition, or the deadman deadline
    ends_at_ns: int | None  # set on `resolved`
    at_ns: int  # when this transition happened: device time for readings, wall clock for timers
    kind: str  # the rule's kind
    metric: str | None = None

    @property
    def notify(self) -> bool:
        return self.transition in NOTIFYING

    @property
    def state(self) -> str:
        """The state entered: pending, firing, resolved, or inactive (after `cancelled`)."""
        if self.transition == "repeat":
            return "firing"
        if self.transition == "cancelled":
            return "inactive"
        return self.transition
