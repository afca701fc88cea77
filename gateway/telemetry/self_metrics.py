"""The gateway's own counters as a point of measurement `gateway`, written to the sinks every few seconds, so
users see the gateway's health in InfluxDB beside their devices (Telegraf's `internal` input does the same).

Field names are the Prometheus metric names without the `gateway_` prefix; every value is a float, so a field
never changes type in InfluxDB. The point goes through the journal like device readings: it is retried while a
sink is down, and it is not counted in `gateway_readings_stored` (that counts device readings only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gateway.config.schema import SELF_MEASUREMENT
from gateway.model import FieldValue, Reading
from gateway.runtime import Spawn, plain_thread

# The fields, in the order they are written; docker-compose's Grafana dashboards query these names.
FIELDS = (
    "messages_received",
    "messages_rejected",
    "readings_stored",
    "readings_duplicate",
    "messages_pending",
    "journal_bytes",
    "backpressure",
    "broker_connected",
)


def point(instance: str, values: dict[str, float], time_ns: int) -> Reading:
    fields: dict[str, FieldValue] = {name: float(values[name]) for name in FIELDS}
    reading_id = f"gateway:{instance}:{time_ns}"
    return Reading(instance, SELF_MEASUREMENT, time_ns, fields, {"instance": instance}, reading_id, None, True)


class SelfMetricsWriter:
    """A thread that, every `interval_s`, hands one point to `emit` (the journal writer)."""

    def __init__(
        self,
        instance: str,
        interval_s: float,
        values: Callable[[], dict[str, float]],
        emit: Callable[[Reading], None],
        spawn: Spawn = plain_thread,
    ) -> None:
        self._instance = instance
        self._interval_s = interval_s
        self._values = values
        self._emit = emit
        self._stop = threading.Event()
        self._thread = spawn("self-metrics", self._run)

    def start(self) -> None:
        if self._interval_s > 0:
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._emit(point(self._instance, self._values(), time.time_ns()))
