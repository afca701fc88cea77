"""A damaged journal: read back what can be read, table by table and row by row, into a new journal.

A journal can be damaged by a disk or a file system that loses or corrupts writes, by a copy taken while the
gateway was writing it, by someone's dd. SQLite then refuses it as a whole ("database disk image is malformed"),
while most of its rows are usually intact: one bad page loses the rows on that page (or the rest of one large
row), not the file. Python's sqlite3 has no `.recover`, so this does the same by hand, within what SQLite itself
can still read:

- the file is opened read-only with `writable_schema` (which lets SQLite read a file shorter than its header
  says, as a file cut in half is); a file whose header or first page is damaged is read through a copy with that
  page rebuilt from a fresh journal of the same page size (the journal's tables always sit at the same pages);
- each table's rowids are walked in order; where SQLite cannot step on (a damaged page), the next readable rowid
  is found by probing further and further ahead, then by bisection, so only the damaged range is skipped;
- each row is read on its own and checked against the column types; a chunk of readings whose blob cannot be read
  whole keeps every reading that can be parsed whole from the part that can be read;
- `outbox_sizes` (the reading count of every chunk) tells how many readings the unreadable part held, so the
  count of acknowledged readings that can never be stored is exact whenever that small table could be read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import sqlite3
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from gateway.model import Reading

log = logging.getLogger(__name__)

# The journal's tables in the order they are salvaged; `outbox_sizes` is rebuilt from what the outbox yields.
TABLES = ("cursors", "outbox", "dedup", "deadletters", "alert_state", "rejected")
_MIN_ROWID, _MAX_ROWID = -(2**63), 2**63 - 1
_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)
_MAX_DAMAGED_RANGES = 100_000  # a bound on the walk, whatever the file holds
_MAX_GAP = 1_000_000  # a wider gap between readable chunk seqs is damage making up rowids, not chunks
_SINGLE_STEPS = 64  # rows read one by one past a failed step before the walk goes fast again
_READING_START = re.compile(r"[\[,]\[")  # where a reading can start in a chunk's JSON array of arrays
_NEVER_USED = re.compile(r"Page (\d+) is never used")
_JSON = json.JSONDecoder()


@dataclass
class SalvageReport:
    damage: str
    source: str = "the damaged file"  # or a copy of it with a rebuilt first page
    readings: int = 0  # readings salvaged: acknowledged, not yet stored by every sink
    chunks: int = 0
    unlinked: int = 0  # of `readings`, those read from pages no longer linked to any row
    rows: Counter[str] = field(default_factory=Counter)  # rows salvaged, by table
    lost: Counter[str] = field(default_factory=Counter)  # readings of the outbox, rows of the other tables
    estimated_chunks: int = 0  # lost chunks whose reading count was not readable (their share of lost is a guess)
    kept_as: Path | None = None

    def summary(self) -> str:
        guess = f" (partly a guess: {self.estimated_chunks} chunks of unreadable size)" if self.estimated_chunks else ""
        unlinked = f", {self.unlinked:,} of them from pages cut off their chunk" if self.unlinked else ""
        others = ", ".join(
            f"{table} {self.rows[table]:,}" + (f" ({self.lost[table]:,} lost)" if self.lost[table] else "")
            for table in TABLES
            if table != "outbox"
        )
        return (
            f"salvaged {self.readings:,} readings not yet stored ({self.chunks:,} chunks{unlinked}) and lost "
            f"{self.lost['outbox']:,}{guess}; rows kept: {others}; read from {self.source}"
        )


# -- reading a chunk of readings, whole or damaged ----------------------------------------------------------


def decode_readings(blob: bytes) -> tuple[list[Reading], bool]:
    """A chunk's readings and True; for a damaged chunk, every reading that parses whole, and False."""
    try:
        readings = [_as_reading(row) for row in orjson.loads(blob)]
    except (orjson.JSONDecodeError, TypeError, ValueError):
        pass
    else:
        if all(r is not None for r in readings):
            return [r for r in readings if r is not None], True
    return list(_readings_in(blob)), False


def _readings_in(blob: bytes) -> Iterator[Reading]:
    """Resynchronises on every place a reading could start. Bytes that are not UTF-8 become lone surrogates,
    which no real reading holds (orjson refuses to write them), so a reading touched by damage is dropped."""
    text = blob.decode("utf-8", errors="surrogateescape")
    resume = 0
    for match in _READING_START.finditer(text):
        start = match.start() + 1
        if start < resume:
            continue
        try:
            value, end = _JSON.raw_decode(text, start)
        except ValueError:
            continue
        reading = _as_reading(value)
        if reading is not None:
            yield reading
            resume = end


def _as_reading(row: Any) -> Reading | None:
    """A Reading if `row` has the shape the journal writes (journal._encode; older journals wrote 6 values)."""
    if not isinstance(row, list) or not 6 <= len(row) <= len(Reading._fields):
        return None
    device, measurement, time_ns, fields, tags, reading_id, *rest = row
    if not (isinstance(fields, dict) and isinstance(tags, dict) and _is_int(time_ns)):
        return None
    if not all(_clean_text(text) for text in (device, measurement, reading_id, *fields, *tags, *tags.values())):
        return None
    if not all(isinstance(v, bool | int | float) or _clean_text(v) for v in fields.values()):
        return None
    seq, from_device = [*rest, None, True][:2]
    if not (seq is None or _is_int(seq)) or not isinstance(from_device, bool):
        return None
    return Reading(*row)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _clean_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: a byte that was not UTF-8
        return False
    return True


# -- opening what is left --------------------------------------------------------------------------------------


class Readable(NamedTuple):
    conn: sqlite3.Connection  # read-only
    path: Path  # the damaged file, or a copy of it with its first page rebuilt
    how: str


def open_readable(damaged: Path, schema: str, scratch: Path) -> Readable | None:
    """A read-only connection through which SQLite can read the damaged journal's schema; None when not even a
    rebuilt first page makes it readable."""
    conn = _try_open(damaged, probe=False)
    if conn is not None:
        return Readable(conn, damaged, "the damaged file")
    shutil.copyfile(damaged, scratch)  # once: each try below rewrites only its first page
    wal = Path(f"{damaged}-wal")
    if wal.exists():
        shutil.copyfile(wal, Path(f"{scratch}-wal"))
    size = scratch.stat().st_size
    with damaged.open("rb") as f:
        original = f.read(max(_PAGE_SIZES))
    for page_size in _page_sizes(wal):
        fresh = _fresh_first_page(schema, page_size)
        header = bytearray(fresh[:100])
        header[18:20] = b"\x02\x02" if wal.exists() else b"\x01\x01"  # WAL, or a rollback journal
        header[28:32] = struct.pack(">I", -(-size // page_size))  # the page count (valid: see offset 92)
        header[92:96] = header[24:28]
        for how, first_page in (("header", header + original[100:page_size]), ("first page", header + fresh[100:])):
            with scratch.open("r+b") as f:
                f.write(first_page)
            # A wrong page size can still show a schema: the outbox must be readable too.
            conn = _try_open(scratch, probe=True)
            if conn is not None:
                return Readable(conn, scratch, f"a copy with its {how} rebuilt (page size {page_size})")
    return None


def _try_open(path: Path, probe: bool) -> sqlite3.Connection | None:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        # Lets SQLite read a file shorter than its header says (one cut in half) and a schema it would refuse.
        conn.execute("PRAGMA writable_schema=ON")
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        if "outbox" in tables:
            if probe:
                conn.execute("SELECT rowid FROM outbox LIMIT 1").fetchall()
            return conn
    except sqlite3.Error:
        pass
    conn.close()
    return None


def _page_sizes(wal: Path) -> list[int]:
    """The WAL's header names the page size; else SQLite's default first, then the other sizes."""
    sizes = list(_PAGE_SIZES)
    try:
        with wal.open("rb") as f:
            named = struct.unpack(">I", f.read(32)[8:12])[0]
    except (OSError, struct.error):
        return sizes
    if named in sizes:
        sizes.remove(named)
        sizes.insert(0, named)
    return sizes


def _fresh_first_page(schema: str, page_size: int) -> bytes:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"PRAGMA page_size={page_size}")
        conn.executescript(schema)
        return conn.serialize()[:page_size]
    finally:
        conn.close()


# -- walking a table -------------------------------------------------------------------------------------------


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
    position = _MIN_ROWID
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
        high = min(_MAX_ROWID, failed + step)
        if _seekable(conn, table, high):
            break
        if high == _MAX_ROWID:
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


# -- copying table by table ------------------------------------------------------------------------------------


class _Copier:
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
            if row is not None and _is_int(row[0]) and row[0] >= 0:
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
                    low = _MIN_ROWID if before is None else before + 1
                    high = _MAX_ROWID if after is None else after - 1
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
            readings = list(_readings_in(b"".join(page(n)[4:] for n in chain)))
            if readings:
                yield readings


def encode_readings(readings: list[Reading]) -> bytes:
    """The journal's encoding of a chunk (journal._encode uses the same)."""
    return orjson.dumps([list(r) for r in readings])


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


def _salvage_into(damaged: Path, dst: sqlite3.Connection, schema: str, report: SalvageReport) -> None:
    """Everything readable of `damaged` into `dst`, a new journal, in one transaction."""
    scratch = damaged.with_name(f"{damaged.name}.readable")
    try:
        opened = open_readable(damaged, schema, scratch)
        dst.execute("BEGIN IMMEDIATE")
        if opened is None:
            report.source = "nothing: SQLite cannot read the file, not even with its first page rebuilt"
            report.lost["outbox"] += 1  # an unknown number of readings: at least one, unless it held none
            report.estimated_chunks += 1
        else:
            report.source = opened.how
            try:
                copier = _Copier(opened, dst, report)
                for table in TABLES:
                    try:
                        copier.table(table)
                    # Whatever stops one table (a bug included) must not stop the gateway from starting, nor
                    # the other tables from being salvaged; what was copied so far is kept.
                    except Exception:
                        log.exception("salvaging the journal's %s table stopped early", table)
                        if table != "outbox":  # the outbox counts its own losses, however it stops
                            report.lost[table] += 1
            finally:
                opened.conn.close()
        dst.execute("COMMIT")
    finally:
        for leftover in _with_companions(scratch):
            leftover.unlink(missing_ok=True)


# -- the files -------------------------------------------------------------------------------------------------


def salvage(path: Path, damage: str, schema: str, open_journal: Callable[[Path], sqlite3.Connection]) -> SalvageReport:
    """Builds `<path>.salvaging` from what can be read of the damaged journal at `path`, renames it
    `<path>.salvaged` once complete, moves the damaged files aside (kept as `<path>.damaged-<UTC time>`), then
    puts the new journal in their place. A crash before the new journal is complete leaves the damaged one
    where it was (the next start salvages again); after, `finish_interrupted_salvage` completes the swap."""
    report = SalvageReport(damage)
    building, done = _sibling(path, "salvaging"), _sibling(path, "salvaged")
    for leftover in (*_with_companions(building), *_with_companions(done)):
        leftover.unlink(missing_ok=True)
    conn = open_journal(building)
    try:
        _salvage_into(path, conn, schema, report)
    finally:
        conn.close()
    _move(building, done)
    report.kept_as = _sibling(path, "damaged-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    _move(path, report.kept_as)
    _move(done, path)
    return report


def finish_interrupted_salvage(path: Path) -> None:
    done = _sibling(path, "salvaged")
    if not path.exists() and done.exists():
        log.warning("journal %s: completing a salvage interrupted after the new journal was built", path)
        _move(done, path)


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(f"{path.name}.{suffix}")


def _with_companions(path: Path) -> tuple[Path, Path, Path]:
    """SQLite's files of one database: its -wal and -shm, then the database itself."""
    return Path(f"{path}-wal"), Path(f"{path}-shm"), path


def _move(src: Path, dst: Path) -> None:
    """-wal and -shm first: a database must never end up beside another one's WAL."""
    for source, target in zip(_with_companions(src), _with_companions(dst), strict=True):
        if source.exists():
            source.rename(target)
