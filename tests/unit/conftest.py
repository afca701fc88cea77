"""Fixtures for the unit tests of the config model: a YAML file writer, and no developer GATEWAY_* variables
(each tests/unit/test_config_*.py module asks for that one in its `pytestmark`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def no_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own GATEWAY_* variables must not leak into these tests (names are case-insensitive)."""
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "gateway.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write
