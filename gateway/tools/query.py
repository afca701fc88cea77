"""Reading the gateway's SQLite file: the demo's dashboard and summary, and `gateway query`."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from gateway.config.schema import ALERTS_MEASUREMENT, RESERVED_MEASUREMENTS
from gateway.errors import EXIT_NO_BROKER, DemoError
from gateway.rfc3339 import rfc3339_ms
from gateway.sinks.sqlite import StoredReading, select_readings


def open_readonly(db: Path) -> sqlite3.Connection:
    """A read-only connection; DemoError (exit 2) when the file is missing or holds no readings table."""
    if not db.is_file():
        raise DemoError(f"no database at {db} (run `gateway demo` first, or pass --db)", EXIT_NO_BROKER)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=5000")
    try:
        conn.execute("SELECT 1 FROM readings LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DemoError(f"{db} is not a gateway SQLite database: {exc}", EXIT_NO_BROKER) from None
    return conn


def count_devices(conn: sqlite3.Connection, measurement: str) -> int:
    """Distinct devices with readings in `measurement`: one primary-key lookup per device, not a scan of every
    row, so the status line stays cheap however long the demo runs."""
    row = conn.execute(
        """
        WITH RECURSIVE d(dev) AS (
            SELECT MIN(device) FROM readings WHERE measurement = :m
            UNION ALL
            SELECT (SELECT MIN(device) FROM readings WHERE measurement = :m AND device > d.dev)
                FROM d WHERE dev IS NOT NULL
        )
        SELECT COUNT(dev) FROM d
        """,
        {"m": measurement},
    ).fetchone()
    return int(row[0])


def latest_readings(conn: sqlite3.Connection, device: str | None, limit: int) -> list[StoredReading]:
    """The `limit` newest readings (rows folded per series and instant), newest first; walks the time index."""
    # The time index holds the primary key too, so this is its order: a reading's rows are adjacent.
    order = "time_ns DESC, measurement DESC, device DESC, tags DESC"
    readings = select_readings(conn, "device", device, order)
    # The gateway's own points (its metrics, alerts) are not device readings; `alerts` has its own listing.
    device_readings = (r for r in readings if r.measurement not in RESERVED_MEASUREMENTS)
    newest = itertools.islice(device_readings, limit)
    return sorted(newest, key=lambda r: (-r.time_ns, r.device, r.measurement))


class DeviceCount(NamedTuple):
    device: str
    readings: int
    first_ns: int
    last_ns: int


def device_counts(conn: sqlite3.Connection, device: str | None = None) -> list[DeviceCount]:
    reserved = ", ".join("?" * len(RESERVED_MEASUREMENTS))
    where = f" WHERE measurement NOT IN ({reserved})" + (" AND device = ?" if device is not None else "")
    params: tuple[str, ...] = (*sorted(RESERVED_MEASUREMENTS), *((device,) if device is not None else ()))
    rows = conn.execute(
        "SELECT device, COUNT(*), MIN(time_ns), MAX(time_ns) FROM"
        f" (SELECT DISTINCT measurement, device, tags, time_ns FROM readings{where})"
        " GROUP BY device ORDER BY device",
        params,
    )
    return [DeviceCount(*row) for row in rows]


class AlertRow(NamedTuple):
    """One stored alert transition (a point of measurement `alerts`, see gateway/alerts/rendering.py alert_point)."""

    time_ns: int  # when it happened: device time for readings, the gateway's clock for timers (deadman)
    rule: str
    device: str
    severity: str
    kind: str
    state: str  # firing or resolved
    transition: str  # firing, repeat or resolved
    value: float | None
    threshold: float | None


def alert_rows(conn: sqlite3.Connection, device: str | None = None) -> list[AlertRow]:
    """Every stored alert transition, newest first (the table holds a few per episode: cheap to read whole)."""
    rows = []
    for r in select_readings(conn, "measurement", ALERTS_MEASUREMENT, "time_ns DESC, device DESC, tags DESC"):
        if device is not None and r.device != device:
            continue
        value, threshold = r.fields.get("value"), r.fields.get("threshold")
        rows.append(
            AlertRow(
                time_ns=r.time_ns,
                rule=r.tags.get("rule", "?"),
                device=r.device,
                severity=r.tags.get("severity", "?"),
                kind=r.tags.get("kind", "?"),
                state=str(r.fields.get("state", "?")),
                transition=str(r.fields.get("transition", "?")),
                value=float(value) if isinstance(value, int | float) else None,
                threshold=float(threshold) if isinstance(threshold, int | float) else None,
            )
        )
    return rows


def firing_now(rows: list[AlertRow]) -> list[AlertRow]:
    """The (rule, device) pairs whose latest stored transition left them firing; `rows` newest first."""
    latest: dict[tuple[str, str], AlertRow] = {}
    for row in rows:
        latest.setdefault((row.rule, row.device), row)
    return [row for row in latest.values() if row.state == "firing"]


def format_number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{round(value, 2):g}"


def alert_time(time_ns: int) -> str:
    """An alert's time to the millisecond (a deadman's comes from the gateway's clock, in nanoseconds)."""
    return rfc3339_ms(time_ns)


def format_value(value: float | int | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):  # the SQLite sink stores booleans as INTEGER 0/1 and every number as REAL
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return repr(value) if any(ch.isspace() for ch in value) or not value else value


def format_pairs(pairs: dict[str, Any], sep: str = " ") -> str:
    return sep.join(f"{k}={format_value(v)}" for k, v in sorted(pairs.items())) or "-"


def iter_table_lines(
    headers: list[str], rows: list[list[str]], right_aligned: frozenset[int] = frozenset()
) -> Iterator[str]:
    """Plain aligned columns, for output that is not a terminal (no box characters, no wrapping)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for cells in [headers, *rows]:
        aligned = [
            cell.rjust(width) if i in right_aligned else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        yield "  ".join(aligned).rstrip()
