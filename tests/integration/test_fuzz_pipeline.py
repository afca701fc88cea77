"""Fuzzing the pipeline with generated topics and payloads (tests/support/fuzz/): it never crashes, each message is
stored or rejected with a known reason, and the counts add up.

* In process: 10,000 hypothesis streams of messages through an `Ingestor` built from
  config/devices.example.yaml. Every outcome is a rejection with a known reason (never `internal_error`) or
  readings that are finite, printably named and in the 64-bit time range; each reading encodes to exactly one
  line-protocol point with its series, fields and time (read back strictly), and lands in a real SQLite sink.
* A running gateway: a seeded corpus of 3,000 messages through a real Mosquitto; its /metrics and its SQLite
  store must be exactly what an in-process Ingestor predicts for the same messages. SQLite only: VictoriaMetrics
  drops samples stamped before 1970 without an error (measured: HTTP 204, nothing exported), and the corpus has
  such times on purpose; tests/integration/test_hostile_ids.py checks VictoriaMetrics.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config.schema import DedupConfig, GatewayConfig, SqliteConfig, load_config
from gateway.ingest import deadletter
from gateway.ingest.ingestor import Ingestor, Outcome
from gateway.ingest.validate import MAX_TIME_NS, MIN_TIME_NS
from gateway.model import RawMessage, Reading
from gateway.reasons import Reason
from gateway.sinks.lineprotocol import LineEncoder
from gateway.sinks.sqlite import SqliteSink
from tests.support.fuzz.choices import ByteSource, RandomSource, chance
from tests.support.fuzz.messages import gen_message
from tests.support.fuzz.topics import DEVICES_CONFIG, MAX_TOPIC_BYTES, ROUTER
from tests.support.gateway_proc import GatewayProcess, sqlite_env
from tests.support.mqtt import publish_pipelined
from tests.support.servers import Mosquitto
from tests.support.strict_lineprotocol import parse_lines

STREAMS = 10_000  # hypothesis examples, 1 to 4 messages each
SEED = 20_261_127
CORPUS = 3_000  # messages published to the running gateway


def reason_codes() -> frozenset[str]:
    """Every reason code the ingest path rejects a message with: gateway/reasons.py's Reason, but for
    `internal_error` (what ingest makes of an unexpected exception, i.e. a bug) and the two that are not about
    a message received (a reading a store refused, a record MQTT cannot carry)."""
    not_ingest = {Reason.INTERNAL_ERROR, Reason.STORE_REFUSED, Reason.PUBLISH_FAILED}
    return frozenset(r.value for r in Reason if r not in not_ingest)


REASONS = reason_codes()


def test_reason_codes_are_found_in_the_source() -> None:
    assert "internal_error" not in REASONS
    assert {"payload_too_large", "invalid_device_id", "malformed_json", "invalid_line_protocol"} <= REASONS


# --- what must hold for every outcome -----------------------------------------------------------------------------


def config_for(db: Path) -> GatewayConfig:
    return load_config(DEVICES_CONFIG).model_copy(update={"sqlite": SqliteConfig(path=db)})


def is_printable_name(name: str) -> bool:
    return bool(name) and name.isprintable()


def is_publishable_topic(topic: str) -> bool:
    """What Mosquitto takes in a PUBLISH (measured: it disconnects a client for C0/C1 control characters and
    Unicode non-characters) and a `+`-led subscription receives (no `$...` topics)."""
    if not topic or len(topic.encode()) > MAX_TOPIC_BYTES or topic.startswith("$"):
        return False
    for char in topic:
        code = ord(char)
        if char in "+#" or code < 0x20 or 0x7F <= code <= 0x9F or 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
            return False
    return True


def check_reading(reading: Reading) -> None:
    assert is_printable_name(reading.device), reading
    assert is_printable_name(reading.measurement), reading
    assert MIN_TIME_NS <= reading.time_ns <= MAX_TIME_NS, reading
    assert reading.fields, reading
    for name, value in reading.fields.items():
        assert is_printable_name(name), reading
        assert type(value) in (float, bool, str), reading
        assert type(value) is not float or math.isfinite(value), reading
    for key, value in reading.tags.items():
        assert is_printable_name(key) and is_printable_name(value), reading
        assert key != "device", reading


def check_line_protocol(readings: Sequence[Reading], encoder: LineEncoder) -> None:
    """Encoded and read back strictly: one point per reading, with exactly its series, fields and time."""
    if not readings:
        return
    points = parse_lines(encoder.encode(readings).decode())
    assert len(points) == len(readings)
    for reading, point in zip(readings, points, strict=True):
        assert point.measurement == reading.measurement
        assert dict(point.tags) == {**reading.tags, "device": reading.device}
        assert len(point.tags) == len(reading.tags) + 1
        assert point.fields == reading.fields
        assert [type(v) for v in point.fields.values()] == [type(v) for v in reading.fields.values()]
        assert point.time_ns == reading.time_ns


def check_rejection(raw: RawMessage, outcome: Outcome, deadletter_template: str) -> str:
    rejection = outcome.rejection
    assert rejection is not None
    bug = f"a bug: {rejection.detail} on {raw.topic[:200]!r} {raw.payload[:300]!r}"
    assert rejection.reason != "internal_error", bug
    assert rejection.reason in REASONS, rejection
    assert rejection.detail, rejection
    assert not outcome.readings and outcome.duplicates == 0
    assert (rejection.topic, rejection.payload) == (raw.topic, raw.payload)
    deadletter.record(rejection)  # serialisable
    if is_publishable_topic(raw.topic):  # as every topic a broker delivers is
        topic = deadletter.topic_for(deadletter_template, rejection)
        assert is_publishable_topic(topic), f"dead-letter topic {topic[:100]!r}... ({len(topic.encode())} bytes)"
    return rejection.reason


class Checker:
    """Feeds a stream of messages to one Ingestor, and to one without dedup that tells how many readings the
    messages hold; checks every outcome and keeps the counts."""

    def __init__(self, config: GatewayConfig) -> None:
        self.ingestor = Ingestor(config)
        self.plain = Ingestor(config.model_copy(update={"dedup": DedupConfig(enabled=False)}))
        self.deadletter_template = config.mqtt.deadletter_topic
        self.encoder = LineEncoder(cache_size=50)
        self.new_readings: list[tuple[int, Reading]] = []  # (received_at_ns, reading), in order
        self._seen: dict[tuple[str, str], Reading] = {}
        self.messages = self.accepted = self.readings_in = self.duplicates = 0
        self.rejected: Counter[str] = Counter()

    def feed(self, topic: str, payload: bytes, received_at_ns: int) -> None:
        raw = RawMessage(topic, payload, 1, received_at_ns)
        outcome = self.ingestor.process(raw)  # must not raise
        plain = self.plain.process(raw)
        self.messages += 1
        if outcome.rejection is not None:
            self.rejected[check_rejection(raw, outcome, self.deadletter_template)] += 1
            assert plain.rejection is not None and plain.rejection.reason == outcome.rejection.reason
            return
        assert plain.rejection is None
        # Stored or rejected: a message accepted without a reading would vanish without a trace.
        assert plain.readings, f"accepted without a reading: {topic[:200]!r} {payload[:300]!r}"
        self.accepted += 1
        self.readings_in += len(plain.readings)
        self.duplicates += outcome.duplicates
        assert len(outcome.readings) + outcome.duplicates == len(plain.readings)
        fresh = iter(outcome.readings)
        next_fresh = next(fresh, None)
        for reading in plain.readings:
            check_reading(reading)
            key = (reading.device, reading.reading_id)
            if reading == next_fresh:
                self._seen[key] = reading
                next_fresh = next(fresh, None)
                continue
            # Dropped as a duplicate: its id was seen, and an id derived from the content means the same content.
            earlier = self._seen.get(key)
            assert earlier is not None, f"dropped, but its id was never seen: {reading}"
            if reading.reading_id.startswith(f"{reading.device}@"):
                assert earlier[:5] == reading[:5], f"{reading} dropped as a duplicate of a different {earlier}"
        assert next_fresh is None
        check_line_protocol(outcome.readings, self.encoder)
        self.new_readings += [(received_at_ns, r) for r in outcome.readings]

    @property
    def new(self) -> int:
        return len(self.new_readings)


# --- in process -----------------------------------------------------------------------------------------------

# What the fuzzing found, kept as fixed cases: each broke one of Checker's properties before its fix.
FOUND = [
    pytest.param("v1/devices/a/telemetry", b'{"ts": 1e306, "values": {"t": 1}}', id="thingsboard-ts-overflow"),
    pytest.param("senml/a", b'[{"n": "t", "v": 1, "t": 1e303}]', id="senml-time-overflow"),
    pytest.param("senml/a", b'[{"bv": 1' + b"0" * 400 + b', "n": "t", "v": 1.5}]', id="senml-huge-int-base-value"),
    pytest.param("v1/devices/a/telemetry", b'{"fw": "1.2", "l": [1]}', id="thingsboard-nothing-stored"),
    pytest.param("senml/a", b'[{"n": "fw", "vs": "1.2"}]', id="senml-nothing-stored"),
    pytest.param("lp/a", b"a\tb v=1", id="line-measurement-with-a-tab"),
    pytest.param("lp/a", b"cpu,core=0 v=1\ncpu,core=1 v=1\nmem v=1", id="line-same-values-other-series"),
    pytest.param("lp/" + "d" * (MAX_TOPIC_BYTES - 3), b"m v=1", id="dead-letter-topic-too-long"),
]


@pytest.mark.parametrize(("topic", "payload"), FOUND)
def test_what_fuzzing_found(tmp_path: Path, topic: str, payload: bytes) -> None:
    checker = Checker(config_for(tmp_path / "found.db"))
    checker.feed(topic, payload, time.time_ns())
    assert checker.messages == checker.accepted + checker.rejected.total() == 1


def stream_from(data: bytes) -> list[tuple[str, bytes]]:
    src = ByteSource(data)
    messages = [gen_message(src) for _ in range(src.integer(1, 3))]
    if chance(src, 30):  # a re-sent message, as after a reconnect
        messages.append(messages[src.integer(0, len(messages) - 1)])
    return messages


streams = st.binary(min_size=1024, max_size=1024).map(stream_from)  # about 75 bytes make a message


def test_fuzzed_messages_are_stored_or_rejected_with_a_reason(tmp_path: Path) -> None:
    config = config_for(tmp_path / "fuzz.db")
    totals: Counter[str] = Counter()
    sample: list[Reading] = []
    started = time.monotonic()

    @settings(
        max_examples=STREAMS,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(stream=streams)
    def run(stream: list[tuple[str, bytes]]) -> None:
        checker = Checker(config)
        for i, (topic, payload) in enumerate(stream):
            checker.feed(topic, payload, time.time_ns() + i)
        assert checker.messages == len(stream) == checker.accepted + checker.rejected.total()
        assert checker.readings_in == checker.new + checker.duplicates
        totals.update(streams=1, messages=checker.messages, accepted=checker.accepted, readings=checker.new)
        totals.update(duplicates=checker.duplicates, rejected=checker.rejected.total(), **checker.rejected)
        if len(sample) < 20_000:
            sample.extend(r for _, r in checker.new_readings)

    run()
    print(f"\n{time.monotonic() - started:.1f} s: {dict(totals)}")
    assert totals["streams"] >= STREAMS
    # The generator reaches every kind of outcome, not one corner: plenty accepted, duplicated and rejected.
    assert totals["accepted"] > totals["messages"] // 5 and totals["duplicates"] > 100
    assert {"malformed_json", "invalid_schema", "non_finite_value", "invalid_device_id", "no_mapping"} <= set(totals)
    check_sqlite_round_trip(tmp_path / "fuzz.db", sample)


def sqlite_rows(db: Path) -> dict[tuple[str, str, frozenset[tuple[str, str]], str, int], Any]:
    conn = sqlite3.connect(db)
    try:
        query = "SELECT measurement, device, tags, field, time_ns, value FROM readings"
        return {(m, d, frozenset(json.loads(t).items()), f, ns): v for m, d, t, f, ns, v in conn.execute(query)}
    finally:
        conn.close()


def stored_value(value: float | bool | str) -> float | int | str:
    return int(value) if type(value) is bool else value  # SQLite has no booleans: 0 / 1


def check_sqlite_round_trip(db: Path, readings: list[Reading]) -> None:
    """Every value lands in the SQLite sink under its series, field and time (a later reading with the same key
    replaces an earlier one, as the sink's INSERT OR REPLACE does)."""
    sink = SqliteSink(SqliteConfig(path=db))
    for start in range(0, len(readings), 2000):
        sink.write(readings[start : start + 2000])
    sink.close()
    expected = {
        (r.measurement, r.device, frozenset(r.tags.items()), name, r.time_ns): stored_value(value)
        for r in readings
        for name, value in r.fields.items()
    }
    assert sqlite_rows(db) == expected


# --- a running gateway ----------------------------------------------------------------------------------------


def _filter_matches(topic_filter: str, topic: str) -> bool:
    want, got = topic_filter.split("/"), topic.split("/")
    if want[-1] == "#":
        return len(got) >= len(want) - 1 and all(w in ("+", g) for w, g in zip(want[:-1], got, strict=False))
    return len(want) == len(got) and all(w in ("+", g) for w, g in zip(want, got, strict=True))


def make_corpus(seed: int, size: int) -> list[tuple[str, bytes]]:
    """Messages the broker takes and delivers to the gateway exactly once: publishable topics that match
    exactly one of its subscriptions. About one in twenty is re-sent later, as after a reconnect."""
    src = RandomSource(seed)
    corpus: list[tuple[str, bytes]] = []
    while len(corpus) < size:
        if corpus and chance(src, 5):
            corpus.append(corpus[src.integer(0, len(corpus) - 1)])
            continue
        topic, payload = gen_message(src)
        if is_publishable_topic(topic) and sum(_filter_matches(f, topic) for f in ROUTER.filters) == 1:
            corpus.append((topic, payload))
    return corpus


Key = tuple[str, str, frozenset[tuple[str, str]], str]  # measurement, device, tags, field


class Expected(NamedTuple):
    exact: dict[tuple[str, str, frozenset[tuple[str, str]], str, int], Any]  # device-timed rows, last one wins
    received: Counter[tuple[Key, Any]]  # receive-timed rows: time unknown until the gateway receives them
    offsets: dict[Key, set[int]]  # their times less the receive time (SenML's relative times)


def expected_rows(new_readings: Iterable[tuple[int, Reading]]) -> Expected:
    exact: dict[tuple[str, str, frozenset[tuple[str, str]], str, int], Any] = {}
    by_message: dict[int, dict[tuple[Key, int], Any]] = {}
    for received_at_ns, r in new_readings:
        for name, value in r.fields.items():
            key: Key = (r.measurement, r.device, frozenset(r.tags.items()), name)
            if r.time_from_device:
                exact[(*key, r.time_ns)] = stored_value(value)
            else:  # readings of one message share the receive time: the last with one key wins there too
                by_message.setdefault(received_at_ns, {})[(key, r.time_ns - received_at_ns)] = stored_value(value)
    received: Counter[tuple[Key, Any]] = Counter()
    offsets: dict[Key, set[int]] = {}
    for rows in by_message.values():
        for (key, offset), value in rows.items():
            received[(key, value)] += 1
            offsets.setdefault(key, set()).add(offset)
    return Expected(exact, received, offsets)


@pytest.mark.integration
def test_fuzzed_corpus_through_a_running_gateway(tmp_path: Path, mosquitto: Mosquitto) -> None:
    corpus = make_corpus(SEED, CORPUS)
    db = tmp_path / "gateway.db"
    env = sqlite_env(mosquitto.url, "gw-fuzz", db)
    gateway = GatewayProcess(tmp_path / "gw", env, config=DEVICES_CONFIG).start()
    try:
        published_from = time.time_ns()
        publish_pipelined(mosquitto, corpus, "fuzz-pub")
        acknowledged = gateway.wait_for("gateway_messages_acknowledged", len(corpus), timeout_s=60)
        # What the gateway should have made of them, by the same code in process.
        predicted = Checker(config_for(tmp_path / "unused.db"))
        for topic, payload in corpus:
            predicted.feed(topic, payload, time.time_ns())
        gateway.wait_for('gateway_readings_stored{sink="sqlite"}', predicted.new, timeout_s=30)
        received_until = time.time_ns()
        metrics = gateway.metrics()
        assert gateway.proc is not None and gateway.proc.poll() is None, "the gateway died"
    finally:
        exit_code = gateway.stop()
        gateway.kill()
    rejected = Counter(
        {k.split('"')[1]: int(v) for k, v in metrics.items() if k.startswith("gateway_messages_rejected{")}
    )
    print(
        f"\n{len(corpus)} messages: {predicted.accepted} accepted ({predicted.new} new readings, "
        f"{predicted.duplicates} duplicates), {predicted.rejected.total()} rejected {dict(predicted.rejected)}"
    )
    assert metrics["gateway_messages_received"] == len(corpus) == acknowledged
    assert metrics["gateway_messages_acknowledged"] == len(corpus)
    assert metrics["gateway_messages_pending"] == 0
    assert "internal_error" not in rejected and "store_refused" not in rejected
    assert +rejected == +predicted.rejected
    assert predicted.accepted + rejected.total() == len(corpus)
    assert metrics["gateway_readings_accepted"] == predicted.new
    assert metrics["gateway_readings_duplicate"] == predicted.duplicates
    assert metrics['gateway_readings_stored{sink="sqlite"}'] == predicted.new
    assert exit_code == 0, gateway.log_tail()
    assert "Traceback" not in gateway.log_path.read_text(errors="replace"), gateway.log_tail()

    expected = expected_rows(predicted.new_readings)
    rows = sqlite_rows(db)
    assert {k: v for k, v in rows.items() if k in expected.exact} == expected.exact
    receive_timed = {k: v for k, v in rows.items() if k not in expected.exact}
    assert Counter((k[:4], v) for k, v in receive_timed.items()) == expected.received
    for key, _value in receive_timed.items():
        assert any(published_from <= key[4] - offset <= received_until for offset in expected.offsets[key[:4]])
