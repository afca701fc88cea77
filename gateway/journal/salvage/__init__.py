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

`opening` finds a way to read the file, `walk` walks a table's rowids past damage, `copier` copies rows and counts
losses, `report` is what comes out; this module builds the new journal and swaps the files.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from gateway.journal.salvage.copier import Copier
from gateway.journal.salvage.opening import open_readable
from gateway.journal.salvage.report import TABLES, SalvageReport

__all__ = ["SalvageReport", "finish_interrupted_salvage", "salvage"]

log = logging.getLogger(__name__)


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
                copier = Copier(opened, dst, report)
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
