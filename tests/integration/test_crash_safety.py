"""At-least-once delivery, with real processes: kill -9, SIGTERM, restarts and torn journal tails.

Mosquitto, VictoriaMetrics and the gateway run as real processes; the gateway keeps its journal (SQLite, WAL)
in `tmp_path`, the same file across restarts. VictoriaMetrics keeps duplicate samples, so every sample that is
written twice is counted; it is never killed (a SIGKILLed VM loses its last ~5 s). `pytest -s` shows the figures.
"""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import sqlite3
import struct
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import orjson
import pytest

from device_sim.blast import blast, encode_all
from device_sim.fleet import FleetSpec, generate
from device_sim.manifest import Manifest
from tests.support.gateway_proc import GatewayProcess, sqlite_rows, store_env
from tests.support.servers import Mosquitto, VictoriaMetrics
from tests.support.storecheck import Comparison, Key, compare, vm_readings
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration

FIELDS = 4  # temperature, humidity, battery, relay: samples per reading in VictoriaMetrics, rows in SQLite
TELEMETRY = '{__name__=~"telemetry_.*"}'
SINKS = ("influx", "sqlite")
ACKED = "gateway_messages_acknowledged"


# -- helpers ---------------------------------------------------------------------------------------------------


def _gateway(tmp_path: Path, broker: Mosquitto, vm: VictoriaMetrics) -> GatewayProcess:
    """One gateway identity: fixed client id (persistent session) and one journal across its restarts."""
    return GatewayProcess(tmp_path / "gateway", store_env(tmp_path, broker.url, vm.url, f"gw-crash-{broker.port}"))


class Publisher(threading.Thread):
    """Publishes pre-encoded QoS 1 packets with device_sim.blast, all at once (`rate` 0) or in slices paced
    at `rate` messages a second, until done or `halt()`. `sent` counts the prefix the broker acknowledged."""

    def __init__(self, packets: Sequence[bytes], url: str, rate: float = 0, slice_size: int = 500) -> None:
        super().__init__(name="publisher", daemon=True)
        self._packets = packets
        self._url = url
        self._rate = rate
        self._slice = slice_size if rate else len(packets)
        self._halt = threading.Event()
        self.sent = 0
        self.error: str | None = None
        self.elapsed_s = 0.0

    def halt(self) -> None:
        self._halt.set()
        if self.ident is None:  # never started
            return
        self.join(30)
        assert not self.is_alive()

    def run(self) -> None:
        start = time.monotonic()
        try:
            for first in range(0, len(self._packets), self._slice):
                if self._rate and self._halt.wait(max(0.0, start + first / self._rate - time.monotonic())):
                    break
                stats = blast(self._packets[first : first + self._slice], self._url, client_id="crash-publisher")
                assert stats.acknowledged == stats.sent
                self.sent = first + stats.sent
        except Exception as exc:  # reported by finish()
            self.error = f"{type(exc).__name__}: {exc}"
        self.elapsed_s = time.monotonic() - start

    def finish(self, timeout_s: float) -> int:
        self.join(timeout_s)
        assert not self.is_alive(), "publisher still running"
        assert self.error is None, self.error
        return self.sent


def _rss_mb(gateway: GatewayProcess) -> tuple[float, float]:
    """(current, peak) resident set size of the gateway process in MiB; zeros when it cannot be read."""
    assert gateway.proc is not None
    try:
        status = Path(f"/proc/{gateway.proc.pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
    return int(values.get("VmRSS", 0)) / 1024, int(values.get("VmHWM", 0)) / 1024


def _pending_in_journal(metrics: dict[str, float]) -> float:
    return metrics.get("gateway_journal_bytes", 0) + sum(
        metrics.get(f'gateway_sink_pending_chunks{{sink="{sink}"}}', 0) for sink in SINKS
    )


def _wait_idle(gateway: GatewayProcess, timeout_s: float, quiet_s: float = 1.5) -> dict[str, float]:
    """Wait until the gateway receives nothing new for `quiet_s` and both sinks have stored the whole journal."""
    last_received = -1.0
    quiet_since = time.monotonic()
    metrics: dict[str, float] = {}

    def idle() -> bool:
        nonlocal last_received, quiet_since
        metrics.update(gateway.metrics())
        received = metrics["gateway_messages_received"]
        if received != last_received or _pending_in_journal(metrics):
            last_received, quiet_since = received, time.monotonic()
            return False
        return time.monotonic() - quiet_since >= quiet_s

    wait_until(
        idle,
        timeout_s,
        f"the gateway idle (nothing received for {quiet_s} s, the journal stored)",
        lambda: f"{metrics}\n{gateway.log_tail()}",
        interval=0.1,
    )
    return metrics


def _wait_stored(gateway: GatewayProcess, db: Path, readings: int, timeout_s: float) -> float:
    """Wait until the SQLite sink holds `readings` readings and the journal is drained; returns the time taken."""
    began = time.monotonic()
    rows = 0

    def stored() -> bool:
        nonlocal rows
        if _pending_in_journal(gateway.metrics()):
            return False
        rows = sqlite_rows(db)
        return rows >= readings * FIELDS

    wait_until(
        stored,
        timeout_s,
        f"{readings} readings in the SQLite sink and the journal drained",
        lambda: f"SQLite sink holds {rows / FIELDS:.0f} of {readings} readings\n{gateway.log_tail()}",
        interval=0.5,
    )
    _wait_idle(gateway, timeout_s=max(5.0, began + timeout_s - time.monotonic()), quiet_s=0.5)
    return time.monotonic() - began


def _stop_cleanly(gateway: GatewayProcess, timeout_s: float = 40) -> float:
    """Seconds SIGTERM took to exit 0; fails (TimeoutExpired) when the process is still there after `timeout_s`."""
    began = time.monotonic()
    code = gateway.stop(timeout_s=timeout_s)
    took = time.monotonic() - began
    assert code == 0, gateway.log_tail()
    return took


def _compare_telemetry(manifest: Manifest, vm: VictoriaMetrics) -> tuple[Comparison, int]:
    """What VictoriaMetrics holds against the manifest, and its count of telemetry samples (after a flush)."""
    vm.force_flush()
    return compare(manifest, vm), vm.count_samples(TELEMETRY)


def _keys_of(manifest: Manifest) -> dict[str, Key]:
    """Reading id -> (device, ms), the key storecheck compares by."""
    return {r.id: (r.device, r.time_ns // 1_000_000) for r in manifest.readings}


# -- journal files (read from copies only: opening the live file would recover and checkpoint it) -------------


class JournalState(NamedTuple):
    dedup_ids: set[str]  # reading ids whose message was committed (and so may have been acknowledged)
    dedup_keys: int  # rows x keys, what the gateway restores into its window
    outbox: set[Key]  # readings committed and not yet stored by every sink
    last_seq: int


def _read_journal(files: dict[str, Path], scratch: Path) -> JournalState:
    """The journal as SQLite sees it when opened from exactly these files ({suffix: source}), via a copy."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    for suffix, source in files.items():
        shutil.copyfile(source, scratch / f"journal.db{suffix}")
    dedup_ids: set[str] = set()
    dedup_keys = 0
    outbox: set[Key] = set()
    last_seq = 0
    with contextlib.closing(sqlite3.connect(scratch / "journal.db")) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        if "outbox" in tables:  # else nothing is in these files yet
            for (blob,) in conn.execute("SELECT keys FROM dedup"):
                keys = orjson.loads(blob)
                dedup_keys += len(keys)
                dedup_ids.update(reading_id for _device, reading_id in keys)
            for seq, blob in conn.execute("SELECT seq, readings FROM outbox"):
                last_seq = max(last_seq, seq)
                outbox.update((row[0], row[2] // 1_000_000) for row in orjson.loads(blob))
            last_seq = max(last_seq, conn.execute("SELECT coalesce(max(upto), 0) FROM cursors").fetchone()[0])
    shutil.rmtree(scratch)
    return JournalState(dedup_ids, dedup_keys, outbox, last_seq)


def _unbackfilled_wal_range(journal: Path) -> tuple[int, int]:
    """Byte range of the WAL holding committed frames not yet copied into the main file by a checkpoint.

    Cutting the WAL inside this range is a torn tail that leaves SQLite consistent (it recovers to the last
    whole commit before the cut). Cutting before it would drop frames whose pages are already in the main file,
    which no crash can do (SQLite syncs the WAL before it backfills) and which mixes page versions.
    """
    wal = Path(f"{journal}-wal").read_bytes()[:32]
    shm = Path(f"{journal}-shm").read_bytes()[:100]
    if len(wal) < 32:  # killed before the first commit since the WAL was reset: no frames at all
        return 0, 0
    page_size = struct.unpack(">I", wal[8:12])[0]
    max_frame = struct.unpack("=I", shm[16:20])[0]  # WalIndexHdr.mxFrame (native byte order)
    backfilled = struct.unpack("=I", shm[96:100])[0]  # WalCkptInfo.nBackfill
    frame = 24 + page_size
    return 32 + backfilled * frame, 32 + max_frame * frame


# -- 1. kill -9 three times during 200,000 messages ------------------------------------------------------------


def test_three_kill9_during_200k_messages_lose_nothing(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    seed = 20261127
    total = 200_000
    fleet = generate(FleetSpec(devices=2000, messages=total, seed=seed))
    packets = encode_all(fleet.outgoing)
    rng = random.Random(seed)
    # Kill points as shares of the messages acknowledged so far, one in each third of the run.
    kill_at = [int(rng.uniform(lo, hi) * total) for lo, hi in ((0.1, 0.3), (0.4, 0.6), (0.7, 0.9))]
    gateway = _gateway(tmp_path, mosquitto, victoria).start()
    began = time.monotonic()
    publisher = Publisher(packets, mosquitto.url)
    publisher.start()
    acked_before = 0.0  # by the gateway processes killed so far
    restarts: list[float] = []
    try:
        for threshold in kill_at:
            # The whole run's budget of 150 s, shared by the three waits.
            gateway.wait_for(ACKED, threshold - acked_before, timeout_s=max(0.0, began + 150 - time.monotonic()))
            time.sleep(rng.uniform(0.0, 0.3))  # the scenario: a kill at a random moment, not at a metrics poll
            metrics = gateway.metrics()
            rss, peak = _rss_mb(gateway)
            gateway.kill()
            acked_before += metrics["gateway_messages_acknowledged"]
            t = time.monotonic()
            gateway.start()
            restarts.append(time.monotonic() - t)
            print(
                f"\nkill -9 at {time.monotonic() - began:5.1f} s: ~{acked_before:,.0f} acknowledged in all, "
                f"journal {metrics['gateway_journal_bytes']:,.0f} B, RSS {rss:.0f} MiB (peak {peak:.0f}); "
                f"up again in {restarts[-1]:.2f} s"
            )
        published = publisher.finish(120)
        assert published == total
        _wait_stored(gateway, tmp_path / "gateway.db", total, timeout_s=150)
        metrics = gateway.metrics()
        rss, peak = _rss_mb(gateway)
        elapsed = time.monotonic() - began
        stop_s = _stop_cleanly(gateway)
    finally:
        gateway.kill()

    result, samples = _compare_telemetry(fleet.manifest, victoria)
    print(
        f"200k run: published in {publisher.elapsed_s:.1f} s, all stored after {elapsed:.1f} s with 3 kills "
        f"(restarts took {', '.join(f'{r:.2f}' for r in restarts)} s); last gateway: "
        f"{metrics['gateway_readings_duplicate']:,.0f} duplicates dropped, RSS {rss:.0f} MiB (peak {peak:.0f}), "
        f"SIGTERM stop {stop_s:.1f} s\nVictoriaMetrics: {result.stored:,} distinct readings, {samples:,} samples, "
        f"missing {len(result.missing)}, extra {len(result.extra)}, mismatched {len(result.mismatched)}, "
        f"duplicated samples {result.duplicated_samples:,} ({result.duplicated_samples / FIELDS:,.0f} readings)"
    )
    assert (len(result.missing), len(result.extra), len(result.mismatched)) == (0, 0, 0), result.missing[:5]
    assert result.stored == total
    assert sqlite_rows(tmp_path / "gateway.db") == total * FIELDS
    # Exactly 200,000 readings as InfluxDB counts them (one point per series and timestamp: result.stored above),
    # and exactly once in SQLite, which overwrites like InfluxDB. VictoriaMetrics keeps a re-written sample
    # twice, and a kill that lands after it accepted a batch but before the journal committed the sink's
    # cursor makes the restarted gateway write that batch again (README, "Stored once"): at most one batch a
    # kill, never a reading that was not sent.
    assert result.duplicated_samples <= 3 * 5000 * FIELDS, (
        f"{result.duplicated_samples:,} samples ({result.duplicated_samples // FIELDS:,} readings) stored twice"
    )
    assert samples == total * FIELDS + result.duplicated_samples


# -- 2. SIGTERM mid-stream -------------------------------------------------------------------------------------


def test_sigterm_mid_stream_exits_0_within_30s_and_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    total = 40_000
    fleet = generate(FleetSpec(devices=400, messages=total, seed=2))
    gateway = _gateway(tmp_path, mosquitto, victoria).start()
    publisher = Publisher(encode_all(fleet.outgoing), mosquitto.url)
    publisher.start()
    try:
        acked = gateway.wait_for("gateway_messages_acknowledged", total * 0.4, timeout_s=60)
        assert acked >= total * 0.4, gateway.log_tail()
        before = gateway.metrics()
        stop_s = _stop_cleanly(gateway, timeout_s=30)  # within 30 s, or the stop fails
        stopped = [line for line in gateway.log_tail(10).splitlines() if "stopped:" in line]
        print(
            f"\nSIGTERM after {before['gateway_messages_acknowledged']:,.0f} acknowledged "
            f"(journal {before['gateway_journal_bytes']:,.0f} B): exit 0 in {stop_s:.2f} s\n  {stopped[-1:]}"
        )
        gateway.start()
        assert publisher.finish(60) == total
        took = _wait_stored(gateway, tmp_path / "gateway.db", total, timeout_s=90)
        metrics = gateway.metrics()
        _stop_cleanly(gateway)
    finally:
        gateway.kill()

    result, samples = _compare_telemetry(fleet.manifest, victoria)
    print(
        f"after the restart: stored the rest in {took:.1f} s, {metrics['gateway_readings_duplicate']:,.0f} "
        f"redelivered duplicates dropped; VictoriaMetrics: {result.stored:,} readings, {samples:,} samples, "
        f"missing {len(result.missing)}, duplicated samples {result.duplicated_samples}"
    )
    assert (len(result.missing), len(result.extra), len(result.mismatched)) == (0, 0, 0)
    assert result.duplicated_samples == 0
    assert samples == total * FIELDS


# -- 3. the same messages again after a restart ----------------------------------------------------------------


def test_dedup_window_survives_a_restart(tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics) -> None:
    total = 10_000
    fleet = generate(FleetSpec(devices=100, messages=total, seed=3))
    packets = encode_all(fleet.outgoing)
    gateway = _gateway(tmp_path, mosquitto, victoria).start()
    try:
        blast(packets, mosquitto.url)
        _wait_stored(gateway, tmp_path / "gateway.db", total, timeout_s=60)
        _stop_cleanly(gateway)
        victoria.force_flush()
        before = victoria.count_samples(TELEMETRY)
        assert before == total * FIELDS

        gateway.start()
        blast(packets, mosquitto.url)  # the same ids, published again
        acked = gateway.wait_for("gateway_messages_acknowledged", total, timeout_s=60)
        metrics = _wait_idle(gateway, timeout_s=30)
        _stop_cleanly(gateway)
    finally:
        gateway.kill()

    restored = re.findall(r"restored (\d+) dedup keys", gateway.log_path.read_text())
    victoria.force_flush()
    after = victoria.count_samples(TELEMETRY)
    print(
        f"\nrepublished {total:,} after a restart ({restored[-1:]} dedup keys restored): acknowledged {acked:,.0f}, "
        f"duplicates {metrics['gateway_readings_duplicate']:,.0f}, accepted {metrics['gateway_readings_accepted']:,.0f}"
        f"; VictoriaMetrics samples {before:,} -> {after:,}"
    )
    assert acked == total
    assert metrics["gateway_readings_duplicate"] == total
    assert metrics["gateway_readings_accepted"] == 0
    assert after == before
    assert compare(fleet.manifest, victoria).duplicated_samples == 0


# -- 4. torn journal tails -------------------------------------------------------------------------------------


def test_torn_journal_tail_20_restarts(tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics) -> None:
    """20 kill -9 at random moments under load; after every second one, the WAL is also cut at a random byte
    of its tail (committed frames not yet checkpointed into the main file: a disk that lost its last writes)."""
    rng = random.Random(4)
    rounds = 20
    journal = tmp_path / "journal.db"
    wal = Path(f"{journal}-wal")
    load = generate(FleetSpec(devices=300, messages=90_000, seed=4))
    final = generate(FleetSpec(devices=100, messages=3_000, seed=5, id_pattern="final-{n:04d}"))
    gateway = _gateway(tmp_path, mosquitto, victoria)
    publisher = Publisher(encode_all(load.outgoing), mosquitto.url, rate=2500)
    startups: list[float] = []
    cut_ids: set[str] = set()  # committed before a cut, gone after it: lost if they had been acknowledged
    must_store: set[Key] = set()  # in the outbox of the main file, or of what SQLite recovers after a cut
    main_keys_lost: set[str] = set()  # keys in the main file that a cut took away (must stay empty)
    restore_mismatches: list[tuple[int, int, int]] = []  # (round, keys in the journal, keys the gateway restored)
    cuts = 0
    expect_restored: int | None = None
    began = time.monotonic()
    try:
        for n in range(rounds):
            log_offset = gateway.log_path.stat().st_size if gateway.log_path.exists() else 0
            t = time.monotonic()
            gateway.start()  # raises unless /metrics answers and the broker is connected within 20 s
            startups.append(time.monotonic() - t)
            if expect_restored is not None:
                with gateway.log_path.open("rb") as f:
                    f.seek(log_offset)
                    found = re.findall(rb"restored (\d+) dedup keys", f.read())
                restored = int(found[-1]) if found else 0
                if restored != expect_restored:
                    restore_mismatches.append((n + 1, expect_restored, restored))
                expect_restored = None
            if n == 0:
                publisher.start()  # once the gateway's session is subscribed, so the broker keeps every message
            time.sleep(rng.uniform(0.3, 1.2))  # the scenario: a kill -9 at a random moment under load
            assert gateway.proc is not None and gateway.proc.poll() is None, gateway.log_tail()
            metrics = gateway.metrics()
            gateway.kill()
            line = (
                f"round {n + 1:2d}: up in {startups[-1]:.2f} s, received {metrics['gateway_messages_received']:6,.0f}"
                f", journal commits {metrics['gateway_journal_commits']:3.0f}, kill -9"
            )
            if n % 2:
                begin, end = _unbackfilled_wal_range(journal)
                size = wal.stat().st_size
                full = _read_journal({"": journal, "-wal": wal}, tmp_path / "snapshot")
                main = _read_journal({"": journal}, tmp_path / "snapshot")
                if end > begin:
                    cut = rng.randrange(begin, end)
                    with wal.open("r+b") as f:
                        f.truncate(cut)
                    cuts += 1
                    line += f", WAL cut at {cut:,} of {size:,} B (not checkpointed: {begin:,}..{end:,})"
                else:
                    line += f", WAL of {size:,} B all checkpointed: not cut"
                torn = _read_journal({"": journal, "-wal": wal}, tmp_path / "snapshot")
                cut_ids |= full.dedup_ids - torn.dedup_ids
                main_keys_lost |= main.dedup_ids - torn.dedup_ids
                must_store |= main.outbox | torn.outbox
                expect_restored = torn.dedup_keys
                line += (
                    f"; seq {full.last_seq} -> {torn.last_seq} (main file {main.last_seq}), "
                    f"keys {len(full.dedup_ids)} -> {len(torn.dedup_ids)} (main file {len(main.dedup_ids)})"
                )
            print(("\n" if n == 0 else "") + line)
        torn_s = time.monotonic() - began
        publisher.halt()
        published = publisher.finish(1)

        # A final clean run: drains what the broker kept, then stores a fresh batch, then stops on SIGTERM.
        t = time.monotonic()
        gateway.start()
        startups.append(time.monotonic() - t)
        _wait_idle(gateway, timeout_s=60)
        blast(encode_all(final.outgoing), mosquitto.url)
        _wait_idle(gateway, timeout_s=30)
        _stop_cleanly(gateway)
    finally:
        publisher.halt()
        gateway.kill()

    log = gateway.log_path.read_text(errors="replace")
    assert not list(tmp_path.glob("journal.db.damaged-*")), "the journal was found damaged and salvaged"
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :]
    assert not re.findall(r".* ERROR .*", log), re.findall(r".* ERROR .*", log)[:5]

    victoria.force_flush()
    stored, duplicated = vm_readings(victoria)
    load_keys = _keys_of(load.manifest)
    published_ids = {orjson.loads(m.payload)["id"] for m in load.outgoing[:published]}
    missing_load = {rid for rid in published_ids if load_keys[rid] not in stored}
    final_keys = _keys_of(final.manifest)
    missing_final = [k for k in final_keys.values() if k not in stored]
    extra = set(stored) - set(load_keys.values()) - set(final_keys.values())
    print(
        f"{rounds} kill -9 in {torn_s:.1f} s ({cuts} WAL tails cut), start-up max {max(startups):.2f} s "
        f"(median {sorted(startups)[len(startups) // 2]:.2f} s); published {published:,} + {len(final_keys):,}; "
        f"VictoriaMetrics: {len(stored):,} readings, {duplicated:,} duplicated samples; missing: "
        f"{len(missing_load)} of the load ({len(missing_load - cut_ids)} not explained by a cut; {len(cut_ids)} "
        f"committed keys cut in all), {len(missing_final)} of the final run; {len(must_store):,} readings from "
        f"journal outboxes checked"
    )
    assert max(startups) < 5.0
    assert restore_mismatches == []
    assert main_keys_lost == set()
    assert missing_final == []
    assert extra == set()
    assert must_store <= set(stored), sorted(must_store - set(stored))[:5]
    # Only a message whose commit a cut removed after it was acknowledged may be lost.
    assert missing_load <= cut_ids, sorted(missing_load - cut_ids)[:5]
