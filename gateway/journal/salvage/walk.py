"""Walking a damaged table's rowids in order: where SQLite cannot step on, the next readable rowid is found by
probing further and further ahead, then by bisection, so only the damaged range is skipped."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field

MIN_ROWID, MAX_ROWID = -(2**63), 2**63 - 1
_MAX_DAMAGED_RANGES = 100_000  # a bound on the walk, whatever the file holds
_SINGLE_STEPS = 64  # rows read one by one past a failed step before the walk goes fast again


@dataclass
class Walk:
    rowids: list[int] = field(default_factory=list)
    # Unreadable ranges as (last readable rowid before, first readable rowid after); None: none on that side.
    damaged: list[tuple[int | None, int | None]] = field(default_factory=list)

    def rows_lost(self) -> int:
        """Rows in the unreadable ranges, from the gaps in the rowids: exact where rowids are dense (the
        journal's sequences mostly are), an upper bound elsewhere; a range open at an end counts as one."""
        return sum(1 if a is None or b is None else max(1, b - a - 1) for a, b in self.damaged)


def walk_rowids(conn: sqlite3.Connection, table: str) -> Walk:
    walk = Walk()
    position = MIN_ROWID
    while len(walk.damaged) < _MAX_DAMAGED_RANGES:
        try:
            for (rowid,) in conn.execute(f"SELECT rowid FROM {table} WHERE rowid >= ? ORDER BY rowid", (position,)):
                walk.rowids.append(rowid)
                position = rowid + 1
            return walk
        except sqlite3.DatabaseError:
            pass
        # sqlite3 reads a row ahead, so the last readable row went with the error: step on a row at a time.
        for _ in range(_SINGLE_STEPS):
            readable, rowid = _first_rowid_from(conn, table, position)
            if not readable:
                break
            if rowid is None:
                return walk
            walk.rowids.append(rowid)
            position = rowid + 1
        else:
            continue  # no damage here after all: on with the fast walk
        before = walk.rowids[-1] if walk.rowids else None
        resume = _next_seekable(conn, table, position)
        if resume is None:
            walk.damaged.append((before, None))
            return walk
        # A seek just below `resume` fails, yet rows below it can sit on the readable page it lands on.
        below = _rowids_down(conn, table, resume, position)
        walk.rowids.extend(below)
        after = below[0] if below else _first_rowid_from(conn, table, resume)[1]
        walk.damaged.append((before, after))
        if after is None:
            return walk
        position = resume
    return walk


def _first_rowid_from(conn: sqlite3.Connection, table: str, rowid: int) -> tuple[bool, int | None]:
    """(False, None) when SQLite cannot seek to `rowid`, else (True, the first rowid from there on, or None)."""
    try:
        row = conn.execute(f"SELECT rowid FROM {table} WHERE rowid >= ? ORDER BY rowid LIMIT 1", (rowid,)).fetchone()
    except sqlite3.DatabaseError:
        return False, None
    return True, None if row is None else int(row[0])


def _rowids_down(conn: sqlite3.Connection, table: str, below: int, down_to: int) -> list[int]:
    """Rowids from just under `below` down to `down_to`, a row at a time until SQLite cannot step; ascending."""
    found: list[int] = []
    query = f"SELECT rowid FROM {table} WHERE rowid < ? AND rowid >= ? ORDER BY rowid DESC LIMIT 1"
    with contextlib.suppress(sqlite3.DatabaseError):
        while row := conn.execute(query, (found[-1] if found else below, down_to)).fetchone():
            found.append(int(row[0]))
    return found[::-1]


def _seekable(conn: sqlite3.Connection, table: str, rowid: int) -> bool:
    return _first_rowid_from(conn, table, rowid)[0]


def _next_seekable(conn: sqlite3.Connection, table: str, failed: int) -> int | None:
    """The smallest rowid past `failed` from which SQLite can seek again: 1, 2, 4, ... ahead, then bisection."""
    low, step = failed, 1
    while True:
        high = min(MAX_ROWID, failed + step)
        if _seekable(conn, table, high):
            break
        if high == MAX_ROWID:
            return None
        low, step = high, step * 2
    while high - low > 1:
        middle = (low + high) // 2
        if _seekable(conn, table, middle):
            high = middle
        else:
            low = middle
    return high


def readable_prefix(conn: sqlite3.Connection, table: str, column: str, rowid: int) -> bytes:
    """As much of a value as can be read from its start: a long value continues on a chain of overflow pages,
    and a damaged page breaks the chain."""
    try:
        blob = conn.blobopen(table, column, rowid, readonly=True)
    except sqlite3.Error:
        return b""
    parts: list[bytes] = []
    offset, size = 0, 1 << 16
    with blob:
        while size:
            try:
                blob.seek(offset)
                piece = blob.read(size)
            except sqlite3.Error:
                size //= 2  # closes in on where the readable part ends, to the byte
                continue
            if not piece:
                break
            parts.append(piece)
            offset += len(piece)
    return b"".join(parts)
