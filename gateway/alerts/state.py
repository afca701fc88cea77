"""The engine's state as bytes for the journal, and the carry-over of state when the rules are replaced.

A snapshot holds what a restart must not forget: pending and firing episodes (so a firing alert is neither
notified again nor forgotten, and its resolution still comes) and, per deadman rule, the devices it watches
with their last-seen wall time. It does not hold the last device time of idle pairs: after a restart the
first reading of each pair starts afresh (a redelivered reading is dropped by the dedup window before it gets
here), and a rate rule needs one reading to find its anchor again.

Deadman after a restart: a device is given until max(last seen, restart) + `for`. The gateway saw nothing
while it was down, and the broker is still delivering the backlog; judging silence from the old last-seen
time would fire for the whole fleet at once. The cost is that a device already silent before the restart is
reported up to `for` late. Firing deadman episodes are restored as firing and resolve on the next reading.

Format (orjson): {"version": 1, "rules": {name: [fingerprint, kind, severity, labels, metric]},
"episodes": {name: [[device, *Episode.FIELDS], ...]}, "seen": {name: {device: wall ns}}}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from gateway.alerts.alert import Alert
from gateway.alerts.rules import AnyRule, RuleSet, fingerprint
from gateway.alerts.runtime import FIRING, Episode, Machine
from gateway.alerts.watches import DeadmanMachine
from gateway.errors import SnapshotError

VERSION = 1


def snapshot(machines: Mapping[str, Machine]) -> bytes:
    rules: dict[str, list[object]] = {}
    episodes: dict[str, list[list[object]]] = {}
    seen: dict[str, dict[str, int]] = {}
    for name, machine in machines.items():
        rule = machine.rule
        rules[name] = [fingerprint(rule), rule.kind, rule.severity, rule.labels, machine.metric]
        rows = [[device, *episode.to_row()] for device, episode in machine.episodes()]
        if rows:
            episodes[name] = rows
        if isinstance(machine, DeadmanMachine):
            devices = machine.seen()
            if devices:
                seen[name] = devices
    return orjson.dumps({"version": VERSION, "rules": rules, "episodes": episodes, "seen": seen})


def restore(machines: Mapping[str, Machine], data: bytes, now_ns: int) -> list[Alert]:
    """Load `data` into fresh machines; returns `resolved` for firing episodes whose rule is gone or changed."""
    try:
        doc = orjson.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise SnapshotError(f"not an alert-state snapshot of version {VERSION}")
        saved_rules: dict[str, list[Any]] = doc["rules"]
        ended: list[Alert] = []
        for name, rows in doc["episodes"].items():
            machine = _same_rule(machines, name, saved_rules)
            for device, *fields in rows:
                episode = Episode.from_row(fields)
                if machine is not None:
                    machine.adopt(device, episode, now_ns)
                elif episode.phase == FIRING:
                    ended.append(_ended(name, saved_rules[name], device, episode, now_ns))
        for name, devices in doc["seen"].items():
            machine = _same_rule(machines, name, saved_rules)
            if isinstance(machine, DeadmanMachine):
                for device, seen_ns in devices.items():
                    machine.watch(device, max(seen_ns, now_ns))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"corrupt alert-state snapshot: {type(exc).__name__}: {exc}") from None
    return ended


def _same_rule(machines: Mapping[str, Machine], name: str, saved: dict[str, list[Any]]) -> Machine | None:
    machine = machines.get(name)
    if machine is None or fingerprint(machine.rule) != saved[name][0]:
        return None
    return machine


def _ended(name: str, saved: list[Any], device: str, episode: Episode, now_ns: int) -> Alert:
    _fingerprint, kind, severity, labels, metric = saved
    return Alert(
        name, device, severity, labels, "resolved", None, episode.threshold, None, episode.since_ns, now_ns, now_ns,
        kind, metric,
    )  # fmt: skip


def carry_over(
    old: Mapping[str, Machine], rules: RuleSet, build: Callable[[AnyRule], Machine], now_ns: int
) -> tuple[dict[str, Machine], list[Alert]]:
    """Machines for `rules`: an unchanged rule (same name, same definition) keeps its machine and so its state;
    the rest are built afresh. The machines left behind are retired, their firing episodes resolved."""
    machines: dict[str, Machine] = {}
    for rule in rules.rules:
        kept = old.get(rule.name)
        machines[rule.name] = kept if kept is not None and kept.rule == rule else build(rule)
    ended: list[Alert] = []
    for name, machine in old.items():
        if machines.get(name) is machine:
            continue
        machine.retired = True
        for device, episode in machine.episodes():
            if episode.phase == FIRING:
                ended.append(machine.alert("resolved", device, episode, now_ns, None, None, now_ns))
    return machines, ended
