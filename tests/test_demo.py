"""`gateway demo` and `gateway query`: the README's first commands, run as a user would run them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from gateway.demo import TIMESTAMP_LAG_NS, FleetFeed, renumber
from gateway.sinks.sqlite import read_readings

DEVICES = 50


def _gateway(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 40
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _summary_count(output: str, label: str) -> int:
    match = re.search(rf"^\s+{label}\s+([\d,]+)", output, re.MULTILINE)
    assert match is not None, f"no '{label}' line in the summary:\n{output}"
    return int(match[1].replace(",", ""))


def _payload_time_ns(body: dict[str, object]) -> int:
    ts = body["ts"]
    if isinstance(ts, int):
        return ts * 1_000_000
    assert isinstance(ts, str)
    return int(datetime.fromisoformat(ts).timestamp() * 1000) * 1_000_000


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_demo_stores_every_device_and_reports_duplicates_and_rejections(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    began = time.time_ns()

    demo = _gateway("demo", "--duration", "8", "--db", str(db), cwd=tmp_path)

    output = demo.stdout
    assert demo.returncode == 0, f"stdout:\n{output}\nstderr:\n{demo.stderr}"
    assert "\x1b[" not in output  # not a terminal: plain lines
    assert re.search(r"^\s+\d+s  received [\d,]+  stored", output, re.MULTILINE), output  # status lines
    assert "http://127.0.0.1:" in output and "/metrics" in output
    assert f"gateway query --db {db}" in output

    readings = list(read_readings(db))
    assert {r.device for r in readings} == {f"dev-{n:05d}" for n in range(1, DEVICES + 1)}
    assert _summary_count(output, "stored") == len(readings)
    assert all(r.time_ns < time.time_ns() for r in readings), "device timestamps must lie in the past"
    assert min(r.time_ns for r in readings) >= began - 2 * TIMESTAMP_LAG_NS  # ... and be recent
    assert len({(r.device, r.reading_id) for r in readings}) == len(readings)

    # About 8 s x 50 devices x 5 msg/s, a few % of them resent or malformed; every message accounted for.
    published = _summary_count(output, "published")
    assert 1500 <= published <= 2500
    duplicates = _summary_count(output, "duplicates")
    rejected = _summary_count(output, "rejected")
    assert duplicates > 0
    assert rejected > 0
    assert _summary_count(output, "received") == published == len(readings) + duplicates + rejected
    reasons = re.search(r"^\s+rejected\s+[\d,]+ \((.*)\)$", output, re.MULTILINE)
    assert reasons is not None and "malformed_json" in reasons[1], output

    query = _gateway("query", "--db", str(db), cwd=tmp_path)
    assert query.returncode == 0, query.stderr
    rows = [
        line for line in query.stdout.splitlines() if re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  dev-", line)
    ]
    assert len(rows) == 20  # the default --limit
    assert "temperature=" in rows[0] and "site=site-" in rows[0]
    per_device = [line for line in query.stdout.splitlines() if re.match(r"dev-\d{5} +\d+ ", line)]
    assert len(per_device) == DEVICES

    one = _gateway("query", "--db", str(db), "--device", "dev-00007", "--limit", "3", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert [line.split()[1] for line in one.stdout.splitlines() if line[:2] == "20"] == ["dev-00007"] * 3


def test_demo_without_mosquitto_says_how_to_install_it(tmp_path: Path) -> None:
    env = {**os.environ, "MOSQUITTO_BIN": str(tmp_path / "no-such-mosquitto")}
    demo = _gateway("demo", "--duration", "1", "--db", str(tmp_path / "demo.db"), cwd=tmp_path, env=env)
    assert demo.returncode == 2
    assert "apt-get install mosquitto" in demo.stderr
    assert "make demo" in demo.stderr
    assert not (tmp_path / "demo.db").exists()


def test_query_without_a_database_fails_clearly(tmp_path: Path) -> None:
    query = _gateway("query", "--db", str(tmp_path / "missing.db"), cwd=tmp_path)
    assert query.returncode == 2
    assert "no database" in query.stderr


def test_fleet_slices_continue_ids_seqs_and_timestamps() -> None:
    now_ns = time.time_ns()
    interval_ns = 200_000_000  # 5 messages per second per device
    feed = FleetFeed(5, 5.0, seed=3, now_ns=now_ns)
    # The first reading is stamped a second before now; seq n of a device, in any slice, at origin + n intervals.
    origin_ns = (now_ns - TIMESTAMP_LAG_NS - interval_ns) // 1_000_000 * 1_000_000
    slices = [feed.next_slice(20, now_ns=now_ns) for _ in range(3)]

    ids: set[str] = set()
    for outgoing in slices:
        assert len(outgoing) == 5 * 20
        kinds = Counter(m.kind for m in outgoing)
        assert kinds["duplicate"] >= 1
        assert sum(n for kind, n in kinds.items() if kind.startswith("malformed:")) == 2
        valid: set[bytes] = set()
        for message in outgoing:
            if message.kind == "valid":
                body = orjson.loads(message.payload)
                assert body["id"] == f"{message.device}-{body['seq']:08d}"
                assert body["id"] not in ids, "an id repeats across slices"
                ids.add(body["id"])
                valid.add(message.payload)
                assert _payload_time_ns(body) == origin_ns + body["seq"] * interval_ns
            elif message.kind == "duplicate":
                # A resend is byte-identical to an earlier message of its slice, renumbered alike.
                assert message.payload in valid
    seqs = sorted(int(i.rsplit("-", 1)[1]) for i in ids if i.startswith("dev-00001-"))
    assert seqs[0] <= 2 and 40 < seqs[-1] <= 60  # the third slice carries on from seq 41


def test_renumber_shifts_id_and_seq_and_leaves_other_payloads_alone() -> None:
    payload = b'{"id":"dev-00001-00000007","seq":7,"ts":1,"metrics":{"a":1}}'
    assert renumber(payload, 100) == b'{"id":"dev-00001-00000107","seq":107,"ts":1,"metrics":{"a":1}}'
    assert renumber(payload, 0) == payload
    for other in (b'{"id":"dev-00001-000', b'{"metrics":{"a":1}}', b'{"id":"x-00000001","seq":2,"ts":1}'):
        assert renumber(other, 100) == other
