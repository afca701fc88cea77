"""The store a contract test runs against: one parameter a sink (influx starts VictoriaMetrics: integration)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.store_readers import InfluxProcessStore, InfluxStore, SqliteStore, Store, StoreKind


@pytest.fixture(
    params=[
        pytest.param(InfluxStore, id="influx", marks=pytest.mark.integration),  # starts VictoriaMetrics
        pytest.param(InfluxProcessStore, id="influx-process", marks=pytest.mark.integration),
        pytest.param(SqliteStore, id="sqlite"),
    ]
)
def kind(request: pytest.FixtureRequest) -> StoreKind:
    param: StoreKind = request.param
    return param


@pytest.fixture
def store(kind: StoreKind, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = kind.open(request, tmp_path)
    yield opened
    opened.sink.close()
