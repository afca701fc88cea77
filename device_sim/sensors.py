"""Sensor models for one device: values that look like a real fleet's, and the anomalies injected into them.

Temperature is a random walk around a daily cycle (warmest at 15:00 UTC), humidity moves against it,
pressure wanders slowly, a battery only drains, an energy counter only grows, a binary state flips now and
then. Anomalies change what a sensor reports, not its underlying state: a spike adds `magnitude` for one
sample (or `duration_s`), a drift adds `magnitude` per second for `duration_s`, a stuck sensor repeats one
value for `duration_s`. Every random draw comes from the device's own `random.Random`, in a fixed order.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

from device_sim.fleetfile import (
    Anomaly,
    BatterySensor,
    BinarySensor,
    EnergySensor,
    HumiditySensor,
    PressureSensor,
    Sensor,
    TemperatureSensor,
)

Value = float | bool
_DAY_S = 86_400.0
_DAY_RAD = 2.0 * math.pi / _DAY_S
_PEAK_SHIFT = 2.0 * math.pi * 9.0 / 24.0  # sin peaks 6 h after this: at 15:00
_DECIMALS = {"temperature": 2, "humidity": 1, "pressure": 2}
_PULL = 0.02  # how strongly a random walk is drawn back to its mean each sample


class Episode(NamedTuple):
    """An anomaly that ran (or is running) on one sensor, in device-clock milliseconds since the epoch."""

    sensor: str
    kind: str
    start_ms: int
    end_ms: int | None  # the first sample after it; None while it runs


class _Model:
    """One sensor's underlying state; `advance` moves it to time t and returns the true value."""

    decimals = 2

    def __init__(self, spec: Sensor, rng: random.Random) -> None:
        self.spec = spec
        self.name = spec.name

    def advance(self, t_s: float, dt_s: float, rng: random.Random) -> Value:
        raise NotImplementedError


class _Walk(_Model):
    """A random walk around a device's own mean, drawn back to it; temperature and humidity add a day cycle."""

    def __init__(self, spec: TemperatureSensor | HumiditySensor | PressureSensor, rng: random.Random) -> None:
        super().__init__(spec, rng)
        self.mean = spec.mean + rng.uniform(-spec.spread, spec.spread)
        self.step = 2.0 * spec.noise
        self.amplitude = 0.0 if isinstance(spec, PressureSensor) else spec.daily_amplitude
        if isinstance(spec, HumiditySensor):
            self.amplitude = -self.amplitude  # damp nights, dry afternoons
        self.decimals = _DECIMALS[spec.kind]
        self.walk = 0.0

    def advance(self, t_s: float, dt_s: float, rng: random.Random) -> Value:
        self.walk += (rng.random() - 0.5) * self.step - self.walk * _PULL
        value = self.mean + self.walk
        if self.amplitude:
            value += self.amplitude * math.sin(_DAY_RAD * (t_s % _DAY_S) - _PEAK_SHIFT)
        return value


class _Humidity(_Walk):
    def advance(self, t_s: float, dt_s: float, rng: random.Random) -> Value:
        return min(100.0, max(0.0, super().advance(t_s, dt_s, rng)))


class _Battery(_Model):
    decimals = 1

    def __init__(self, spec: BatterySensor, rng: random.Random) -> None:
        super().__init__(spec, rng)
        self.level = rng.uniform(min(spec.start_min, spec.start_max), spec.start_max)
        self.drain = spec.drain_per_hour / 3600.0 * 2.0

    def advance(self, t_s: float, dt_s: float, rng: random.Random) -> Value:
        self.level = max(0.0, self.level - self.drain * dt_s * rng.random())
        return self.level


class _Energy(_Model):
    decimals = 3

    def __init__(self, spec: EnergySensor, rng: random.Random) -> None:
        super().__init__(spec, rng)
        self.total = rng.uniform(0.0, 5000.0)  # kWh on the meter before the run
        self.per_s = spec.power_w / 3.6e6 * 2.0

    def advance(self, t_s: float, dt_s: float, rng: random.Random) -> Value:
        self.total += self.per_s * dt_s * rng.random()
        return self.total


class _Binary(_Model):
    def __init__(self, spec: BinarySensor, rng: random.Random) -> None:
        super().__init__(spec, rng)
        self.state = rng.random() < 0.5
        self.flip = spec.flip_probability

    def advance(self, t_s: float, dt_s: float, rng: random.Random) -> Value:
        if rng.random() < self.flip:
            self.state = not self.state
        return self.state


def _model(spec: Sensor, rng: random.Random) -> _Model:
    if isinstance(spec, HumiditySensor):
        return _Humidity(spec, rng)
    if isinstance(spec, TemperatureSensor | PressureSensor):
        return _Walk(spec, rng)
    if isinstance(spec, BatterySensor):
        return _Battery(spec, rng)
    if isinstance(spec, EnergySensor):
        return _Energy(spec, rng)
    return _Binary(spec, rng)


class _Active:
    __slots__ = ("anomaly", "frozen", "samples", "start_ms", "until_ms")

    def __init__(self, anomaly: Anomaly, start_ms: int, frozen: Value) -> None:
        self.anomaly = anomaly
        self.start_ms = start_ms
        self.until_ms = start_ms + round(anomaly.duration_s * 1000)
        self.frozen = frozen
        self.samples = 0


class DeviceSensors:
    """Every sensor of one device. `sample(t_ms)` gives the values reported at device time t_ms."""

    def __init__(self, specs: list[Sensor], anomalies: list[Anomaly], rng: random.Random) -> None:
        self._models = [_model(spec, rng) for spec in specs]
        self._anomalies = {spec.name: [a for a in anomalies if a.sensor == spec.name] for spec in specs}
        self._quiet = all(not a for a in self._anomalies.values())
        self._active: dict[str, _Active] = {}
        self._last_ms: int | None = None
        self.episodes: list[Episode] = []  # finished and running, in start order

    @property
    def names(self) -> list[str]:
        return [m.name for m in self._models]

    def sample(self, t_ms: int, rng: random.Random) -> dict[str, Value]:
        dt_s = 1.0 if self._last_ms is None else max(0.0, (t_ms - self._last_ms) / 1000.0)
        self._last_ms = t_ms
        t_s = t_ms / 1000.0
        values: dict[str, Value] = {}
        for model in self._models:
            value = model.advance(t_s, dt_s, rng)
            if not self._quiet:
                value = self._apply(model.name, value, t_ms, rng)
            values[model.name] = value if value.__class__ is bool else round(value, model.decimals)
        return values

    def _apply(self, name: str, true: Value, t_ms: int, rng: random.Random) -> Value:
        active = self._active.get(name)
        if active is not None and _over(active, t_ms):
            self._end(name, active, t_ms)
            active = None
        if active is None:
            for anomaly in self._anomalies[name]:
                if rng.random() < anomaly.rate:
                    active = self._active[name] = _Active(anomaly, t_ms, true)
                    self.episodes.append(Episode(name, anomaly.kind, t_ms, None))
                    break
        if active is None:
            return true
        active.samples += 1
        anomaly = active.anomaly
        if anomaly.kind == "stuck" or isinstance(true, bool):
            return active.frozen
        if anomaly.kind == "spike":
            return true + anomaly.magnitude
        return true + anomaly.magnitude * (t_ms - active.start_ms) / 1000.0

    def _end(self, name: str, active: _Active, t_ms: int) -> None:
        del self._active[name]
        for i in range(len(self.episodes) - 1, -1, -1):
            episode = self.episodes[i]
            if episode.sensor == name and episode.end_ms is None:
                self.episodes[i] = episode._replace(end_ms=t_ms)
                return


def _over(active: _Active, t_ms: int) -> bool:
    if active.anomaly.kind == "spike" and active.anomaly.duration_s == 0:
        return active.samples >= 1
    return t_ms >= active.until_ms
