"""The alerts a correct gateway must fire for a simulated fleet: the manifest's last, separate part.

The rules are those of `config/rules.sim.yaml` (tests/sim/test_sim_alerts.py checks that the gateway's own engine,
given the manifest's readings, fires exactly these episodes); they are evaluated over each device's expected
readings in the order the device sends them, as the gateway sees them:

* `temperature_high` (threshold, temperature > 45, clears < 40): temperature spikes and drifts;
* `pressure_out_of_range` (range, pressure outside [980, 1045]): pressure drifts and spikes;
* `battery_low` (threshold, battery < 15, clears > 20): batteries that drain that far;
* `device_rebooted` (sequence, reset): a reboot, seen at the first reading after it (native: the only format
  carrying `seq`); the alert resolves 5 minutes (wall clock) after the last reset, so reboots closer together
  than that make one episode, and its end is left open here;
* `device_silent` (deadman, 30s): a gap of 30 s or more between two readings (silence, reboot). Deadman
  timers run on the gateway's wall clock, so its times are approximate: the gap's start + 30 s, and the
  reading that ends the gap.

A stuck value fires nothing: no rule kind watches for a value that stops changing. Rules match field
names exactly, so Tasmota's `BME280_Temperature` is not `temperature`. As in the gateway's engine, a
reading that is not newer (device time) than the last one a rule evaluated for the device changes nothing.
Readings stored at the receive time (zigbee2mqtt, esphome) give approximate times too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from device_sim.manifest import ExpectedAlert, ExpectedReading, FieldValue
from device_sim.sensors import Episode

DEADMAN_NS = 30 * 1_000_000_000
REBOOT_RESOLVE_NS = 300 * 1_000_000_000  # the sequence rule's resolve_after (default 5m)


class _Rule(NamedTuple):
    name: str
    metric: str
    fires: Callable[[float], bool]
    clears: Callable[[float], bool]


RULES = (
    _Rule("temperature_high", "temperature", lambda v: v > 45, lambda v: v < 40),
    _Rule("pressure_out_of_range", "pressure", lambda v: v < 980 or v > 1045, lambda v: 980 <= v <= 1045),
    _Rule("battery_low", "battery", lambda v: v < 15, lambda v: v > 20),
)


class AlertTracker:
    """One device's rule states; feed it the device's valid readings in sending order."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._firing: dict[str, tuple[int, str]] = {}  # rule -> (starts_at_ns, cause)
        self._last_ns: int | None = None
        self._rebooted = False
        self._last_reset_ns: int | None = None
        self._evaluated: dict[str, int] = {}  # rule -> device time of the last reading it evaluated
        self.alerts: list[ExpectedAlert] = []

    def rebooted(self) -> None:
        self._rebooted = True

    def observe(self, reading: ExpectedReading, episodes: list[Episode], carries_seq: bool) -> None:
        t = reading.time_ns
        if self._last_ns is not None and t - self._last_ns >= DEADMAN_NS:
            cause = "reboot" if self._rebooted else "silence"
            self._add("device_silent", None, cause, self._last_ns + DEADMAN_NS, t)
        if self._rebooted and carries_seq:
            if self._last_reset_ns is None or t - self._last_reset_ns > REBOOT_RESOLVE_NS:
                self._add("device_rebooted", None, "reboot", t, None)
            self._last_reset_ns = t
        self._rebooted = False
        self._last_ns = max(t, self._last_ns or t)
        for rule in RULES:
            value = _number(reading.fields.get(rule.metric))
            if value is None:
                continue
            # Like the gateway's engine: a reading not newer than the last one evaluated (it came out of order)
            # changes nothing.
            if t <= self._evaluated.get(rule.name, t - 1):
                continue
            self._evaluated[rule.name] = t
            firing = self._firing.get(rule.name)
            if firing is None and rule.fires(value):
                self._firing[rule.name] = (t, _cause(rule.metric, t, episodes))
            elif firing is not None and rule.clears(value):
                del self._firing[rule.name]
                self._add(rule.name, rule.metric, firing[1], firing[0], t)

    def finish(self) -> list[ExpectedAlert]:
        """Every episode, in the order they started; still firing ones end with None."""
        for name, (start, cause) in self._firing.items():
            metric = next(r.metric for r in RULES if r.name == name)
            self._add(name, metric, cause, start, None)
        self._firing.clear()
        return sorted(self.alerts, key=lambda a: (a.starts_at_ns, a.rule))

    def _add(self, rule: str, metric: str | None, cause: str, start: int, end: int | None) -> None:
        self.alerts.append(ExpectedAlert(rule, self.device, metric, cause, start, end))


def _number(value: FieldValue | None) -> float | None:
    return value if isinstance(value, float) else None


def _cause(metric: str, t_ns: int, episodes: list[Episode]) -> str:
    t_ms = t_ns // 1_000_000
    for episode in episodes:
        if episode.sensor == metric and episode.start_ms <= t_ms and (episode.end_ms is None or t_ms < episode.end_ms):
            return episode.kind
    return "values"  # the sensor's own course, e.g. a battery draining
