"""Sinks store batches of readings. Each decides which of its errors are worth retrying."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.model import Reading


class Sink(Protocol):
    """Every sink passes tests/test_sink_contract.py."""

    name: str

    def write(self, readings: Sequence[Reading]) -> None:
        """Store all of `readings` or raise RetryableSinkError / PermanentSinkError. Must be idempotent:
        writing the same reading twice leaves one copy (same series and timestamp overwrite)."""

    def close(self) -> None: ...
