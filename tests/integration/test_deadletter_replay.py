"""`gateway deadletter list` and `replay`: rejected messages kept in the journal, run again through a fixed
config, stored exactly once. Unit tests on a journal filled directly; integration tests with real Mosquitto and
the gateway process."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest

from gateway.config.schema import GatewayConfig, load_config
from gateway.errors import PermanentSinkError, ReplayError, RetryableSinkError
from gateway.ingest.deadletter import reading_payload
from gateway.journal.schema import add_dedup_keys
from gateway.journal.store import Journal
from gateway.model import Reading, Rejection
from gateway.rfc3339 import rfc3339
from gateway.sinks.sqlite import StoredReading, read_readings
from gateway.tools.replay import list_rejected, parse_since, replay
from tests.support.gateway_proc import GatewayProcess, run_cli
from tests.support.servers import Mosquitto

T0 = 1_795_774_500_000_000_000  # 2026-11-27T10:15:00Z

WRONG = """
mappings:
  - topic: plant/{{device}}/data
    format: native            # wrong: the devices send flat zigbee2mqtt-style JSON
  - topic: lab/{{device}}
    format: json              # wrong: the devices send line protocol
  - topic: devices/{{device}}/telemetry
    format: native
sqlite: {{path: {db}}}
journal: {{path: {journal}}}
"""
FIXED = WRONG.replace("format: native            # wrong", "format: json  # fixed").replace(
    "format: json              # wrong", "format: line  # fixed"
)


def _write_configs(tmp_path: Path) -> tuple[Path, Path]:
    values = {"db": tmp_path / "gateway.db", "journal": tmp_path / "journal.db"}
    wrong, fixed = tmp_path / "wrong.yaml", tmp_path / "fixed.yaml"
    wrong.write_text(WRONG.format(**values))
    fixed.write_text(FIXED.format(**values))
    return wrong, fixed


def _plant(i: int) -> bytes:
    return orjson.dumps({"temperature": 20 + i / 10, "humidity": 40 + i % 7, "battery": 97})


def _lab(i: int) -> bytes:
    return f"env,room=lab{i % 2} temperature={18 + i / 4},co2={400 + i}i {T0 + i * 1_000_000_000}".encode()


def _rejection(topic: str, payload: bytes, received_ns: int, reason: str = "invalid_schema") -> Rejection:
    return Rejection(reason, "metrics is required", topic, payload, received_ns, topic.split("/")[1])


def _stored(db: Path) -> list[StoredReading]:
    return list(read_readings(db)) if db.exists() else []


def _left(journal: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(journal)
    try:
        return conn.execute("SELECT reason, topic FROM rejected ORDER BY seq").fetchall()
    finally:
        conn.close()


@pytest.fixture
def configs(tmp_path: Path) -> tuple[GatewayConfig, GatewayConfig]:
    wrong, fixed = _write_configs(tmp_path)
    return load_config(wrong), load_config(fixed)


def _fill(config: GatewayConfig, rejections: Sequence[Rejection]) -> None:
    journal = Journal(config.journal.path, ["sqlite"])
    journal.commit([], [], rejections)
    journal.close()


# --- replay, on a journal filled directly ------------------------------------------------------------------------


def test_a_fixed_mapping_stores_the_rejected_messages_once(configs: tuple[GatewayConfig, GatewayConfig]) -> None:
    _, fixed = configs
    _fill(fixed, [_rejection(f"plant/press-{i % 3}/data", _plant(i), T0 + i) for i in range(12)])

    report = replay(fixed)
    assert (report.matched, report.replayed, report.readings_stored, report.duplicates) == (12, 12, 12, 0)
    assert report.sinks == ["sqlite"]
    stored = _stored(fixed.sqlite.path if fixed.sqlite else Path())
    assert sorted((r.device, r.time_ns, r.fields["temperature"]) for r in stored) == sorted(
        (f"press-{i % 3}", T0 + i, 20 + i / 10) for i in range(12)
    )
    assert _left(fixed.journal.path) == []

    again = replay(fixed)
    assert (again.matched, again.replayed, again.readings_stored) == (0, 0, 0)
    assert len(_stored(fixed.sqlite.path if fixed.sqlite else Path())) == 12


def test_still_rejected_records_stay_with_the_reason_the_current_config_gives(
    configs: tuple[GatewayConfig, GatewayConfig],
) -> None:
    wrong, _ = configs
    _fill(wrong, [_rejection("plant/press-1/data", _plant(1), T0), _rejection("lab/oven-1", _lab(1), T0, "x")])
    report = replay(wrong)
    assert report.replayed == 0
    assert report.still_rejected == {"invalid_schema": 1, "malformed_json": 1}
    assert [e.topic for e in report.examples["malformed_json"]] == ["lab/oven-1"]
    assert _left(wrong.journal.path) == [("invalid_schema", "plant/press-1/data"), ("malformed_json", "lab/oven-1")]
    assert _stored(wrong.sqlite.path if wrong.sqlite else Path()) == []


def test_reason_and_since_select_what_is_replayed(configs: tuple[GatewayConfig, GatewayConfig]) -> None:
    _, fixed = configs
    _fill(
        fixed,
        [
            _rejection("plant/press-1/data", _plant(1), T0),
            _rejection("plant/press-1/data", _plant(2), T0 + 10),
            _rejection("lab/oven-1", _lab(1), T0, "malformed_json"),
        ],
    )
    assert replay(fixed, reason="invalid_schema", since_ns=T0 + 5).replayed == 1
    assert _left(fixed.journal.path) == [("invalid_schema", "plant/press-1/data"), ("malformed_json", "lab/oven-1")]
    assert replay(fixed, reason="malformed_json").replayed == 1
    assert replay(fixed).replayed == 1
    assert len(_stored(fixed.sqlite.path if fixed.sqlite else Path())) == 3


def test_readings_already_stored_count_as_duplicates_and_their_records_go(
    configs: tuple[GatewayConfig, GatewayConfig],
) -> None:
    _, fixed = configs
    payload = orjson.dumps({"id": "boiler-1-7", "metrics": {"temperature": 71.5}})
    _fill(fixed, [_rejection("devices/boiler-1/telemetry", payload, T0)] * 2)
    conn = sqlite3.connect(fixed.journal.path)
    # As if the device re-sent it after the fix and the gateway stored it.
    add_dedup_keys(conn, [Reading("boiler-1", "telemetry", T0, {"temperature": 71.5}, {}, "boiler-1-7")], T0)
    conn.commit()
    conn.close()
    report = replay(fixed)
    assert (report.replayed, report.readings_stored, report.duplicates) == (2, 0, 2)
    assert _left(fixed.journal.path) == []


def test_a_reading_a_store_refused_is_replayed_as_it_was(configs: tuple[GatewayConfig, GatewayConfig]) -> None:
    _, fixed = configs
    reading = Reading("boiler-1", "heating", T0, {"temperature": 71.5, "on": True}, {"site": "a"}, "boiler-1-7")
    refused = Rejection(
        "store_refused", "sqlite: no", "(refused)", reading_payload(reading), T0 + 5, "boiler-1", "heating"
    )
    _fill(fixed, [refused])
    conn = sqlite3.connect(fixed.journal.path)  # it passed the dedup window once: its key is there
    add_dedup_keys(conn, [reading], T0)
    conn.commit()
    conn.close()
    assert replay(fixed).readings_stored == 1
    (stored,) = _stored(fixed.sqlite.path if fixed.sqlite else Path())
    assert (stored.measurement, stored.device, stored.time_ns, stored.tags) == (
        "heating",
        "boiler-1",
        T0,
        {"site": "a"},
    )
    assert stored.fields == {"temperature": 71.5, "on": 1}


def test_a_payload_kept_only_in_part_is_skipped_and_stays(configs: tuple[GatewayConfig, GatewayConfig]) -> None:
    _, fixed = configs
    journal = Journal(fixed.journal.path, ["sqlite"], max_payload_bytes=64)
    journal.commit([], [], [_rejection("plant/press-1/data", b" " * 100 + _plant(1), T0)])
    journal.close()
    report = replay(fixed)
    assert (report.matched, report.not_replayable, report.replayed) == (1, 1, 0)
    assert len(_left(fixed.journal.path)) == 1
    (summary,) = list_rejected(fixed.journal.path)
    assert summary.not_replayable == 1


def test_dry_run_writes_nothing(configs: tuple[GatewayConfig, GatewayConfig]) -> None:
    _, fixed = configs
    _fill(fixed, [_rejection("plant/press-1/data", _plant(1), T0), _rejection("lab/x", b"{", T0, "malformed_json")])
    report = replay(fixed, dry_run=True)
    assert (report.replayed, report.readings_stored, report.still_rejected) == (1, 1, {"invalid_line_protocol": 1})
    assert len(_left(fixed.journal.path)) == 2
    assert not (fixed.sqlite.path if fixed.sqlite else Path("/nonexistent")).exists()


class _RefusingSink:
    name = "sqlite"

    def __init__(self, refuse: str | None = None, down: bool = False) -> None:
        self.refuse = refuse
        self.down = down
        self.written: list[Reading] = []

    def write(self, readings: Sequence[Reading]) -> None:
        if self.down:
            raise RetryableSinkError("connection refused")
        if any(r.device == self.refuse for r in readings):
            raise PermanentSinkError("400: field type conflict")
        self.written.extend(readings)

    def close(self) -> None:
        pass


def test_a_reading_the_store_refuses_keeps_its_record(configs: tuple[GatewayConfig, GatewayConfig]) -> None:
    _, fixed = configs
    _fill(fixed, [_rejection(f"plant/press-{i}/data", _plant(i), T0 + i) for i in range(5)])
    sink = _RefusingSink(refuse="press-3")
    report = replay(fixed, sinks=[sink])
    assert (report.replayed, report.still_rejected) == (4, {"store_refused": 1})
    assert sorted(r.device for r in sink.written) == ["press-0", "press-1", "press-2", "press-4"]
    assert _left(fixed.journal.path) == [("store_refused", "plant/press-3/data")]


def test_a_sink_that_stays_down_stops_the_replay_and_keeps_the_records(
    configs: tuple[GatewayConfig, GatewayConfig],
) -> None:
    _, fixed = configs
    _fill(fixed, [_rejection("plant/press-1/data", _plant(1), T0)])
    with pytest.raises(ReplayError, match="did not accept a write"):
        replay(fixed, sinks=[_RefusingSink(down=True)], retry_for_s=0.5)
    assert len(_left(fixed.journal.path)) == 1


def test_list_groups_by_reason_with_the_newest_examples(configs: tuple[GatewayConfig, GatewayConfig]) -> None:
    wrong, _ = configs
    _fill(wrong, [_rejection(f"plant/press-{i}/data", _plant(i), T0 + i) for i in range(5)])
    _fill(wrong, [_rejection("lab/oven-1", _lab(1), T0 + 9, "malformed_json")])
    plant, lab = list_rejected(wrong.journal.path, examples=2)
    assert (plant.reason, plant.messages, plant.first_ns, plant.last_ns) == ("invalid_schema", 5, T0, T0 + 4)
    assert [e.topic for e in plant.examples] == ["plant/press-4/data", "plant/press-3/data"]
    assert (lab.reason, lab.messages, lab.examples[0].payload) == ("malformed_json", 1, _lab(1).decode())
    assert [s.reason for s in list_rejected(wrong.journal.path, since_ns=T0 + 5)] == ["malformed_json"]
    assert list_rejected(wrong.journal.path.with_name("none.db")) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("30m", T0 - 1800 * 10**9, id="minutes"),
        pytest.param("1h", T0 - 3600 * 10**9, id="hours"),
        pytest.param("2d", T0 - 2 * 86400 * 10**9, id="days"),
        pytest.param("2026-11-27T10:15:00Z", T0, id="rfc3339"),
        pytest.param("2026-11-27T11:15:00.000000001+01:00", T0 + 1, id="rfc3339-offset-ns"),
    ],
)
def test_since_takes_durations_and_rfc3339(text: str, expected: int) -> None:
    assert parse_since(text, now_ns=T0) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-11-27T10:15:00", "1y", "-1h"])
def test_since_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since(text)


# --- the command line -------------------------------------------------------------------------------------------


def _gateway(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cwd, timeout=120)


def test_cli_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("journal:\n  max_rejected: -1\nsqlite: {}\n")
    result = _gateway("deadletter", "list", "--config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "journal.max_rejected" in result.stderr
    _, fixed = _write_configs(tmp_path)
    result = _gateway("deadletter", "replay", "--config", str(fixed), "--since", "soon", cwd=tmp_path)
    assert result.returncode == 2
    assert "--since" in result.stderr
    result = _gateway("deadletter", "replay", "--config", str(fixed), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "nothing to replay" in result.stdout


# --- with real Mosquitto and the gateway process -----------------------------------------------------------------


class _Publisher:
    def __init__(self, broker: Mosquitto, client_id: str) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for topic, payload in messages:
            self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _gateway_env(broker: Mosquitto, client_id: str) -> dict[str, str]:
    return {"GATEWAY_MQTT__URL": broker.url, "GATEWAY_MQTT__CLIENT_ID": client_id}


@pytest.mark.integration
def test_a_mapping_fixed_after_its_messages_were_dead_lettered_replay_stores_them_exactly_once(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    wrong, fixed = _write_configs(tmp_path)
    db = tmp_path / "gateway.db"
    plant = [(f"plant/press-{i % 4}/data", _plant(i)) for i in range(40)]
    lab = [(f"lab/oven-{i % 2}", _lab(i)) for i in range(10)]
    publisher = _Publisher(mosquitto, "replay-pub")
    with GatewayProcess(tmp_path / "gw", _gateway_env(mosquitto, "gw-replay"), config=wrong) as gateway:
        published = time.time_ns()
        publisher.publish(plant[:20] + lab[:5])
        gateway.wait_for("gateway_messages_acknowledged", 25, timeout_s=15)
        # The scenario: `since` lies clearly between the two batches on the gateway's clock, so the filter
        # below has a first batch before it and a second after it.
        time.sleep(0.05)
        since = time.time_ns()
        time.sleep(0.05)
        publisher.publish(plant[20:] + lab[5:])
        gateway.wait_for("gateway_messages_acknowledged", 50, timeout_s=15)
        received = time.time_ns()
        metrics = gateway.metrics()
    publisher.close()
    assert metrics['gateway_messages_rejected{reason="invalid_schema"}'] == 40
    assert metrics['gateway_messages_rejected{reason="malformed_json"}'] == 10
    assert metrics["gateway_rejected_dropped"] == 0

    listed = _gateway("deadletter", "list", "--config", str(wrong), "--examples", "2", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "50 rejected messages in" in listed.stdout
    assert "invalid_schema: 40 messages, first " in listed.stdout
    assert "malformed_json: 10 messages, first " in listed.stdout
    assert "plant/press-3/data  metrics is required" in listed.stdout
    assert "... and 38 more" in listed.stdout

    # The new readings only, of one reason: the 20 plant messages published after `since`.
    filters = ["--reason", "invalid_schema", "--since", rfc3339(since)]
    result = _gateway("deadletter", "replay", "--config", str(fixed), *filters, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "replayed 20 of 20 rejected messages" in result.stdout
    assert "20 readings stored (sqlite)" in result.stdout
    assert len(_stored(db)) == 20

    filters = ["--reason", "malformed_json", "--since", "1h"]
    result = _gateway("deadletter", "replay", "--config", str(fixed), *filters, cwd=tmp_path)
    assert "replayed 10 of 10" in result.stdout, result.stdout + result.stderr

    result = _gateway("deadletter", "replay", "--config", str(fixed), "--dry-run", cwd=tmp_path)
    assert "dry run, nothing written: of 20 rejected messages in " in result.stdout
    assert ", 20 would be stored as 20 readings (0 duplicate readings dropped)" in result.stdout
    assert len(_stored(db)) == 30

    result = _gateway("deadletter", "replay", "--config", str(fixed), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "replayed 20 of 20" in result.stdout
    assert "still rejected: none" in result.stdout

    stored = _stored(db)
    assert len(stored) == 50
    plant_stored = sorted((r.device, r.fields["temperature"], r.fields["humidity"]) for r in stored if r.tags == {})
    assert plant_stored == sorted((f"press-{i % 4}", 20 + i / 10, float(40 + i % 7)) for i in range(40))
    # No timestamp in these payloads: each reading keeps the time the gateway received it, not the replay's.
    assert all(published <= r.time_ns <= received for r in stored if r.measurement == "telemetry")
    lab_stored = sorted(
        (r.device, r.time_ns, r.fields["co2"], r.tags["room"]) for r in stored if r.measurement == "env"
    )
    assert lab_stored == sorted((f"oven-{i % 2}", T0 + i * 10**9, 400.0 + i, f"lab{i % 2}") for i in range(10))

    result = _gateway("deadletter", "replay", "--config", str(fixed), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "nothing to replay" in result.stdout
    assert len(_stored(db)) == 50
    listed = _gateway("deadletter", "list", "--config", str(fixed), cwd=tmp_path)
    assert "no rejected messages in" in listed.stdout


@pytest.mark.integration
def test_replay_while_the_gateway_runs(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The gateway keeps committing (rejections and good readings) while replay reads, writes and deletes."""
    wrong, fixed = _write_configs(tmp_path)
    db = tmp_path / "gateway.db"
    publisher = _Publisher(mosquitto, "replay-live-pub")
    good = [
        (f"devices/boiler-{i % 5}/telemetry", orjson.dumps({"id": f"b-{i}", "metrics": {"t": float(i)}}))
        for i in range(3000)
    ]
    bad = [(f"plant/press-{i % 4}/data", _plant(i)) for i in range(3000)]
    with GatewayProcess(tmp_path / "gw", _gateway_env(mosquitto, "gw-replay-live"), config=wrong) as gateway:
        publisher.publish(bad[:1000])
        gateway.wait_for("gateway_messages_acknowledged", 1000, timeout_s=30)
        stop = threading.Event()

        def keep_publishing() -> None:
            for i in range(1000, 3000):
                if stop.is_set():
                    return
                publisher.publish([good[i], bad[i]])

        sender = threading.Thread(target=keep_publishing)
        sender.start()
        replays = []
        try:
            for _ in range(3):
                replays.append(_gateway("deadletter", "replay", "--config", str(fixed), cwd=tmp_path))
        finally:
            stop.set()
            sender.join(60)
        sent = gateway.metrics()["gateway_messages_received"]
        gateway.wait_for("gateway_messages_acknowledged", sent, timeout_s=30)
        metrics = gateway.metrics()
        log = gateway.log_tail(200)
    publisher.close()
    for result in replays:
        assert result.returncode == 0, result.stderr
        assert "locked" not in result.stderr + result.stdout
    assert "ERROR" not in log and "locked" not in log
    assert metrics["gateway_rejected_dropped"] == 0
    first = replays[0].stdout
    assert first.startswith("replayed "), first

    final = _gateway("deadletter", "replay", "--config", str(fixed), cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    rejected = int(metrics['gateway_messages_rejected{reason="invalid_schema"}'])
    plant = [r for r in _stored(db) if r.device.startswith("press-")]
    assert len(plant) == rejected
    assert len({(r.device, r.time_ns) for r in plant}) == rejected
    assert _left(tmp_path / "journal.db") == []
