"""The outbox as a sink reads it: chunks of readings after its cursor, on a connection of its own."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import orjson

from gateway.journal.chunks import decode_chunk, decode_readings
from gateway.model import Reading


class OutboxChunk(NamedTuple):
    seq: int
    readings: list[Reading]


class OutboxReader:
    """A sink's own read connection: WAL lets it read while the journal thread writes."""

    def __init__(self, path: Path, on_damaged: Callable[[int, int | None, int], None] = lambda *_: None) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._on_damaged = on_damaged

    def chunks_after(self, seq: int, max_readings: int) -> list[OutboxChunk]:
        """Chunks after `seq`, in order, until about `max_readings` readings (at least one chunk)."""
        chunks: list[OutboxChunk] = []
        count = 0
        for chunk_seq, blob in self._conn.execute(
            "SELECT seq, readings FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, max_readings)
        ):
            try:
                readings = decode_chunk(blob)
            except (orjson.JSONDecodeError, TypeError, ValueError):
                readings = self._salvage(chunk_seq, blob)
            if chunks and count + len(readings) > max_readings:
                break
            chunks.append(OutboxChunk(chunk_seq, readings))
            count += len(readings)
        return chunks

    def _salvage(self, seq: int, blob: bytes) -> list[Reading]:
        readings, _whole = decode_readings(blob)
        row = self._conn.execute("SELECT readings FROM outbox_sizes WHERE seq = ?", (seq,)).fetchone()
        self._on_damaged(seq, None if row is None else int(row[0]), len(readings))
        return readings

    def close(self) -> None:
        self._conn.close()
