"""Copying the readable, well-typed rows of a damaged journal into a new one, table by table, and counting what
is lost: exactly where `outbox_sizes` could be read, by the average chunk elsewhere."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from gateway.journal.chunks import decode_readings, encode_readings, is_int, readings_in
from gateway.journal.salvage.opening import Readable
from gateway.journal.salvage.report import SalvageReport
from gateway.journal.salvage.walk import MAX_ROWID, MIN_ROWID, Walk, readable_prefix, walk_rowids
from gateway.model import Reading

log = logging.getLogger(__name__)

_MAX_GAP = 1_000_000  # a wider gap between readable chunk seqs is damage making up rowids, not chunks
_NEVER_USED = re.compile(r"Page (\d+) is never used")


class Copier:
    """Copies the readable, well-typed rows of each table of `src` into `dst` (the new journal, inside a
    transaction), counting in `report` what is salvaged and what is lost."""

    def __init__(self, src: Readable, dst: sqlite3.Connection, report: SalvageReport) -> None:
        self._readable = src
        self._src = src.conn
        self._dst = dst
        self._report = report
        self._tables = {name for (name,) in self._src.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}

    def table(self, table: str) -> None:
        if table not in self._tables:
            return
        if table == "outbox":
            self._outbox()
            return
        theirs = {row[1] for row in self._src.execute(f"PRAGMA table_info({table})")}
        # (name, declared type, may be NULL) of the new journal's columns the damaged one has too.
        columns = [(r[1], r[2].upper(), not (r[3] or r[5])) for r in self._dst.execute(f"PRAGMA table_info({table})")]
        columns = [c for c in columns if c[0] in theirs]
        names = ", ".join(c[0] for c in columns)
        select = f"SELECT {names} FROM {table} WHERE rowid = ?"
        insert = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
        walk = walk_rowids(self._src, table)
        self._report.lost[table] += walk.rows_lost()
        for rowid in walk.rowids:
            try:
                row = self._src.execute(select, (rowid,)).fetchone()
            except sqlite3.DatabaseError:
                row = None
            if row is None or not _typed(row, columns) or (table == "dedup" and not _dedup_keys_whole(row)):
                self._report.lost[table] += 1
                continue
            self._dst.execute(insert, row)
            self._report.rows[table] += 1

    def _chunk_sizes(self) -> tuple[dict[int, int], bool]:
        """Each chunk's reading count from `outbox_sizes`, and whether that whole table could be read."""
        if "outbox_sizes" not in self._tables:
            return {}, False
        walk = walk_rowids(self._src, "outbox_sizes")
        sizes: dict[int, int] = {}
        for seq in walk.rowids:
            try:
                row = self._src.execute("SELECT readings FROM outbox_sizes WHERE seq = ?", (seq,)).fetchone()
            except sqlite3.DatabaseError:
                continue
            if row is not None and is_int(row[0]) and row[0] >= 0:
                sizes[seq] = row[0]
        return sizes, not walk.damaged and len(sizes) == len(walk.rowids)

    def _outbox(self) -> None:
        report = self._report
        sizes, all_sizes = self._chunk_sizes()
        walk = walk_rowids(self._src, "outbox")
        salvaged: dict[int, int] = {}  # seq -> readings salvaged
        damaged: set[int] = set()  # chunks not salvaged whole
        try:
            for seq in walk.rowids:
                try:
                    row = self._src.execute("SELECT readings FROM outbox WHERE seq = ?", (seq,)).fetchone()
                    blob = row[0] if row is not None else b""
                except sqlite3.DatabaseError:
                    blob = readable_prefix(self._src, "outbox", "readings", seq)
                readings, whole = decode_readings(blob) if isinstance(blob, bytes) else ([], False)
                if not whole:
                    damaged.add(seq)
                if readings:
                    kept = blob if whole else encode_readings(readings)
                    self._dst.execute("INSERT INTO outbox VALUES (?, ?, ?)", (seq, kept, len(kept)))
                    self._dst.execute("INSERT INTO outbox_sizes VALUES (?, ?)", (seq, len(readings)))
                    salvaged[seq] = len(readings)
            if damaged or walk.damaged:
                self._unlinked_chunks(max([0, *walk.rowids, *sizes]))
        finally:  # even when stopped early: what was copied is counted, what was not is lost
            report.chunks += len(salvaged)
            report.readings = sum(salvaged.values()) + report.unlinked
            damaged.update(seq for seq in walk.rowids if seq not in salvaged)
            lost = self._readings_lost(walk, sizes, all_sizes, salvaged, damaged)
            # The unlinked readings are the rest of damaged chunks: what those lost is less by as many, and still
            # at least a reading each (what the damaged page itself held).
            report.lost["outbox"] += max(len(damaged), lost - report.unlinked)

    def _unlinked_chunks(self, last_seq: int) -> None:
        """Readings on pages SQLite reports as never used, as more chunks: a damaged page breaks the chain of
        pages a long chunk continues on, and the rest of the chain is still in the file, linked to nothing."""
        cursor = self._dst.execute("SELECT coalesce(max(upto), 0) FROM cursors").fetchone()[0]
        seq = max(last_seq, cursor)  # the new chunks come after every cursor: every sink stores them
        for readings in unlinked_readings(self._readable):
            seq += 1
            blob = encode_readings(readings)
            self._dst.execute("INSERT INTO outbox VALUES (?, ?, ?)", (seq, blob, len(blob)))
            self._dst.execute("INSERT INTO outbox_sizes VALUES (?, ?)", (seq, len(readings)))
            self._report.unlinked += len(readings)
            self._report.chunks += 1

    def _readings_lost(
        self, walk: Walk, sizes: dict[int, int], all_sizes: bool, salvaged: dict[int, int], damaged: set[int]
    ) -> int:
        """Exact for every chunk whose size could be read; a chunk without one is given the average size."""
        lost = sum(max(0, n - salvaged.get(seq, 0)) for seq, n in sizes.items())
        unsized = {seq for seq in damaged if seq not in sizes}
        open_ranges = 0
        if not all_sizes:
            # Chunk seqs are consecutive, so a gap between two readable ones held chunks too; an unreadable range
            # at an end held at least one unless a size read says otherwise.
            for before, after in walk.damaged:
                if before is not None and after is not None and after - before <= _MAX_GAP:
                    unsized.update(seq for seq in range(before + 1, after) if seq not in sizes)
                else:
                    low = MIN_ROWID if before is None else before + 1
                    high = MAX_ROWID if after is None else after - 1
                    open_ranges += not any(low <= seq <= high for seq in sizes)
        if not unsized and not open_ranges:
            return lost
        known = {**{s: n for s, n in salvaged.items() if s not in damaged}, **sizes}
        average = max(1, round(sum(known.values()) / len(known))) if known else 1
        self._report.estimated_chunks += len(unsized) + open_ranges
        return lost + sum(max(1, average - salvaged.get(seq, 0)) for seq in unsized) + open_ranges * average


def unlinked_readings(readable: Readable) -> Iterator[list[Reading]]:
    """The readings on the pages SQLite's check reports as never used, a list a chain of pages: followed from page
    to page the way SQLite chains a long value's pages (each starts with the number of the next). Read from the
    file itself, so skipped while a WAL holds newer versions of pages (the check that found the damage has
    normally checkpointed it)."""
    wal = Path(f"{readable.path}-wal")
    if wal.exists() and wal.stat().st_size > 32:
        log.warning("journal salvage: pages cut off their chunk are not read while the damaged file has a WAL")
        return
    try:
        answer = " ".join(str(row[0]) for row in readable.conn.execute("PRAGMA quick_check(1000000)"))
    except sqlite3.DatabaseError as exc:
        log.warning("journal salvage: pages cut off their chunk are not read: SQLite cannot check the file (%s)", exc)
        return
    orphans = {int(n) for n in _NEVER_USED.findall(answer)}
    page_size = int(readable.conn.execute("PRAGMA page_size").fetchone()[0])
    with readable.path.open("rb") as f:

        def page(number: int) -> bytes:
            f.seek((number - 1) * page_size)
            return f.read(page_size)

        following = {number: int.from_bytes(page(number)[:4], "big") for number in orphans}
        for head in sorted(orphans - set(following.values())):
            chain, number = [head], following[head]
            while number in orphans and number not in chain[-1:] and len(chain) <= len(orphans):
                chain.append(number)  # (a loop of pointers ends at the bound)
                number = following[number]
            readings = list(readings_in(b"".join(page(n)[4:] for n in chain)))
            if readings:
                yield readings


def _typed(row: tuple[Any, ...], columns: list[tuple[str, str, bool]]) -> bool:
    """Each value of the type its column is declared with: damage can make SQLite read a value of another."""
    expected = {"INTEGER": int, "TEXT": str, "BLOB": bytes}
    for value, (_name, declared, nullable) in zip(row, columns, strict=True):
        if value is None and not nullable:
            return False
        if value is not None and not isinstance(value, expected.get(declared, object)):
            return False
    return True


def _dedup_keys_whole(row: tuple[Any, ...]) -> bool:
    """A dedup row's keys must parse, and be as many as it says (columns: seq, seen_ns, n, keys)."""
    try:
        keys = orjson.loads(row[3])
    except orjson.JSONDecodeError:
        return False
    return isinstance(keys, list) and len(keys) == row[2]
