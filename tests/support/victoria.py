"""A private single-node VictoriaMetrics (the InfluxDB write API) for the tests and benchmarks."""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.managed_server import ManagedServer, ServerError, find_binary

ALL_SERIES = '{__name__!=""}'


@dataclass
class Series:
    """One series from ``/api/v1/export``; ``metric`` includes ``__name__``; timestamps in ms."""

    metric: dict[str, str]
    values: list[float]
    timestamps: list[int]

    @property
    def name(self) -> str:
        return self.metric.get("__name__", "")

    @property
    def labels(self) -> dict[str, str]:
        """The labels without ``__name__``."""
        return {k: v for k, v in self.metric.items() if k != "__name__"}


class VictoriaMetrics(ManagedServer):
    """A private single-node VictoriaMetrics on 127.0.0.1:<free port>, data in ``workdir/vm``.

    Facts measured against the binary installed here (Debian's victoria-metrics, v1.79; it
    reports an empty version string) by writing with influxdb-client to ``/api/v2/write``
    (``InfluxDBClient(url=vm.url, token="x", org="o")``, SYNCHRONOUS write API) and exporting:

    Mapping of InfluxDB line protocol to series
      * ``telemetry,device=d1 temperature=1.5,ok=true`` becomes two series,
        ``telemetry_temperature{device="d1"} 1.5`` and ``telemetry_ok{device="d1"} 1``: one series
        per field, named ``<measurement>_<field>``, tags become labels. This holds even for a
        single field (``-influxSkipSingleField`` is off).
      * Bool fields: t/T/true/True/TRUE -> 1.0, f/F/false/False/FALSE -> 0.0.
      * Integer fields ``7i`` and unsigned ``9u`` -> 7.0 / 9.0 (everything is a float).
      * Values keep at most **12 significant decimal digits** (a storage property; also via
        /api/v1/import): -73.12715117751975 comes back as -73.1271511775 (measured max relative
        error 1e-12). Values with <= 12 significant digits, e.g. 21.37 or 0.1, round-trip exactly;
        compare arbitrary floats with ``pytest.approx(x, rel=1e-11)``.
      * String fields: parsed as a number if they look like one (``s="12.5"`` -> 12.5),
        otherwise stored as **0** (``status="online"`` -> 0). They are not dropped.
      * ``db`` label: ``/api/v2/write?bucket=b&org=o`` (what influxdb-client sends) adds **no**
        label at all - bucket and org are ignored. Only ``?db=name`` (the v1 ``/write`` API, or
        an explicit ``db`` query arg) adds the label ``db="name"``.
    Timestamps
      * Stored with millisecond precision. ``write_precision`` s/ms/us/ns are all honoured and
        converted; us/ns are truncated to the ms (``...123456`` us -> ``...123`` ms).
      * A line without timestamp gets the server's current time.
      * With ``-retentionPeriod=100y`` anything from 0 (1970) up to now+2 days is accepted
        (2024 timestamps included). Samples older than the retention or more than ~2 days in the
        future are **dropped silently**: the HTTP answer is still 204, only the VM log has a
        warning ("too small/too big timestamp").
    Duplicates
      * No deduplication (``-dedup.minScrapeInterval`` is not set): every written sample is kept
        and exported, including exact duplicates (same series, timestamp and value) and same
        timestamp with different values, also after a forced merge. ``values`` may therefore hold
        several entries with the same timestamp; counting samples counts duplicates. (PromQL
        queries return a single value per timestamp.)
    Visibility
      * Written samples sit in an in-memory buffer for up to ~10 s before a search sees them;
        ``GET /internal/force_flush`` makes everything written so far visible at once (~5 ms).
      * ``/api/v1/export`` defaults ``end`` to the current whole second, so a sample stamped with
        the current second is missing until the next second; ``export()`` here therefore passes
        ``end`` = now + 3 days. With that, write -> force_flush -> export sees the data at once.
      * Started with ``-search.disableCache`` and ``-search.latencyOffset=0s`` so that queries
        (``/api/v1/query``) neither serve stale cached results for back-filled data nor hide the
        last 30 s.
    Lifecycle
      * Start-up to a healthy ``/health`` takes ~0.05-0.1 s on an empty data dir; SIGTERM stop
        ~0.02 s. SIGTERM persists everything: data survive ``restart()``. ``restart(kill=True)``
        (SIGKILL) loses the samples of roughly the last 5 s *even after* ``force_flush()``, which
        only makes data searchable and does not write it to disk (measured: lost when killed 3 s
        after write+flush, kept after 6 s).
      * ``delete_all()`` removes every series; writing the same series afterwards works normally.
    """

    name = "victoria-metrics"
    ready_marker = b"starting http server"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.binary = find_binary("VICTORIA_METRICS_BIN", "victoria-metrics", "/usr/bin/victoria-metrics")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_path(self) -> Path:
        return self.workdir / "vm"

    @property
    def log_path(self) -> Path:
        return self.output_path

    def _command(self) -> list[str]:
        return [
            self.binary,
            f"-storageDataPath={self.data_path}",
            f"-httpListenAddr={self.host}:{self.port}",
            # Long retention so that old device timestamps (e.g. from 2024) are accepted.
            "-retentionPeriod=100y",
            "-search.disableCache",
            "-search.latencyOffset=0s",
        ]

    def _probe(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as resp:
                status: int = resp.status
        except (OSError, urllib.error.URLError):
            return False
        return status == 200

    # -- HTTP helpers -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, params: dict[str, str] | None = None) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        req = urllib.request.Request(f"{self.url}{path}{query}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=30.0) as resp:
                body: bytes = resp.read()
                return body
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise ServerError(f"{method} {path}{query} -> HTTP {err.code}: {detail}") from err
        except OSError as err:
            raise ServerError(f"{method} {path}{query} failed: {err}\n{self.log_tail(10)}") from err

    def force_flush(self) -> None:
        """Make every sample written so far visible to searches/exports."""
        self._request("GET", "/internal/force_flush")

    def export(self, match: str = ALL_SERIES) -> list[Series]:
        """All samples of the series matching ``match`` (a series selector), via /api/v1/export.

        Does not flush by itself; call ``force_flush()`` first (``wait_for_samples`` does).
        Series come in no particular order; within a series samples are sorted by timestamp.
        """
        params = {
            "match[]": match,
            "start": "0",
            # Default end is "now" rounded down to the second, which hides samples stamped within
            # the current second; VM accepts samples up to now+2d, so now+3d covers everything.
            "end": str(int(time.time()) + 3 * 86400),
        }
        series: list[Series] = []
        for line in self._request("GET", "/api/v1/export", params).splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            series.append(
                Series(
                    metric={str(k): str(v) for k, v in row["metric"].items()},
                    values=[math.nan if v is None else float(v) for v in row["values"]],
                    timestamps=[int(t) for t in row["timestamps"]],
                )
            )
        return series

    def count_samples(self, match: str = ALL_SERIES) -> int:
        """Number of stored samples (duplicates included) matching ``match``; no flush."""
        return sum(len(s.values) for s in self.export(match))

    def wait_for_samples(
        self,
        n: int,
        match: str = ALL_SERIES,
        timeout: float = 10.0,
        settle: float | None = 2.0,
        interval: float = 0.05,
    ) -> int:
        """Poll (force_flush + count) until at least ``n`` samples match; return the last count.

        Returns early when the count is non-zero but has not changed for ``settle`` seconds (so a
        test expecting n that only ever gets n-1 does not sit out the whole timeout; ``None``
        disables that), and gives up after ``timeout`` seconds. Never raises for a short count:
        the caller asserts on the returned value. Reaching ``n`` returns at once, so a count
        that would go on to overshoot ``n`` is only seen by a later call.
        """
        deadline = time.monotonic() + timeout
        last = -1
        last_change = time.monotonic()
        while True:
            self.force_flush()
            count = self.count_samples(match)
            now = time.monotonic()
            if count != last:
                last, last_change = count, now
            if count >= n or now >= deadline:
                return count
            if settle is not None and count > 0 and now - last_change >= settle:
                return count
            time.sleep(interval)

    def delete_all(self, match: str = ALL_SERIES) -> None:
        """Delete every series (or those matching ``match``), including not yet flushed samples."""
        self.force_flush()
        self._request("POST", "/api/v1/admin/tsdb/delete_series", {"match[]": match})
