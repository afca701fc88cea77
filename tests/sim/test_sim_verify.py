"""`device-sim verify`: matching stored readings against a manifest, and reading the gateway's SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from device_sim.cli import app
from device_sim.manifest import ExpectedReading, Manifest
from device_sim.stores import SqliteStore, StoredReading
from device_sim.verify import match

T0 = 1_795_773_600_000_000_000
MS = 1_000_000

# The gateway's SQLite schema, as the README documents it.
SCHEMA = """
CREATE TABLE readings (
    measurement TEXT NOT NULL, device TEXT NOT NULL, tags TEXT NOT NULL, field TEXT NOT NULL,
    time_ns INTEGER NOT NULL, value ANY, reading_id TEXT NOT NULL,
    PRIMARY KEY (measurement, device, tags, field, time_ns)) WITHOUT ROWID, STRICT;
"""


def expected(device: str = "d1", at: int = 0, received: bool = False, **fields: float | bool) -> ExpectedReading:
    tags = {"source": "x"} if received else {"site": "a"}
    return ExpectedReading(device, T0 + at * MS, dict(fields), tags, f"0-{at}", at, received=received)


def stored(device: str = "d1", at: int = 0, tags: dict[str, str] | None = None, **fields: float) -> StoredReading:
    return StoredReading("telemetry", device, {"site": "a"} if tags is None else tags, T0 + at * MS, dict(fields))


def test_exact_match_is_clean_and_bools_compare_with_one_and_zero() -> None:
    result = match([expected(at=1, t=21.5, on=True)], [stored(at=1, t=21.5, on=1.0)], precision_ns=1)
    assert result.clean and (result.expected, result.stored) == (1, 1)


def test_missing_extra_and_mismatched_are_told_apart() -> None:
    result = match(
        [expected(at=1, t=1.0), expected(at=2, t=2.0), expected(at=3, t=3.0)],
        [stored(at=1, t=1.0), stored(at=3, t=3.5), stored(at=4, t=4.0)],
        precision_ns=1,
    )
    assert [r.time_ns for r in result.missing] == [T0 + 2 * MS]
    assert [r.time_ns for r in result.extra] == [T0 + 4 * MS]
    assert [m.why for m in result.mismatched] == ["t=3.5 instead of 3.0"]
    assert not result.clean


def test_tags_and_field_sets_are_compared_unless_told_not_to() -> None:
    wrong = [stored(at=1, tags={"site": "b"}, t=1.0, extra=2.0)]
    (mismatch,) = match([expected(at=1, t=1.0, u=2.0)], wrong, precision_ns=1).mismatched
    assert "tags {'site': 'b'} instead of {'site': 'a'}" in mismatch.why
    assert "fields missing: u" in mismatch.why and "fields not sent: extra" in mismatch.why
    assert match([expected(at=1, t=1.0)], [stored(at=1, tags={}, t=1.0)], 1, check_tags=False).clean


def test_millisecond_stores_match_on_milliseconds() -> None:
    reading = expected(at=1, t=1.0)._replace(time_ns=T0 + MS + 123)
    assert match([reading], [stored(at=1, t=1.0)], precision_ns=MS).clean
    assert not match([reading], [stored(at=1, t=1.0)], precision_ns=1).clean


def test_receive_timed_readings_match_on_content_field_by_field() -> None:
    # Three one-field ESPHome messages received within one millisecond: a ms store folds them into one point.
    want = [
        expected(at=0, received=True, t=1.0),
        expected(at=0, received=True, p=2.0),
        expected(at=5, received=True, t=1.0),
    ]
    got = [
        stored(at=7, tags={"source": "x"}, t=1.0, p=2.0),
        stored(at=9, tags={"source": "x"}, t=1.0),
    ]
    assert match(want, got, precision_ns=MS).clean
    result = match(want, [*got, stored(at=11, tags={"source": "x"}, t=1.0)], precision_ns=MS)
    assert (len(result.missing), len(result.extra)) == (0, 1)
    result = match(want, got[:1], precision_ns=MS)
    assert (len(result.missing), len(result.extra)) == (1, 0)


def _sqlite(path: Path, rows: list[tuple[str, str, str, str, int, object, str]]) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def test_sqlite_store_folds_rows_into_readings(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    tags = orjson.dumps({"site": "a"}).decode()
    _sqlite(
        path,
        [
            ("telemetry", "d1", tags, "t", T0, 21.5, "0-1"),
            ("telemetry", "d1", tags, "on", T0, 1, "0-1"),
            ("telemetry", "d1", tags, "t", T0 + MS, 22.0, "0-2"),
            ("telemetry", "other", "{}", "t", T0, 1.0, "x"),
            ("alerts", "d1", "{}", "state", T0, "firing", "x"),
        ],
    )
    got = list(SqliteStore(path).readings({"telemetry"}, {"d1"}))
    assert got == [
        StoredReading("telemetry", "d1", {"site": "a"}, T0, {"t": 21.5, "on": 1}),
        StoredReading("telemetry", "d1", {"site": "a"}, T0 + MS, {"t": 22.0}),
    ]


@pytest.mark.parametrize(("drop_last", "exit_code"), [(False, 0), (True, 1)])
def test_verify_command_exit_code_and_summary(tmp_path: Path, drop_last: bool, exit_code: int) -> None:
    manifest = Manifest(readings=[expected(at=1, t=1.0), expected(at=2, t=2.0)])
    manifest.write_jsonl(tmp_path / "m.jsonl")
    tags = orjson.dumps({"site": "a"}).decode()
    rows = [("telemetry", "d1", tags, "t", T0 + MS, 1.0, "0-1"), ("telemetry", "d1", tags, "t", T0 + 2 * MS, 2.0, "")]
    _sqlite(tmp_path / "g.db", rows[:1] if drop_last else rows)
    args = ["verify", "--manifest", str(tmp_path / "m.jsonl"), "--sqlite", str(tmp_path / "g.db")]
    result = CliRunner().invoke(app, [*args, "--report", str(tmp_path / "r.json")])
    assert result.exit_code == exit_code, result.output
    report = orjson.loads((tmp_path / "r.json").read_bytes())
    assert report["missing"] == int(drop_last) and report["extra"] == 0
    assert f"missing     {int(drop_last)}" in result.output
    if drop_last:
        assert "d1 @ 1795773600002000000 id=0-2 t=2.0" in result.output


def test_verify_command_refuses_a_missing_store(tmp_path: Path) -> None:
    Manifest(readings=[expected(at=1, t=1.0)]).write_jsonl(tmp_path / "m.jsonl")
    result = CliRunner().invoke(app, ["verify", "--manifest", str(tmp_path / "m.jsonl"), "--sqlite", "/nonexistent"])
    assert result.exit_code == 2 and "no SQLite file" in result.output
