"""`gateway deadletter list` and `replay`: the rejected messages the journal keeps, summed up by reason, and run
again through the current configuration, so that data refused by a wrong mapping gets in once it is fixed.

Replay may run while the gateway runs: it has its own journal connection (WAL: the gateway keeps committing;
our short write transactions wait on busy_timeout) and writes to the sinks directly. For each batch of records:
decode them with a fresh Ingestor (its dedup window filled from the journal), write the readings to every sink,
then in one journal transaction record their dedup keys, delete the replayed records and give the records still
rejected their new reason. A crash between the sink write and that commit leaves the records in the journal;
replaying them again writes the same readings (same series and time), which InfluxDB and the SQLite sink
overwrite, so they are still stored once. A replayed record is gone, so a second replay stores nothing again.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from gateway.config.schema import BatchingConfig, GatewayConfig
from gateway.errors import PayloadRejected, PermanentSinkError, ReplayError, RetryableSinkError
from gateway.ingest.formats import native
from gateway.ingest.formats.timestamps import parse_rfc3339
from gateway.ingest.ingestor import Ingestor
from gateway.ingest.validate import Validator
from gateway.journal.schema import SCHEMA, add_dedup_keys, dedup_keys_since
from gateway.model import RawMessage, Reading
from gateway.reasons import Reason
from gateway.retry import Backoff
from gateway.sinks import Sink, build_sinks
from gateway.sqlitedb import open_wal

log = logging.getLogger(__name__)

BATCH_RECORDS = 500  # records decoded, written and deleted together: bounds memory and the journal's write lock
EXAMPLES_PER_REASON = 3
_PAYLOAD_EXCERPT_CHARS = 120


class RejectedRecord(NamedTuple):
    """One row of the journal's `rejected` table."""

    seq: int
    received_ns: int
    reason: str
    detail: str
    topic: str
    device: str | None
    measurement: str | None  # set for a reading a store refused; its payload is that reading
    payload: bytes
    payload_bytes: int
    truncated: bool  # only a prefix of the payload was kept: it cannot be replayed


class Example(NamedTuple):
    received_ns: int
    topic: str
    detail: str
    payload: str  # the first characters, for humans


class ReasonSummary(NamedTuple):
    reason: str
    messages: int
    first_ns: int
    last_ns: int
    not_replayable: int
    examples: list[Example]  # newest first


@dataclass
class ReplayReport:
    """What a replay did (or, dry, would do)."""

    dry_run: bool = False
    sinks: list[str] = field(default_factory=list)
    matched: int = 0  # records the filters selected
    replayed: int = 0  # records that now pass: their readings stored (or all duplicates); deleted
    readings_stored: int = 0
    duplicates: int = 0  # readings dropped as already seen
    not_replayable: int = 0  # payload kept only in part; left in the journal
    still_rejected: Counter[str] = field(default_factory=Counter)  # by the reason they are rejected for now
    examples: dict[str, list[Example]] = field(default_factory=dict)  # of those, a few per reason


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d|w)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(text: str, now_ns: int | None = None) -> int:
    """`30m`, `1h`, `2d`, `1w` (that long before now) or an RFC 3339 time with a zone -> epoch nanoseconds."""
    text = text.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative is not None:
        now = time.time_ns() if now_ns is None else now_ns
        return now - int(float(relative[1]) * _UNIT_S[relative[2]] * 1_000_000_000)
    try:
        return parse_rfc3339(text)
    except PayloadRejected:
        raise ValueError(
            f"{text!r} is neither a duration (30s, 30m, 1h, 2d, 1w) nor an RFC 3339 time with a zone "
            "(2026-11-27T10:15:00Z)"
        ) from None


def payload_excerpt(payload: bytes, limit: int = _PAYLOAD_EXCERPT_CHARS) -> str:
    text = payload[: limit * 4].decode("utf-8", errors="backslashreplace")
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _open(path: Path) -> sqlite3.Connection | None:
    """A connection of our own to the journal, or None when there is no journal (nothing was ever rejected)."""
    if not path.exists():
        return None
    try:
        # The schema too: a journal written before the `rejected` table existed simply has nothing to show.
        return open_wal(path, SCHEMA)
    except sqlite3.Error as exc:
        raise ReplayError(f"cannot open the journal {str(path)!r}: {exc}") from None


def _filters(reason: str | None, since_ns: int | None) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if reason is not None:
        clauses.append("reason = ?")
        params.append(reason)
    if since_ns is not None:
        clauses.append("received_ns >= ?")
        params.append(since_ns)
    return clauses, params


def list_rejected(
    journal_path: Path, reason: str | None = None, since_ns: int | None = None, examples: int = EXAMPLES_PER_REASON
) -> list[ReasonSummary]:
    """The rejected messages kept in the journal, by reason (most frequent first), with the newest examples."""
    conn = _open(journal_path)
    if conn is None:
        return []
    try:
        clauses, params = _filters(reason, since_ns)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        groups = conn.execute(
            "SELECT reason, count(*), min(received_ns), max(received_ns), sum(truncated) FROM rejected"
            f"{where} GROUP BY reason ORDER BY count(*) DESC, reason",
            params,
        ).fetchall()
        summaries = []
        for group_reason, count, first_ns, last_ns, truncated in groups:
            example_clauses, example_params = _filters(group_reason, since_ns)
            rows = conn.execute(
                f"SELECT received_ns, topic, detail, payload FROM rejected WHERE {' AND '.join(example_clauses)}"
                " ORDER BY seq DESC LIMIT ?",
                [*example_params, examples],
            ).fetchall()
            shown = [Example(ns, topic, detail, payload_excerpt(payload)) for ns, topic, detail, payload in rows]
            summaries.append(ReasonSummary(group_reason, count, first_ns, last_ns, truncated, shown))
        return summaries
    except sqlite3.Error as exc:
        raise ReplayError(f"cannot read the journal {str(journal_path)!r}: {exc}") from None
    finally:
        conn.close()


def replay(
    config: GatewayConfig,
    reason: str | None = None,
    since_ns: int | None = None,
    *,
    dry_run: bool = False,
    sinks: Sequence[Sink] | None = None,
    retry_for_s: float = 60.0,
) -> ReplayReport:
    """Run the matching records through `config` and store what now passes in its sinks (built from `config`
    unless given); a sink that keeps failing for `retry_for_s` stops the replay with ReplayError."""
    report = ReplayReport(dry_run=dry_run)
    conn = _open(config.journal.path)
    if conn is None:
        return report
    owned: list[Sink] = []
    try:
        if sinks is None and not dry_run:
            sinks = owned = build_sinks(config)
        replayer = _Replayer(config, conn, [] if dry_run else list(sinks or []), report, retry_for_s)
        clauses, params = _filters(reason, since_ns)
        after = 0
        while True:
            try:
                rows = conn.execute(
                    "SELECT seq, received_ns, reason, detail, topic, device, measurement, payload, payload_bytes,"
                    f" truncated FROM rejected WHERE {' AND '.join(['seq > ?', *clauses])} ORDER BY seq LIMIT ?",
                    [after, *params, BATCH_RECORDS],
                ).fetchall()
            except sqlite3.Error as exc:
                raise ReplayError(f"cannot read the journal {str(config.journal.path)!r}: {exc}") from None
            if not rows:
                break
            records = [RejectedRecord._make((*row[:-1], bool(row[-1]))) for row in rows]
            after = records[-1].seq
            replayer.replay(records)
    finally:
        for sink in owned:
            sink.close()
        conn.close()
    return report


class _Replayer:
    def __init__(
        self,
        config: GatewayConfig,
        conn: sqlite3.Connection,
        sinks: list[Sink],
        report: ReplayReport,
        retry_for_s: float,
    ) -> None:
        self._config = config
        self._conn = conn
        self._sinks = sinks
        self._report = report
        self._retry_for_s = retry_for_s
        report.sinks = [s.name for s in sinks]
        self._ingestor = Ingestor(config)
        self._validator = Validator(config.validation)
        window = self._ingestor.dedup_window
        if window is not None:
            # Every key the journal still holds, not only the last window_s: the records may be older than that.
            for key, seen_ns in dedup_keys_since(conn, 0):
                window.check_and_add(key, seen_ns)

    def replay(self, records: list[RejectedRecord]) -> None:
        report = self._report
        accepted: list[tuple[RejectedRecord, list[Reading]]] = []
        again: list[tuple[RejectedRecord, str, str]] = []
        for record in records:
            report.matched += 1
            if record.truncated:
                report.not_replayable += 1
                continue
            try:
                readings, duplicates = self._decode(record)
            except PayloadRejected as exc:
                again.append((record, exc.reason, exc.detail))
                continue
            report.duplicates += duplicates
            accepted.append((record, readings))
        refused = self._store(accepted) if self._sinks else {}
        done = [(record, readings) for record, readings in accepted if record.seq not in refused]
        again += [
            (record, Reason.STORE_REFUSED, refused[record.seq]) for record, _ in accepted if record.seq in refused
        ]
        if not report.dry_run:
            self._commit(done, again)
        report.replayed += len(done)
        report.readings_stored += sum(len(readings) for _, readings in done)
        for record, reason, detail in again:
            report.still_rejected[reason] += 1
            examples = report.examples.setdefault(reason, [])
            if len(examples) < EXAMPLES_PER_REASON:
                examples.append(Example(record.received_ns, record.topic, detail, payload_excerpt(record.payload)))

    def _decode(self, record: RejectedRecord) -> tuple[list[Reading], int]:
        """(new readings, duplicates), or PayloadRejected with the reason the current config gives."""
        if record.measurement is not None:
            # A reading a store refused: it passed the mappings and the dedup window once already.
            readings = native.decode(record.payload, record.device or "", record.measurement, record.received_ns)
            now_ns = time.time_ns()
            for reading in readings:
                self._validator.check_reading(reading, now_ns)
            return readings, 0
        outcome = self._ingestor.process(RawMessage(record.topic, record.payload, 1, record.received_ns))
        if outcome.rejection is not None:
            raise PayloadRejected(Reason(outcome.rejection.reason), outcome.rejection.detail)
        return outcome.readings, outcome.duplicates

    def _store(self, accepted: list[tuple[RejectedRecord, list[Reading]]]) -> dict[int, str]:
        """Write to every sink; returns the records (seq -> why) with a reading some sink refuses."""
        items = [(record.seq, reading) for record, readings in accepted for reading in readings]
        refused: dict[int, str] = {}
        for sink in self._sinks:
            section = getattr(self._config, sink.name, None)
            size = section.batch_size if isinstance(section, BatchingConfig) else 5000
            for start in range(0, len(items), size):
                self._write(sink, items[start : start + size], refused)
        return refused

    def _write(self, sink: Sink, items: list[tuple[int, Reading]], refused: dict[int, str]) -> None:
        backoff = Backoff(0.2, 10.0)
        deadline = time.monotonic() + self._retry_for_s
        while True:
            try:
                sink.write([reading for _, reading in items])
                return
            except RetryableSinkError as exc:
                delay = backoff.next_delay(at_least=exc.retry_after)
                if time.monotonic() + delay > deadline:
                    raise ReplayError(
                        f"sink {sink.name} did not accept a write for {self._retry_for_s:.0f} s ({exc}); "
                        "the records not replayed yet stay in the journal: run the replay again later"
                    ) from None
                log.warning("sink %s: %s; retrying %d readings in %.1f s", sink.name, exc, len(items), delay)
                time.sleep(delay)
            except PermanentSinkError as exc:
                if len(items) > 1:
                    # As the sink worker does: halve until the readings the store refuses are found.
                    middle = len(items) // 2
                    self._write(sink, items[:middle], refused)
                    self._write(sink, items[middle:], refused)
                    return
                refused.setdefault(items[0][0], f"{sink.name}: {exc}")
                return

    def _commit(
        self, done: list[tuple[RejectedRecord, list[Reading]]], again: list[tuple[RejectedRecord, str, str]]
    ) -> None:
        if not done and not again:
            return
        conn = self._conn
        stored = [reading for _, readings in done for reading in readings]
        try:
            conn.execute("BEGIN IMMEDIATE")
            if stored:
                # So that the gateway (at its next start) and a later replay know these readings.
                add_dedup_keys(conn, stored, time.time_ns())
            conn.executemany("DELETE FROM rejected WHERE seq = ?", [(record.seq,) for record, _ in done])
            conn.executemany(
                "UPDATE rejected SET reason = ?, detail = ? WHERE seq = ?",
                [(reason, detail, record.seq) for record, reason, detail in again],
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise ReplayError(
                f"journal {str(self._config.journal.path)!r}: {exc}; the readings just written stay as records in "
                "the journal, and replaying them again stores them once (the sinks overwrite the same points)"
            ) from None
