"""Shared fixtures: real Mosquitto and VictoriaMetrics processes (see tests/servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Mosquitto, VictoriaMetrics


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
