"""Alert rules, table-driven: each scenario feeds readings, sequence events, timer ticks, restarts and rule
reloads to an AlertEngine and expects exactly these transitions.

Times are seconds; a reading's wall time (deadman, repeats) is its device time unless a step says otherwise.
A transition is written (at, transition, rule, device, reading id, episode start).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from gateway.alerts import Alert, AlertEngine, SnapshotError, parse_rules
from gateway.alerts.held import ThresholdMachine
from gateway.alerts.timers import TimerQueue
from gateway.model import FieldValue, Reading

S = 1_000_000_000
Expected = tuple[float, str, str, str, str | None, float]


class Harness:
    def __init__(self, rules: list[dict[str, Any]], report_pending: bool) -> None:
        self.report_pending = report_pending
        self.engine = AlertEngine(parse_rules({"rules": rules}), clock=self._clock, report_pending=report_pending)
        self.wall = 0
        self.alerts: list[Alert] = []

    def _clock(self) -> int:
        return self.wall


class R(NamedTuple):
    """A reading."""

    device: str
    t: float
    fields: dict[str, FieldValue]
    id: str
    tags: dict[str, str] = {}
    wall: float | None = None

    def apply(self, h: Harness) -> None:
        h.wall = max(h.wall, int((self.t if self.wall is None else self.wall) * S))
        reading = Reading(self.device, "telemetry", int(self.t * S), self.fields, self.tags, self.id)
        h.alerts += h.engine.on_reading(reading, h.wall)


class Seq(NamedTuple):
    """A sequence event."""

    device: str
    kind: str
    t: float
    id: str

    def apply(self, h: Harness) -> None:
        h.wall = max(h.wall, int(self.t * S))
        h.alerts += h.engine.on_sequence_event(self.device, self.kind, self.id, int(self.t * S), value=1)


class Tick(NamedTuple):
    t: float

    def apply(self, h: Harness) -> None:
        h.wall = max(h.wall, int(self.t * S))
        h.alerts += h.engine.tick(h.wall)


class Restart(NamedTuple):
    """Snapshot, throw the engine away, restore a new one from the bytes (with the same rules)."""

    def apply(self, h: Harness) -> None:
        data = h.engine.snapshot()
        h.engine = AlertEngine(h.engine.rules, clock=h._clock, report_pending=h.report_pending)
        h.alerts += h.engine.restore(data, h.wall)


class Reload(NamedTuple):
    rules: list[dict[str, Any]]

    def apply(self, h: Harness) -> None:
        h.alerts += h.engine.replace_rules(parse_rules({"rules": self.rules}), h.wall)


def hot(**extra: Any) -> dict[str, Any]:
    return {"name": "hot", "kind": "threshold", "metric": "temp", "op": ">", "value": 90, **extra}


HYSTERESIS = {"clear": {"op": "<", "value": 85}}


def t(device: str, at: float, temp: FieldValue, rid: str, **kw: Any) -> R:
    return R(device, at, {"temp": temp}, rid, **kw)


SCENARIOS = [
    pytest.param(
        [hot(**HYSTERESIS)],
        [t("d", 0, 91, "a"), t("d", 1, 89, "b"), t("d", 2, 92, "c"), t("d", 3, 86, "d"), t("d", 4, 91, "e"),
         t("d", 5, 84, "f"), t("d", 6, 88, "g")],
        [(0, "firing", "hot", "d", "a", 0), (5, "resolved", "hot", "d", "f", 0)],
        id="flapping-with-hysteresis-is-one-episode",
    ),
    pytest.param(
        [hot()],
        [t("d", 0, 91, "a"), t("d", 1, 89, "b"), t("d", 2, 92, "c")],
        [(0, "firing", "hot", "d", "a", 0), (1, "resolved", "hot", "d", "b", 0), (2, "firing", "hot", "d", "c", 2)],
        id="flapping-without-hysteresis-is-an-episode-a-crossing",
    ),
    pytest.param(
        [hot(**{"for": "1m"})],
        [t("d", 0, 91, "a"), t("d", 30, 95, "b"), t("d", 50, 80, "c"), t("d", 70, 95, "d"), t("d", 100, 95, "e")],
        [],
        id="for-not-reached-gives-none",
    ),
    pytest.param(
        [hot(**{"for": "1m"})],
        [t("d", 0, 91, "a"), t("d", 30, 95, "b"), t("d", 60, 93, "c"), t("d", 90, 80, "d")],
        [(60, "firing", "hot", "d", "c", 0), (90, "resolved", "hot", "d", "d", 0)],
        id="for-reached-on-device-time",
    ),
    pytest.param(
        [hot(**{"for": "1m"})],
        [t("d", 0, 91, "a", wall=0), t("d", 60, 91, "b", wall=1)],
        [(60, "firing", "hot", "d", "b", 0)],
        id="for-ignores-arrival-time-of-a-buffered-burst",
    ),
    pytest.param(
        [hot(**{"for": "1m"})],
        [t("d", 0, 91, "a"), t("d", 50, 91, "b"), t("d", 30, 70, "late"), t("d", 60, 91, "c"),
         t("d", 55, 70, "late2"), t("d", 70, 70, "d")],
        [(60, "firing", "hot", "d", "c", 0), (70, "resolved", "hot", "d", "d", 0)],
        id="out-of-order-readings-change-nothing",
    ),
    pytest.param(
        [hot(**HYSTERESIS)],
        [t("d", 0, 91, "a"), t("d", 0, 91, "a"), t("d", 5, 80, "b"), t("d", 0, 91, "a"), t("d", 5, 80, "b")],
        [(0, "firing", "hot", "d", "a", 0), (5, "resolved", "hot", "d", "b", 0)],
        id="redelivered-reading-does-not-trigger-twice",
    ),
    pytest.param(
        [{"name": "fast", "kind": "rate", "metric": "temp", "max": 2, "per": "1m", "clear": 1}],
        [t("d", 0, 20, "a"), t("d", 60, 21, "b"), t("d", 120, 24, "c"), t("d", 150, 24.7, "d"),
         t("d", 180, 25, "e"), t("d", 240, 20, "f")],
        [(120, "firing", "fast", "d", "c", 120), (180, "resolved", "fast", "d", "e", 120)],
        id="rate-rising-with-hysteresis",
    ),
    pytest.param(
        [{"name": "drop", "kind": "rate", "metric": "temp", "max": 5, "per": "1m", "direction": "falling",
          "window": "1m"}],
        [t("d", 0, 50, "a"), t("d", 10, 40, "b"), t("d", 20, 52, "c"), t("d", 60, 42, "d"), t("d", 120, 47, "e")],
        [(60, "firing", "drop", "d", "d", 60), (120, "resolved", "drop", "d", "e", 60)],
        id="rate-falling-over-a-window-ignores-noise",
    ),
    pytest.param(
        [{"name": "hum", "kind": "range", "metric": "temp", "min": 40, "max": 80, "clear": {"min": 45, "max": 75}}],
        [t("d", 0, 50, "a"), t("d", 1, 85, "b"), t("d", 2, 78, "c"), t("d", 3, 74, "d"), t("d", 4, 30, "e"),
         t("d", 5, 42, "f"), t("d", 6, 46, "g")],
        [(1, "firing", "hum", "d", "b", 1), (3, "resolved", "hum", "d", "d", 1), (4, "firing", "hum", "d", "e", 4),
         (6, "resolved", "hum", "d", "g", 4)],
        id="range-with-clear-band",
    ),
    pytest.param(
        [hot(select={"devices": ["boiler-*", "tank-?"]})],
        [t("boiler-1", 0, 95, "a"), t("pump-1", 0, 95, "b"), t("tank-2", 0, 95, "c"), t("tank-12", 0, 95, "d")],
        [(0, "firing", "hot", "boiler-1", "a", 0), (0, "firing", "hot", "tank-2", "c", 0)],
        id="selector-device-globs",
    ),
    pytest.param(
        [hot(select={"tags": {"site": "a"}})],
        [t("d1", 0, 95, "a", tags={"site": "a"}), t("d2", 0, 95, "b", tags={"site": "b"}), t("d3", 0, 95, "c"),
         t("d2", 1, 95, "d", tags={"site": "a", "x": "y"})],
        [(0, "firing", "hot", "d1", "a", 0), (1, "firing", "hot", "d2", "d", 1)],
        id="selector-tags-checked-per-reading",
    ),
    pytest.param(
        [hot(**HYSTERESIS, keep_firing_for="1m")],
        [t("d", 0, 91, "a"), t("d", 10, 80, "b"), t("d", 40, 80, "c"), t("d", 50, 95, "d"), t("d", 60, 80, "e"),
         t("d", 100, 87, "f"), t("d", 120, 87, "g")],
        [(0, "firing", "hot", "d", "a", 0), (120, "resolved", "hot", "d", "g", 0)],
        id="keep-firing-for-restarts-after-a-breach",
    ),
    pytest.param(
        [hot(repeat_interval="1m")],
        [t("d", 0, 91, "a"), Tick(30), Tick(60), Tick(150), t("d", 160, 80, "b"), Tick(600)],
        [(0, "firing", "hot", "d", "a", 0), (60, "repeat", "hot", "d", "a", 0), (150, "repeat", "hot", "d", "a", 0),
         (160, "resolved", "hot", "d", "b", 0)],
        id="repeat-interval-on-the-wall-clock",
    ),
    pytest.param(
        [{"name": "silent", "kind": "deadman", "for": "5m"}],
        [R("d1", 0, {"x": 1}, "a"), R("d2", 0, {"x": 1}, "b"), R("d2", 200, {"x": 1}, "c"), Tick(299), Tick(300),
         Tick(400), R("d1", 450, {"x": 1}, "d"), Tick(499), Tick(500), Tick(2000)],
        [(300, "firing", "silent", "d1", None, 300), (450, "resolved", "silent", "d1", "d", 300),
         (500, "firing", "silent", "d2", None, 500), (2000, "firing", "silent", "d1", None, 750)],
        id="deadman-fires-and-resolves",
    ),
    pytest.param(
        [{"name": "no_temp", "kind": "deadman", "for": "1m", "metric": "temp"}],
        [t("d", 0, 20, "a"), R("d", 30, {"hum": 1}, "b"), Tick(59), Tick(60), t("d", 90, 20, "c")],
        [(60, "firing", "no_temp", "d", None, 60), (90, "resolved", "no_temp", "d", "c", 60)],
        id="deadman-of-one-metric",
    ),
    pytest.param(
        [{"name": "lost", "kind": "sequence", "events": ["gap"], "resolve_after": "5m"}],
        [Seq("d", "gap", 10, "a"), Seq("d", "reset", 20, "b"), Seq("d", "gap", 100, "c"), Tick(399), Tick(400),
         Seq("d", "gap", 500, "d")],
        [(10, "firing", "lost", "d", "a", 10), (400, "resolved", "lost", "d", None, 10),
         (500, "firing", "lost", "d", "d", 500)],
        id="sequence-gap-fires-and-resolves-after-quiet",
    ),
    pytest.param(
        [{"name": "reboot", "kind": "sequence", "events": ["reset"], "resolve_after": "0s"}],
        [Seq("d", "reset", 10, "a"), Seq("d", "reset", 10, "a")],
        [(10, "firing", "reboot", "d", "a", 10), (10, "resolved", "reboot", "d", "a", 10)],
        id="sequence-reset-point-event",
    ),
    pytest.param(
        [hot(**HYSTERESIS), {"name": "silent", "kind": "deadman", "for": "1m"}],
        [t("d", 0, 91, "a"), Tick(60), Restart(), Tick(100), t("d", 110, 92, "b"), t("d", 120, 80, "c"),
         t("d", 130, 95, "e")],
        [(0, "firing", "hot", "d", "a", 0), (60, "firing", "silent", "d", None, 60),
         (110, "resolved", "silent", "d", "b", 60), (120, "resolved", "hot", "d", "c", 0),
         (130, "firing", "hot", "d", "e", 130)],
        id="restore-from-snapshot-does-not-renotify",
    ),
    pytest.param(
        [hot(**{"for": "1m"})],
        [t("d", 0, 91, "a"), Restart(), t("d", 30, 91, "b"), t("d", 60, 91, "c")],
        [(60, "firing", "hot", "d", "c", 0)],
        id="restore-keeps-pending-for",
    ),
    pytest.param(
        [hot(), {"name": "cold", "kind": "threshold", "metric": "temp", "op": "<", "value": 0}],
        [t("d", 0, 95, "a"), t("e", 0, -5, "b"),
         Reload([hot(), {"name": "cold", "kind": "threshold", "metric": "temp", "op": "<", "value": -10}]),
         t("d", 10, 96, "c"), t("e", 10, -5, "d"), t("d", 20, 50, "e")],
        [(0, "firing", "hot", "d", "a", 0), (0, "firing", "cold", "e", "b", 0), (0, "resolved", "cold", "e", None, 0),
         (20, "resolved", "hot", "d", "e", 0)],
        id="replace-rules-keeps-unchanged-state",
    ),
    pytest.param(
        [hot(**HYSTERESIS), {"name": "silent", "kind": "deadman", "for": "1m"}],
        [t("d", 0, 95, "a"),
         Reload([{"name": "cold", "kind": "threshold", "metric": "temp", "op": "<", "value": 0},
                 {"name": "silent", "kind": "deadman", "for": "1m"}, hot(**HYSTERESIS)]),
         t("d", 20, 84, "c"), t("d", 30, -1, "e"), Tick(89), Tick(90)],
        [(0, "firing", "hot", "d", "a", 0), (20, "resolved", "hot", "d", "c", 0), (30, "firing", "cold", "d", "e", 30),
         (90, "firing", "silent", "d", None, 90)],
        id="replace-rules-reordered-and-added",
    ),
    pytest.param(
        [{"name": "fault", "kind": "threshold", "metric": "status", "op": "==", "value": "fault"}, hot()],
        [R("d", 0, {"status": "ok", "temp": "n/a"}, "a"), R("d", 1, {"status": "fault"}, "b"),
         R("d", 2, {"status": "ok"}, "c")],
        [(1, "firing", "fault", "d", "b", 1), (2, "resolved", "fault", "d", "c", 1)],
        id="string-values-compare-with-equality",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("rules", "steps", "expected"), SCENARIOS)
def test_scenario(rules: list[dict[str, Any]], steps: list[Any], expected: list[Expected]) -> None:
    h = Harness(rules, report_pending=False)
    for step in steps:
        step.apply(h)
    got = [(a.at_ns / S, a.transition, a.rule, a.device, a.reading_id, a.starts_at_ns / S) for a in h.alerts]
    assert got == expected


def test_pending_and_cancelled_are_reported_on_request() -> None:
    h = Harness([hot(**{"for": "1m"})], report_pending=True)
    for step in [t("d", 0, 91, "a"), t("d", 10, 80, "b"), t("d", 20, 91, "c"), t("d", 80, 91, "d")]:
        step.apply(h)
    assert [(a.transition, a.reading_id, a.state, a.notify) for a in h.alerts] == [
        ("pending", "a", "pending", False),
        ("cancelled", "b", "inactive", False),
        ("pending", "c", "pending", False),
        ("firing", "d", "firing", True),
    ]


def test_alert_carries_rule_and_reading() -> None:
    rule = hot(severity="critical", labels={"team": "heat"}, **HYSTERESIS)
    h = Harness([rule], report_pending=False)
    t("boiler", 5, 93.5, "r-7").apply(h)
    t("boiler", 9, 80, "r-8").apply(h)
    firing, resolved = h.alerts
    assert firing == Alert("hot", "boiler", "critical", {"team": "heat"}, "firing", 93.5, 90.0, "r-7", 5 * S, None,
                           5 * S, "threshold", "temp")  # fmt: skip
    assert (resolved.value, resolved.reading_id, resolved.ends_at_ns, resolved.state) == (80, "r-8", 9 * S, "resolved")


def test_counters() -> None:
    h = Harness([hot(**{"for": "1m"})], report_pending=False)
    for step in [t("d", 10, 91, "a"), t("d", 10, 91, "a"), t("d", 5, 91, "z"), t("d", 20, "x", "b")]:
        step.apply(h)
    stats = h.engine.stats
    assert (stats.stale, stats.non_numeric, h.engine.devices) == (2, 1, 1)


@pytest.mark.parametrize(
    ("rule", "counted"),
    [
        pytest.param(hot(), 1, id="threshold-ordering"),
        pytest.param(hot(op="==", value=1, clear={"op": "<", "value": 0.5}), 1, id="threshold-ordering-clear"),
        pytest.param(hot(op="==", value="on"), 0, id="threshold-equality-takes-strings"),
        pytest.param({"name": "hot", "kind": "range", "metric": "temp", "min": 40, "max": 80}, 1, id="range"),
        pytest.param({"name": "hot", "kind": "rate", "metric": "temp", "max": 2, "per": "1m"}, 1, id="rate"),
    ],
)
def test_a_string_where_a_rule_needs_a_number_is_counted_as_non_numeric(rule: dict[str, Any], counted: int) -> None:
    h = Harness([rule], report_pending=False)
    t("d", 1, "warm", "a").apply(h)
    assert (h.engine.stats.non_numeric, h.alerts) == (counted, [])


def test_a_type_error_that_is_not_a_string_value_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the string case is counted: a TypeError from a number is a bug, and it must show."""
    h = Harness([hot()], report_pending=False)

    def broken(*_args: object) -> None:
        raise TypeError("a bug")

    monkeypatch.setattr(ThresholdMachine, "on_value", broken)
    with pytest.raises(TypeError, match="a bug"):
        t("d", 1, 91, "a").apply(h)
    assert h.engine.stats.non_numeric == 0


def test_deadman_uses_one_heap_entry_per_device() -> None:
    h = Harness([{"name": "silent", "kind": "deadman", "for": "5m"}], report_pending=False)
    for second in range(0, 600, 10):
        for device in ("a", "b", "c"):
            R(device, second, {"x": 1}, f"{device}{second}").apply(h)
        Tick(second).apply(h)
    queue = h.engine._ctx.timers
    assert isinstance(queue, TimerQueue)
    assert len(queue) == 3
    assert h.alerts == []


def test_repeat_survives_restart_without_renotifying() -> None:
    h = Harness([hot(repeat_interval="10m")], report_pending=False)
    t("d", 0, 95, "a").apply(h)
    Tick(300).apply(h)
    Restart().apply(h)
    Tick(599).apply(h)
    Tick(600).apply(h)
    assert [(a.transition, a.at_ns // S) for a in h.alerts] == [("firing", 0), ("repeat", 600)]


def test_restore_resolves_episodes_of_changed_rules() -> None:
    h = Harness([hot()], report_pending=False)
    t("d", 0, 95, "a").apply(h)
    data = h.engine.snapshot()
    fresh = AlertEngine(parse_rules({"rules": [hot(value=99)]}))
    ended = fresh.restore(data, 50 * S)
    assert [(a.transition, a.rule, a.device, a.ends_at_ns) for a in ended] == [("resolved", "hot", "d", 50 * S)]
    assert fresh.on_reading(Reading("d", "m", 60 * S, {"temp": 95}, {}, "b"), 60 * S) == ()


def test_restart_gives_deadman_devices_a_fresh_grace_period() -> None:
    h = Harness([{"name": "silent", "kind": "deadman", "for": "5m"}], report_pending=False)
    R("d", 0, {"x": 1}, "a").apply(h)
    h.wall = 1000 * S  # the gateway was down from about 0 s to 1000 s
    Restart().apply(h)
    Tick(1299).apply(h)
    assert h.alerts == []
    Tick(1300).apply(h)
    assert [(a.transition, a.at_ns // S) for a in h.alerts] == [("firing", 1300)]


def test_corrupt_snapshot_is_refused() -> None:
    engine = AlertEngine(parse_rules({"rules": [hot()]}))
    for data in (b"", b"[]", b'{"version": 99}', b'{"version": 1, "rules": {}}'):
        with pytest.raises(SnapshotError):
            engine.restore(data, 0)


def test_unknown_sequence_kind_is_a_programming_error() -> None:
    engine = AlertEngine(parse_rules({"rules": []}))
    with pytest.raises(ValueError, match="unknown sequence event"):
        engine.on_sequence_event("d", "reboot", None, 0)
