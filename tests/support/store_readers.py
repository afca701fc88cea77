"""One reader per sink's store for the sink contract (tests/contract/): what the store holds, back as rows
``(device, tags, time_ms, field, value)``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import ClassVar, Protocol

import pytest

from gateway.config.schema import InfluxConfig, SqliteConfig
from gateway.sinks import Sink
from gateway.sinks.influx import InfluxSink
from gateway.sinks.process import ProcessSink, SinkSpec
from gateway.sinks.sqlite import SqliteSink, read_readings
from tests.support.servers import VictoriaMetrics, free_port

MEASUREMENT = "telemetry"
MS = 1_000_000  # ns


Tags = tuple[tuple[str, str], ...]
Row = tuple[str, Tags, int, str, float | str]  # (device, tags, time_ms, field, value)


def _value(value: object) -> float | str:
    """One value type for every store: numbers and booleans as floats (VM has nothing else), strings as is."""
    if isinstance(value, str):
        return value
    assert isinstance(value, int | float), f"unexpected stored value {value!r}"
    return float(value)


def _tags(tags: dict[str, str]) -> Tags:
    return tuple(sorted(tags.items()))


class Store(Protocol):
    sink: Sink
    stores_strings: ClassVar[bool]  # False: string fields exist in the store, but not their text
    keeps_duplicates: ClassVar[bool]  # True: the same series + timestamp written twice is stored twice

    def rows(self) -> list[Row]:
        """Everything the store holds, one row per stored value, duplicates included."""
        ...

    def value_count(self) -> int:
        """Stored values counted by the store itself, not through the reader's folding."""
        ...


class InfluxStore:
    stores_strings: ClassVar[bool] = False
    keeps_duplicates: ClassVar[bool] = True

    def __init__(self, vm: VictoriaMetrics, sink: Sink) -> None:
        self.vm = vm
        self.sink = sink

    @staticmethod
    def make_sink(config: InfluxConfig) -> Sink:
        return InfluxSink(config)

    @classmethod
    def open(cls, request: pytest.FixtureRequest, tmp_path: Path) -> InfluxStore:
        vm: VictoriaMetrics = request.getfixturevalue("victoria")
        return cls(vm, cls.make_sink(influx_config(vm.url)))

    @classmethod
    def unreachable(cls, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Sink, Repair]:
        port = free_port()  # nothing listens here until repair() starts a store on it
        sink = cls.make_sink(influx_config(f"http://127.0.0.1:{port}"))

        def repair() -> Store:
            vm = VictoriaMetrics(tmp_path / "vm-late", port=port)
            request.addfinalizer(vm.stop)
            vm.start()
            return cls(vm, sink)

        return sink, repair

    def rows(self) -> list[Row]:
        self.vm.force_flush()
        rows: list[Row] = []
        prefix = f"{MEASUREMENT}_"
        for series in self.vm.export():
            assert series.name.startswith(prefix), series.metric
            # VM unescapes only \\ \, \= and '\ ' in names and keeps the backslash of \" (InfluxDB drops it);
            # no-op until LineEncoder escapes '"' in field keys (see test_quotes_in_field_names_round_trip).
            field = series.name[len(prefix) :].replace('\\"', '"')
            labels = series.labels
            device = labels.pop("device")
            rows += [
                (device, _tags(labels), ts, field, value)
                for ts, value in zip(series.timestamps, series.values, strict=True)
            ]
        return rows

    def value_count(self) -> int:
        self.vm.force_flush()
        return self.vm.count_samples()


class InfluxProcessStore(InfluxStore):
    """The InfluxDB sink as `gateway run` builds it: in a child process (gateway/sinks/process.py)."""

    @staticmethod
    def make_sink(config: InfluxConfig) -> Sink:
        return influx_process_sink(config)


def influx_process_sink(config: InfluxConfig) -> ProcessSink:
    return ProcessSink("influx", SinkSpec("gateway.sinks.influx", "InfluxSink", (config,)))


class SqliteStore:
    stores_strings: ClassVar[bool] = True
    keeps_duplicates: ClassVar[bool] = False

    def __init__(self, path: Path, sink: SqliteSink) -> None:
        self.path = path
        self.sink = sink

    @classmethod
    def open(cls, request: pytest.FixtureRequest, tmp_path: Path) -> SqliteStore:
        path = tmp_path / "gateway.db"
        return cls(path, SqliteSink(SqliteConfig(path=path)))

    @classmethod
    def unreachable(cls, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Sink, Repair]:
        blocker = tmp_path / "data"
        blocker.write_text("a file where the database directory should be\n")
        path = blocker / "gateway.db"
        sink = SqliteSink(SqliteConfig(path=path))  # must not raise: the store may come back later

        def repair() -> Store:
            blocker.unlink()
            return cls(path, sink)

        return sink, repair

    def rows(self) -> list[Row]:
        rows: list[Row] = []
        for stored in read_readings(self.path):
            assert stored.measurement == MEASUREMENT
            ms, sub_ms = divmod(stored.time_ns, MS)
            assert sub_ms == 0, f"nanoseconds changed: {stored.time_ns}"  # the contract uses whole ms
            rows += [
                (stored.device, _tags(stored.tags), ms, field, _value(value)) for field, value in stored.fields.items()
            ]
        return rows

    def value_count(self) -> int:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            (count,) = conn.execute("SELECT count(*) FROM readings").fetchone()
        finally:
            conn.close()
        assert isinstance(count, int)
        return count


class Repair(Protocol):
    def __call__(self) -> Store: ...


def influx_config(url: str) -> InfluxConfig:
    return InfluxConfig(url=url, org="iot", bucket="telemetry", token="test-token", timeout_s=5.0)


StoreKind = type[InfluxStore] | type[InfluxProcessStore] | type[SqliteStore]
