"""Plausible sensor values for one device: slow random walks rather than noise, so plots look real."""

from __future__ import annotations

import random

Metric = float | int | bool


class DeviceSignals:
    """The metric state of one simulated device; `step` advances it by one reading."""

    __slots__ = ("_battery", "_humidity", "_relay", "_temperature")

    def __init__(self, rng: random.Random) -> None:
        self._temperature = 20.0 + rng.uniform(-3.0, 3.0)
        self._humidity = rng.uniform(35.0, 65.0)
        self._battery = 100.0
        self._relay = rng.random() < 0.5

    def step(self, rng: random.Random) -> dict[str, Metric]:
        # Uniform steps are cheaper than gauss and look just as real; the pull back towards 20 degrees
        # keeps long runs from wandering off to absurd values.
        self._temperature += (rng.random() - 0.5) * 0.5 + (20.0 - self._temperature) * 0.02
        self._humidity = min(70.0, max(30.0, self._humidity + (rng.random() - 0.5) * 1.5))
        self._battery = max(0.0, self._battery - rng.random() * 0.02)
        if rng.random() < 0.05:
            self._relay = not self._relay
        return {
            "temperature": round(self._temperature, 2),
            # A whole-number percentage goes out as a JSON integer: the gateway must still store a float.
            "humidity": round(self._humidity),
            "battery": round(self._battery, 2),
            "relay": self._relay,
        }
