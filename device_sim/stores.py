"""Read back what a gateway stored: its SQLite file, InfluxDB 2.x (Flux), or VictoriaMetrics (its InfluxDB write
API, read with /api/v1/export). Each reader yields `StoredReading`s, one per series and instant.

Only the wire-level facts are used (the SQLite schema in the README, the line-protocol data model), never the
gateway's code: verify must judge any gateway build from the outside.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import orjson

Stored = float | bool | str | int


class StoreError(RuntimeError):
    """The store could not be read."""


class StoredReading(NamedTuple):
    measurement: str
    device: str
    tags: dict[str, str]  # without `device`
    time_ns: int
    fields: dict[str, Stored]


class Store:
    """A store to read back. `readings` yields the readings of the given measurements and devices."""

    name = "store"
    precision_ns = 1  # the store keeps times to this resolution
    duplicated = 0  # samples stored more than once (VictoriaMetrics keeps them), counted by `readings`

    def readings(self, measurements: set[str], devices: set[str]) -> Iterator[StoredReading]:
        raise NotImplementedError


class SqliteStore(Store):
    """The gateway's SQLite sink: one row per field, booleans as 0/1."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def readings(self, measurements: set[str], devices: set[str]) -> Iterator[StoredReading]:
        path = self.path
        if not path.exists():
            raise StoreError(f"no SQLite file at {str(path)!r}")
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {str(path)!r}: {exc}") from None
        try:
            rows = conn.execute(
                "SELECT measurement, device, tags, field, time_ns, value FROM readings "
                "ORDER BY measurement, device, tags, time_ns"
            )
            current: StoredReading | None = None
            current_key: tuple[str, str, str, int] | None = None
            for measurement, device, tags, name, time_ns, value in rows:
                if measurement not in measurements or device not in devices:
                    continue
                key = (measurement, device, tags, time_ns)
                if key != current_key:
                    if current is not None:
                        yield current
                    current = StoredReading(measurement, device, orjson.loads(tags), time_ns, {})
                    current_key = key
                assert current is not None
                current.fields[name] = value
            if current is not None:
                yield current
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {str(path)!r}: {exc}") from None
        finally:
            conn.close()


class VictoriaMetricsStore(Store):
    """VictoriaMetrics fed through its InfluxDB write API: a series `<measurement>_<field>` per field, tags as
    labels, times in ms, booleans as 1/0, every sample kept (duplicates too)."""

    name = "victoriametrics"
    precision_ns = 1_000_000

    def __init__(self, url: str) -> None:
        self.url = url

    def readings(self, measurements: set[str], devices: set[str]) -> Iterator[StoredReading]:
        url = self.url
        _http(url, "/internal/force_flush")  # samples are searchable only after a flush (up to ~10 s otherwise)
        names = "|".join(sorted(measurements))
        params = {
            "match[]": '{__name__=~"(' + names + ')_.+"}',
            "start": "0",
            "end": str(int(time.time()) + 3 * 86400),  # the default end hides the current second
        }
        grouped: dict[tuple[str, str, tuple[tuple[str, str], ...], int], dict[str, Stored]] = {}
        seen: set[tuple[str, str, tuple[tuple[str, str], ...], int, str]] = set()
        self.duplicated = 0
        for line in _http(url, "/api/v1/export", params).splitlines():
            if not line.strip():
                continue
            row = orjson.loads(line)
            metric = {str(k): str(v) for k, v in row["metric"].items()}
            series = metric.pop("__name__", "")
            device = metric.pop("device", "")
            measurement = next((m for m in measurements if series.startswith(m + "_")), None)
            if measurement is None or device not in devices:
                continue
            name = series[len(measurement) + 1 :]
            tags = tuple(sorted(metric.items()))
            for ts, value in zip(row["timestamps"], row["values"], strict=True):
                key = (measurement, device, tags, int(ts) * 1_000_000)
                if (*key, name) in seen:
                    self.duplicated += 1
                seen.add((*key, name))
                grouped.setdefault(key, {})[name] = float(value)
        for (measurement, device, tags, time_ns), fields in grouped.items():
            yield StoredReading(measurement, device, dict(tags), time_ns, fields)


class InfluxStore(Store):
    """InfluxDB 2.x, read with Flux."""

    name = "influxdb"

    def __init__(self, url: str, org: str, bucket: str, token: str) -> None:
        self.url, self.org, self.bucket, self.token = url, org, bucket, token

    def readings(self, measurements: set[str], devices: set[str]) -> Iterator[StoredReading]:
        from influxdb_client.client.influxdb_client import InfluxDBClient  # noqa: PLC0415 - only InfluxDB needs it

        names = ", ".join(json.dumps(m) for m in sorted(measurements))
        flux = (
            f"from(bucket: {json.dumps(self.bucket)}) |> range(start: 1970-01-01T00:00:00Z, stop: 2262-01-01T00:00:00Z)"
            f" |> filter(fn: (r) => contains(value: r._measurement, set: [{names}]))"
        )
        grouped: dict[tuple[str, str, tuple[tuple[str, str], ...], int], dict[str, Stored]] = {}
        try:
            with InfluxDBClient(url=self.url, token=self.token, org=self.org, timeout=60_000) as client:
                for record in client.query_api().query_stream(flux, org=self.org):
                    values = record.values
                    device = values.get("device")
                    if device not in devices:
                        continue
                    tags = tuple(
                        sorted(
                            (k, str(v))
                            for k, v in values.items()
                            if not k.startswith("_") and k not in ("result", "table", "device")
                        )
                    )
                    key = (record.get_measurement(), device, tags, _ns(values["_time"]))
                    grouped.setdefault(key, {})[record.get_field()] = record.get_value()
        except Exception as exc:  # influxdb-client raises its own and urllib3's errors
            raise StoreError(f"InfluxDB query to {self.url} failed: {exc}") from None
        for (measurement, device, tags, time_ns), fields in grouped.items():
            yield StoredReading(measurement, device, dict(tags), time_ns, fields)


def http_store(url: str, kind: str, org: str, bucket: str, token: str) -> Store:
    """InfluxDB or VictoriaMetrics at `url`; kind "auto" asks /health which one answers."""
    if kind == "auto":
        try:
            body = _http(url, "/health")
        except StoreError:
            body = b""
        try:
            health = orjson.loads(body)
        except orjson.JSONDecodeError:
            health = None
        kind = "influxdb" if isinstance(health, dict) and health.get("name") == "influxdb" else "victoriametrics"
    if kind == "influxdb":
        return InfluxStore(url, org, bucket, token)
    return VictoriaMetricsStore(url)


def _ns(when: datetime) -> int:
    # datetime keeps microseconds; the simulator stamps milliseconds, so nothing is lost.
    return round(when.timestamp() * 1_000_000) * 1000


def _http(url: str, path: str, params: dict[str, str] | None = None) -> bytes:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}{path}{query}", timeout=60) as resp:
            body: bytes = resp.read()
            return body
    except (urllib.error.URLError, OSError) as exc:
        raise StoreError(f"GET {url}{path} failed: {exc}") from None
