"""Shared fixtures: real Mosquitto and VictoriaMetrics processes (tests/support/servers.py), and Ingestors built from
a config given as keyword sections (with the developer's own GATEWAY_* variables kept out).

Layout: unit/ (in process only), contract/ (one table of behaviour per implementation), integration/ (real
Mosquitto, VictoriaMetrics and gateway processes), sim/ (device_sim), deploy/ (compose, Dockerfile, demo),
support/ (the helpers). The `integration` marker is set per test or per file; nothing under unit/ may carry it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config.schema import GatewayConfig
from gateway.ingest.ingestor import Ingestor
from tests.support.servers import Mosquitto, VictoriaMetrics

UNIT = Path(__file__).resolve().parent / "unit"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything, so that every run checks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    misplaced = [
        item.nodeid for item in items if item.path.is_relative_to(UNIT) and item.get_closest_marker("integration")
    ]
    if misplaced:
        raise pytest.UsageError(f"integration tests under tests/unit/ (move them to tests/integration/): {misplaced}")


@pytest.fixture
def make_ingestor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ingestor]:
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)

    def make(**sections: Any) -> Ingestor:
        return Ingestor(GatewayConfig(sqlite={"path": tmp_path / "g.db"}, **sections))

    return make


@pytest.fixture
def ingestor(make_ingestor: Callable[..., Ingestor]) -> Ingestor:
    return make_ingestor()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A started private Mosquitto (persistence on) in ``tmp_path / "mosquitto"``."""
    with Mosquitto(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A started private VictoriaMetrics in ``tmp_path / "vm"``."""
    with VictoriaMetrics(tmp_path / "vm") as vm:
        yield vm
