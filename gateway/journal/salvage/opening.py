"""Opening what is left of a damaged journal: read-only with `writable_schema`, or through a copy whose header
or first page is rebuilt from a fresh journal of the same page size."""

from __future__ import annotations

import shutil
import sqlite3
import struct
from pathlib import Path
from typing import NamedTuple

_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)


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
