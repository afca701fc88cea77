"""SQLite sink, the embedded default: one row per field, idempotent on (series, field, time).

Schema (see README "SQLite schema"):
    readings(measurement, device, tags, field, time_ns, value, reading_id)
    PRIMARY KEY (measurement, device, tags, field, time_ns)
`tags` is the canonical JSON of the reading's tags (keys sorted); `value` is REAL, INTEGER (booleans 0/1) or TEXT.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from gateway.config.schema import SqliteConfig
from gateway.errors import PermanentSinkError, RetryableSinkError
from gateway.model import Reading
from gateway.sqlitedb import open_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    measurement TEXT NOT NULL,
    device      TEXT NOT NULL,
    tags        TEXT NOT NULL,
    field       TEXT NOT NULL,
    time_ns     INTEGER NOT NULL,
    value       ANY,
    reading_id  TEXT NOT NULL,
    PRIMARY KEY (measurement, device, tags, field, time_ns)
) WITHOUT ROWID, STRICT;
CREATE INDEX IF NOT EXISTS readings_by_time ON readings (time_ns);
"""

_INSERT = "INSERT OR REPLACE INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)"


def connect(path: Path) -> sqlite3.Connection:
    return open_wal(path, SCHEMA)


class SqliteSink:
    name = "sqlite"

    def __init__(self, config: SqliteConfig) -> None:
        self._path = config.path
        self._conn: sqlite3.Connection | None = None
        # A database that cannot be opened (its directory is a file, is read-only, is not mounted yet) is an
        # unreachable store, not bad data: like the InfluxDB sink, write() raises RetryableSinkError and
        # tries again on every retry, so the batch stays unacknowledged instead of being dead-lettered.
        with contextlib.suppress(RetryableSinkError):
            self._connection()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._conn = connect(self._path)
            except (OSError, sqlite3.Error) as exc:
                raise RetryableSinkError(f"sqlite: cannot open {str(self._path)!r}: {exc}") from None
        return self._conn

    def write(self, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        conn = self._connection()
        rows = [
            (r.measurement, r.device, _tags_json(r.tags), name, r.time_ns, value, r.reading_id)
            for r in readings
            for name, value in r.fields.items()
        ]
        try:
            conn.execute("BEGIN")
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # locked, disk full, I/O error: may pass
            self._rollback()
            raise RetryableSinkError(f"sqlite: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self._rollback()
            raise PermanentSinkError(f"sqlite: {exc}") from None

    def _rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _tags_json(tags: dict[str, str]) -> str:
    return orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode() if tags else "{}"


class StoredReading(NamedTuple):
    measurement: str
    device: str
    tags: dict[str, str]
    time_ns: int
    fields: dict[str, float | int | str]  # booleans come back as INTEGER 0/1
    reading_id: str


def select_readings(
    conn: sqlite3.Connection, where_column: str, value: str | None, order_by: str
) -> Iterator[StoredReading]:
    """Rows folded back into readings, one per series and instant; only those whose `where_column` is `value`
    unless it is None. `order_by` must keep the rows of one reading adjacent."""
    query = "SELECT measurement, device, tags, field, time_ns, value, reading_id FROM readings"
    params: tuple[str, ...] = ()
    if value is not None:
        query += f" WHERE {where_column} = ?"
        params = (value,)
    return _fold_rows(conn.execute(f"{query} ORDER BY {order_by}", params))


def _fold_rows(rows: Iterable[tuple[Any, ...]]) -> Iterator[StoredReading]:
    current: StoredReading | None = None
    current_key: tuple[str, str, str, int] | None = None
    for measurement, device, tags, field, time_ns, value, reading_id in rows:
        key = (measurement, device, tags, time_ns)
        if current is None or key != current_key:
            if current is not None:
                yield current
            current = StoredReading(measurement, device, orjson.loads(tags), time_ns, {}, reading_id)
            current_key = key
        current.fields[field] = value
    if current is not None:
        yield current


def read_readings(path: Path, measurement: str | None = None) -> Iterator[StoredReading]:
    """Rows folded back into readings (one per series and instant), for `gateway query` and tests."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield from select_readings(conn, "measurement", measurement, "measurement, device, tags, time_ns, field")
    finally:
        conn.close()
