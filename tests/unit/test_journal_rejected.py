"""The journal keeps rejected messages for replay: in the chunk's commit, bounded by count, oldest dropped first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.journal.store import TRUNCATED_PAYLOAD_BYTES, Journal, JournalError
from gateway.model import OutgoingMessage, Reading, Rejection


def _rejection(i: int, payload: bytes | None = None) -> Rejection:
    body = payload if payload is not None else b'{"temperature": %d}' % i
    return Rejection("invalid_schema", "metrics is required", f"plant/dev-{i}/data", body, 1_000 + i, f"dev-{i}")


def _rows(path: Path) -> list[tuple[str, int, bytes, int, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT topic, received_ns, payload, payload_bytes, truncated FROM rejected ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


def test_bound_keeps_the_newest_and_counts_what_it_drops(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db", ["sqlite"], max_rejected=5)
    dropped = [journal.commit([], [], [_rejection(i) for i in range(start, start + 3)])[2] for start in (0, 3, 6)]
    assert dropped == [0, 1, 3]
    assert journal.rejected_rows == 5
    journal.close()
    assert [r[0] for r in _rows(tmp_path / "journal.db")] == [f"plant/dev-{i}/data" for i in range(4, 9)]


def test_a_burst_larger_than_the_bound_keeps_its_newest(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db", ["sqlite"], max_rejected=3)
    assert journal.commit([], [], [_rejection(i) for i in range(10)])[2] == 7
    journal.close()
    assert [r[1] for r in _rows(tmp_path / "journal.db")] == [1_007, 1_008, 1_009]


def test_zero_keeps_none(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db", ["sqlite"], max_rejected=0)
    assert journal.commit([], [], [_rejection(1), _rejection(2)])[2] == 2
    journal.close()
    assert _rows(tmp_path / "journal.db") == []


def test_the_count_survives_a_restart_and_a_lower_bound_trims_at_the_next_commit(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path, ["sqlite"], max_rejected=100)
    journal.commit([], [], [_rejection(i) for i in range(10)])
    journal.close()
    journal = Journal(path, ["sqlite"], max_rejected=4)
    assert journal.rejected_rows == 10
    assert journal.commit([], [], [_rejection(10)])[2] == 7
    journal.close()
    assert [r[1] for r in _rows(path)] == [1_007, 1_008, 1_009, 1_010]


def test_rows_deleted_by_another_connection_are_not_dropped_again(tmp_path: Path) -> None:
    """`gateway deadletter replay` deletes rows while the gateway runs; the gateway's count must notice."""
    path = tmp_path / "journal.db"
    journal = Journal(path, ["sqlite"], max_rejected=5)
    journal.commit([], [], [_rejection(i) for i in range(5)])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("DELETE FROM rejected WHERE received_ns IN (1001, 1002, 1003)")
    other.close()
    assert journal.commit([], [], [_rejection(5), _rejection(6)])[2] == 0
    assert journal.commit([], [], [_rejection(7)])[2] == 0
    assert journal.commit([], [], [_rejection(8)])[2] == 1
    assert journal.rejected_rows == 5
    journal.close()
    assert [r[1] for r in _rows(path)] == [1_004, 1_005, 1_006, 1_007, 1_008]


def test_a_payload_over_the_limit_keeps_a_prefix_and_is_marked(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db", ["sqlite"], max_payload_bytes=100)
    journal.commit([], [], [_rejection(1, b"x" * 100), _rejection(2, b"y" * 5000)])
    journal.close()
    (_, _, whole, size, truncated), (_, _, prefix, big, cut) = _rows(tmp_path / "journal.db")
    assert (whole, size, truncated) == (b"x" * 100, 100, 0)
    assert (prefix, big, cut) == (b"y" * TRUNCATED_PAYLOAD_BYTES, 5000, 1)


@pytest.mark.parametrize("with_readings", [pytest.param(True, id="with-readings"), pytest.param(False, id="alone")])
def test_rejections_are_committed_with_the_rest_of_the_chunk(tmp_path: Path, with_readings: bool) -> None:
    journal = Journal(tmp_path / "journal.db", ["sqlite"])
    readings = [Reading("dev-1", "telemetry", 5, {"t": 1.0}, {}, "r1")] if with_readings else []
    seq, pending, dropped = journal.commit(
        readings, [OutgoingMessage("gateway/deadletter/dev-2", b"{}")], [_rejection(2)]
    )
    journal.close()
    assert (len(pending), dropped) == (1, 0)
    assert seq == (1 if with_readings else 0)
    assert [r[0] for r in _rows(tmp_path / "journal.db")] == ["plant/dev-2/data"]


def test_a_failed_commit_keeps_neither_readings_nor_rejections(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path, ["sqlite"])
    journal.commit([], [], [_rejection(1)])
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the journal's commit times out
    journal._conn.execute("PRAGMA busy_timeout=50")
    readings = [Reading("dev-1", "telemetry", 5, {"t": 1.0}, {}, "r1")]
    with pytest.raises(JournalError, match="journal commit failed"):
        journal.commit(readings, [], [_rejection(2)])
    blocker.execute("ROLLBACK")
    blocker.close()
    assert journal.rejected_rows == 1
    assert journal.commit([], [], [_rejection(3)])[2] == 0
    journal.close()
    assert [r[1] for r in _rows(path)] == [1_001, 1_003]
