"""The device table: per device one slot, `[plan, state of rule 1, state of rule 2, ...]`.

The plan lists the rules whose device globs match the device (computed on its first reading, shared by every
device that matches the same rules) with the slot position of each rule's state. A reading then costs one
dict lookup for the device and list indexing per rule, and the states of one device sit together in memory,
which matters more than the arithmetic once 100,000 devices no longer fit in the CPU caches.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gateway.alerts.held import HeldMachine
from gateway.alerts.runtime import Machine, Slot
from gateway.alerts.watches import DeadmanMachine, SequenceMachine


class Plan:
    __slots__ = ("deadman", "held", "positions", "sequence")

    def __init__(self, machines: Sequence[Machine]) -> None:
        self.positions: dict[Machine, int] = {m: i for i, m in enumerate(machines, 1)}
        self.held = tuple((m.metric or "", m, i) for m, i in self.positions.items() if isinstance(m, HeldMachine))
        self.deadman = tuple((m, i) for m, i in self.positions.items() if isinstance(m, DeadmanMachine))
        self.sequence = tuple((m, i) for m, i in self.positions.items() if isinstance(m, SequenceMachine))


def _device_matcher(globs: Sequence[str]) -> Callable[[str], object] | None:
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs)).match


class DeviceTable:
    def __init__(self, machines: Sequence[Machine]) -> None:
        self.slots: dict[str, Slot] = {}
        self._use(machines)

    def __len__(self) -> int:
        return len(self.slots)

    def _use(self, machines: Sequence[Machine]) -> None:
        self._matchers = [(m, _device_matcher(m.rule.select.devices)) for m in machines]
        self._plans: dict[tuple[Machine, ...], Plan] = {}

    def _plan(self, device: str) -> Plan:
        chosen = tuple(m for m, match in self._matchers if match is None or match(device))
        plan = self._plans.get(chosen)
        if plan is None:
            plan = self._plans[chosen] = Plan(chosen)
        return plan

    def slot(self, device: str) -> Slot:
        slot = self.slots.get(device)
        if slot is None:
            plan = self._plan(device)
            slot = self.slots[device] = [plan, *([None] * len(plan.positions))]
        return slot

    def locate(self, machine: Machine, device: str) -> tuple[Slot, int] | None:
        slot = self.slots.get(device)
        if slot is None:
            return None
        pos = slot[0].positions.get(machine)
        return None if pos is None else (slot, pos)

    def states(self, machine: Machine) -> Iterator[tuple[str, Any]]:
        for device, slot in self.slots.items():
            pos = slot[0].positions.get(machine)
            if pos is not None and slot[pos] is not None:
                yield device, slot[pos]

    def relayout(self, machines: Sequence[Machine]) -> None:
        """New rules: every device gets the plan of the new machines; a machine kept keeps its states."""
        self._use(machines)
        for device, old in self.slots.items():
            plan = self._plan(device)
            new: Slot = [plan, *([None] * len(plan.positions))]
            old_positions = old[0].positions
            for machine, pos in plan.positions.items():
                old_pos = old_positions.get(machine)
                if old_pos is not None:
                    new[pos] = old[old_pos]
            self.slots[device] = new
