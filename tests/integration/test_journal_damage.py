"""A damaged journal, with real processes: the gateway starts, salvages what can be read, and counts the rest.

A gateway runs with VictoriaMetrics absent, so the 5,000 readings it acknowledges all stay in the journal's
outbox; it is killed, and the journal file is damaged in one of four ways: random bytes over a page of the
outbox in the middle of the file, the file cut to half its size, a damaged header, and random bytes inside a page
where SQLite's own check cannot see them. Then the gateway starts against a working VictoriaMetrics. It must start
(no crash loop), store every reading that could be salvaged, exactly once, and say how many could not be: in
`gateway_journal_salvage_lost_total` and in its log. Salvaged + lost = the 5,000 acknowledged, exactly.
The last test damages another table in-process, where the rows on the page can be counted.
"""

from __future__ import annotations

import contextlib
import random
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import orjson
import pytest

from device_sim.blast import blast, encode_all
from device_sim.fleet import FleetSpec, generate
from device_sim.manifest import Manifest
from gateway.journal.store import Journal
from gateway.model import Rejection
from tests.support.gateway_proc import GatewayProcess
from tests.support.servers import Mosquitto, VictoriaMetrics, free_port
from tests.support.storecheck import compare
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration

READINGS = 5000
FIELDS = 4  # numeric fields a reading: samples a reading in VictoriaMetrics
PAGE = 4096
LOST = 'gateway_journal_salvage_lost{table="outbox"}'
STORED = 'gateway_readings_stored{sink="influx"}'


class Unstored(NamedTuple):
    journal: bytes  # the journal file, every page in it (no WAL)
    manifest: Manifest


def _env(tmp_path: Path, broker: Mosquitto, influx_url: str) -> dict[str, str]:
    return {
        "GATEWAY_MQTT__URL": broker.url,
        "GATEWAY_MQTT__CLIENT_ID": f"gw-damage-{broker.port}",
        "GATEWAY_INFLUX__URL": influx_url,
        "GATEWAY_INFLUX__TOKEN": "test-token",
        "GATEWAY_JOURNAL__PATH": str(tmp_path / "journal.db"),
    }


@pytest.fixture(scope="module")
def unstored(tmp_path_factory: pytest.TempPathFactory) -> Unstored:
    """A journal whose outbox holds 5,000 acknowledged readings: written by a gateway whose store is absent."""
    tmp_path = tmp_path_factory.mktemp("unstored")
    fleet = generate(FleetSpec(devices=50, messages=READINGS, seed=11))
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: every write fails and is retried later
    with Mosquitto(tmp_path / "mosquitto") as broker:
        gateway = GatewayProcess(tmp_path / "gateway", _env(tmp_path, broker, nowhere), config=None).start()
        try:
            # In ten rounds, each committed before the next: a journal of many chunks, as a live gateway's is. At
            # once, a gateway that drains fast commits 5,000 readings in one or two chunks, and a cut in half
            # then takes everything (one chunk's blob spans the file's pages).
            packets = encode_all(fleet.outgoing)
            step = READINGS // 10
            for start in range(0, READINGS, step):
                stats = blast(packets[start : start + step], broker.url, client_id="damage-publisher")
                assert stats.acknowledged == len(packets[start : start + step])
                acked = gateway.wait_for("gateway_messages_acknowledged", start + step, timeout_s=30)
                assert acked == start + step, gateway.log_tail()
        finally:
            gateway.kill()  # kill -9: a SIGTERM would spend its 30 s retrying the absent store
    journal = tmp_path / "journal.db"
    with contextlib.closing(sqlite3.connect(journal)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page into the file the damage goes to
        in_outbox = sum(len(orjson.loads(blob)) for (blob,) in conn.execute("SELECT readings FROM outbox"))
    assert in_outbox == READINGS
    assert not Path(f"{journal}-wal").exists() or Path(f"{journal}-wal").stat().st_size == 0
    return Unstored(journal.read_bytes(), fleet.manifest)


# -- the damage ------------------------------------------------------------------------------------------------


def _outbox_page_in_the_middle(data: bytes, scratch: Path) -> int:
    """The page holding outbox data (a chunk's readings continue over pages) nearest the middle of the file."""
    scratch.write_bytes(data)
    with contextlib.closing(sqlite3.connect(scratch)) as conn:
        pages = [
            p for (p,) in conn.execute("SELECT pageno FROM dbstat WHERE name = 'outbox' AND pagetype = 'overflow'")
        ]
    scratch.unlink()
    middle = len(data) // PAGE // 2
    return min(pages, key=lambda p: abs(p - middle))


def _random_page(data: bytes, scratch: Path) -> bytes:
    page = _outbox_page_in_the_middle(data, scratch)
    start = (page - 1) * PAGE
    return data[:start] + random.Random(1).randbytes(PAGE) + data[start + PAGE :]


def _cut_in_half(data: bytes, _scratch: Path) -> bytes:
    return data[: len(data) // 2]


def _random_header(data: bytes, _scratch: Path) -> bytes:
    return random.Random(2).randbytes(100) + data[100:]


def _random_bytes_inside_a_page(data: bytes, scratch: Path) -> bytes:
    """Past the page's first 4 bytes (the pointer to the next page of its chunk): PRAGMA quick_check, which
    checks structure, finds nothing; the chunk's JSON is what is damaged."""
    page = _outbox_page_in_the_middle(data, scratch)
    start = (page - 1) * PAGE + 1024
    return data[:start] + random.Random(3).randbytes(512) + data[start + 512 :]


Damage = Callable[[bytes, Path], bytes]


def _start_on_damaged(
    tmp_path: Path, unstored: Unstored, damage: Damage, broker: Mosquitto, vm: VictoriaMetrics
) -> GatewayProcess:
    journal = tmp_path / "journal.db"
    journal.write_bytes(damage(unstored.journal, tmp_path / "scratch.db"))
    return GatewayProcess(tmp_path / "gateway", _env(tmp_path, broker, vm.url), config=None).start()


def _wait_for_log(gateway: GatewayProcess, pattern: str, timeout_s: float = 15) -> re.Match[str]:
    """The first match of `pattern` in the log, once there is one; fails with the log's tail."""
    wait_until(
        lambda: re.search(pattern, gateway.log_text()), timeout_s, f"a log line matching {pattern!r}", gateway.log_tail
    )
    found = re.search(pattern, gateway.log_text())
    assert found is not None
    return found


def _assert_stored_exactly(gateway: GatewayProcess, vm: VictoriaMetrics, manifest: Manifest, salvaged: int) -> None:
    """VictoriaMetrics holds exactly the salvaged readings, each once, each as it was published."""
    assert gateway.wait_for(STORED, salvaged, timeout_s=30) == salvaged, gateway.log_tail()
    vm.wait_for_samples(salvaged * FIELDS, '{__name__=~"telemetry_.*"}', timeout=30)
    result = compare(manifest, vm)
    assert (result.stored, len(result.missing)) == (salvaged, READINGS - salvaged)
    assert (result.extra, result.mismatched, result.duplicated_samples) == ([], [], 0)


def _int(text: str) -> int:
    return int(text.replace(",", ""))


# -- the tests -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [_random_page, _cut_in_half, _random_header],
    ids=["random-page-in-the-middle", "cut-in-half", "random-header"],
)
def test_a_damaged_journal_is_salvaged_and_what_is_lost_is_counted_exactly(
    tmp_path: Path, unstored: Unstored, damage: Damage, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    gateway = _start_on_damaged(tmp_path, unstored, damage, mosquitto, victoria)  # raises if it exits
    try:
        line = _wait_for_log(gateway, r"salvaged ([\d,]+) readings not yet stored \([^)]*\) and lost ([\d,]+)")
        salvaged, lost = _int(line[1]), _int(line[2])
        print(f"\n{damage.__name__}: salvaged {salvaged:,}, lost {lost:,}")
        assert salvaged + lost == READINGS
        assert gateway.metrics()[LOST] == lost
        if damage is _random_header:
            assert lost == 0  # the header is rebuilt: nothing else was damaged
        elif damage is _random_page:
            assert 0 < lost < 100  # what that page held (about 25 readings), and the readings it cut into
        else:
            assert 0 < lost < READINGS
        kept = [p for p in tmp_path.glob("journal.db.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
        assert len(kept) == 1, kept
        assert f"the damaged file is kept as {kept[0]}" in gateway.log_path.read_text()
        _assert_stored_exactly(gateway, victoria, unstored.manifest, salvaged)
        assert gateway.stop() == 0
        gateway.start()  # the new journal is sound: no second salvage, nothing stored twice
        assert gateway.log_path.read_text().count("salvaging what can be read") == 1
        assert gateway.metrics()[LOST] == 0
    finally:
        gateway.kill()
    assert compare(unstored.manifest, victoria).duplicated_samples == 0


def test_a_chunk_damaged_where_sqlite_cannot_see_keeps_its_readable_readings(
    tmp_path: Path, unstored: Unstored, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    gateway = _start_on_damaged(tmp_path, unstored, _random_bytes_inside_a_page, mosquitto, victoria)
    try:
        found = _wait_for_log(
            gateway, r"outbox chunk \d+ is damaged; (\d+) of its readings can be read and are stored, (\d+) lost"
        )
        lost = int(found[2])
        assert 0 < lost < 100  # 512 bytes hold a few readings, and the ones they cut into
        assert gateway.wait_for(LOST, lost, timeout_s=5) == lost
        _assert_stored_exactly(gateway, victoria, unstored.manifest, READINGS - lost)
    finally:
        gateway.kill()


def test_a_damaged_page_of_another_table_loses_only_the_rows_on_it(tmp_path: Path) -> None:
    """In-process, to count exactly: a leaf page of `rejected` in the middle of that table is overwritten; the
    walk skips just that page, and the rows on it are the ones counted lost (the table's seqs are dense)."""
    path = tmp_path / "journal.db"
    journal = Journal(path, ["influx"])
    rejections = [
        Rejection("invalid_schema", "metrics is required", f"plant/dev-{i}/data", b"x" * 200, 1_000 + i, f"dev-{i}")
        for i in range(2000)
    ]
    journal.commit([], [], rejections)
    journal.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        leaves = conn.execute(
            "SELECT pageno, ncell FROM dbstat WHERE name = 'rejected' AND pagetype = 'leaf' ORDER BY path"
        ).fetchall()
    page, on_it = leaves[len(leaves) // 2]
    data = path.read_bytes()
    start = (page - 1) * PAGE
    path.write_bytes(data[:start] + random.Random(4).randbytes(PAGE) + data[start + PAGE :])

    journal = Journal(path, ["influx"])
    try:
        assert journal.salvage is not None
        assert journal.damage_lost["rejected"] == on_it
        assert journal.damage_lost["outbox"] == 0
        assert journal.rejected_rows == 2000 - on_it
    finally:
        journal.close()
