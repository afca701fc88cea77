"""`gateway demo` and `gateway query`: the README's first commands, run as a user would run them."""

from __future__ import annotations

import functools
import io
import re
import sqlite3
import subprocess
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.text import Text

from gateway.alerts import load_rules
from gateway.config.schema import SqliteConfig
from gateway.demo import DEMO_SCRIPT, RULES_FILE, TIMESTAMP_LAG_NS, Episode, FleetFeed, Script, renumber
from gateway.demo.brokers.amqtt_broker import AmqttBroker
from gateway.demo.brokers.base import LOCALHOST
from gateway.demo.dashboard import Snapshot, render_dashboard, status_markup
from gateway.demo.run import fresh_store
from gateway.errors import DemoError
from gateway.sinks.sqlite import SqliteSink, read_readings
from gateway.tools.query import AlertRow
from tests.support.gateway_proc import run_cli
from tests.support.waits import wait_until

DEVICES = 50


def _gateway(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 40
) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cwd, env, timeout)


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
@pytest.mark.timeout(90)
def test_demo_stores_every_device_fires_alerts_and_query_shows_them(tmp_path: Path) -> None:
    """Issue 7, acceptance 1: the README's first command, 20 s, not on a terminal; nothing but Python needed."""
    db = tmp_path / "demo.db"
    began = time.time_ns()

    demo = _gateway("demo", "--duration", "20", "--db", str(db), cwd=tmp_path, timeout=80)

    output = demo.stdout
    assert demo.returncode == 0, f"stdout:\n{output}\nstderr:\n{demo.stderr}"
    assert "\x1b[" not in output  # not a terminal: plain lines, no dashboard
    assert re.search(r"^\s+\d+s  [\d,]+ msg/s  received [\d,]+  stored", output, re.MULTILINE), output  # status
    assert "broker   amqtt mqtt://127.0.0.1:" in output  # the embedded broker, in process
    assert "http://127.0.0.1:" in output and "/metrics" in output
    assert f"gateway query --db {db}" in output

    readings = list(read_readings(db, "telemetry"))
    assert {r.device for r in readings} == {f"dev-{n:05d}" for n in range(1, DEVICES + 1)}
    assert _summary_count(output, "stored") == len(readings)
    assert all(r.time_ns < time.time_ns() for r in readings), "device timestamps must lie in the past"
    assert min(r.time_ns for r in readings) >= began - 2 * TIMESTAMP_LAG_NS  # ... and be recent
    assert len({(r.device, r.reading_id) for r in readings}) == len(readings)
    # The script: dev-00007 overheats 3-13 s into the run, dev-00050 is silent from 4 s.
    assert max(float(r.fields["temperature"]) for r in readings if r.device == "dev-00007") > 35
    silent = sorted(r.time_ns for r in readings if r.device == "dev-00050")
    assert silent[-1] - silent[0] < 4 * 1_000_000_000

    # About 20 s x 50 devices x 5 msg/s, a few % of them resent or malformed; every message accounted for.
    published = _summary_count(output, "published")
    assert 4000 <= published <= 5100
    duplicates = _summary_count(output, "duplicates")
    rejected = _summary_count(output, "rejected")
    assert duplicates > 0
    assert rejected > 0
    assert _summary_count(output, "received") == published == len(readings) + duplicates + rejected
    reasons = re.search(r"^\s+rejected\s+[\d,]+ \((.*)\)$", output, re.MULTILINE)
    assert reasons is not None and "malformed_json" in reasons[1], output

    # Alerts: stored as measurement `alerts`, printed as they happen.
    alerts = list(read_readings(db, "alerts"))
    fired = {(a.tags["rule"], a.device) for a in alerts if a.fields["transition"] == "firing"}
    assert ("overheating", "dev-00007") in fired, alerts
    assert ("device_silent", "dev-00050") in fired, alerts
    assert {(a.tags["rule"], a.device) for a in alerts if a.fields["transition"] == "resolved"} >= {
        ("overheating", "dev-00007")
    }
    assert re.search(r"Z  alert firing +overheating  dev-00007  critical  value [\d.]+  threshold 35$", output, re.M)
    assert re.search(r"^\s+alerts\s+\d+ fired, \d+ resolved, \d+ still firing$", output, re.MULTILINE), output

    query = _gateway("query", "--db", str(db), cwd=tmp_path)
    assert query.returncode == 0, query.stderr
    rows = [
        line for line in query.stdout.splitlines() if re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  dev-", line)
    ]
    assert len(rows) == 20  # the default --limit
    assert "temperature=" in rows[0] and "site=site-" in rows[0]
    per_device = [line for line in query.stdout.splitlines() if re.match(r"dev-\d{5} +\d+ ", line)]
    assert len(per_device) == DEVICES
    assert re.search(r"^alerts: \d+ transitions stored, \d+ firing now", query.stdout, re.MULTILINE), query.stdout
    alert_lines = [line for line in query.stdout.splitlines() if re.match(r"\S+Z +(overheating|device_silent) ", line)]
    assert len(alert_lines) == min(10, len(alerts))
    assert any(line.split()[1:5] == ["device_silent", "dev-00050", "major", "firing"] for line in alert_lines)
    assert "firing now: " in query.stdout and "device_silent on dev-00050" in query.stdout

    one = _gateway("query", "--db", str(db), "--device", "dev-00007", "--limit", "3", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert [line.split()[1] for line in one.stdout.splitlines() if line[:2] == "20"][:3] == ["dev-00007"] * 3
    assert re.search(r"^\S+Z +overheating +dev-00007 +critical +resolved ", one.stdout, re.MULTILINE), one.stdout


def test_demo_with_mosquitto_missing_says_how_to_install_it(tmp_path: Path) -> None:
    env = {"MOSQUITTO_BIN": str(tmp_path / "no-such-mosquitto")}
    demo = _gateway(
        "demo", "--broker", "mosquitto", "--duration", "1", "--db", str(tmp_path / "demo.db"), cwd=tmp_path, env=env
    )
    assert demo.returncode == 2
    assert "apt-get install mosquitto" in demo.stderr
    assert "amqtt" in demo.stderr  # ... or use the default broker, which needs nothing
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


def _temperatures(outgoing: list[Any], device: str) -> dict[int, float]:
    """seq -> temperature of the device's well-formed messages."""
    found = {}
    for message in outgoing:
        if message.device == device and message.kind in ("valid", "duplicate"):
            body = orjson.loads(message.payload)
            found[body["seq"]] = body["metrics"]["temperature"]
    return found


def test_script_heats_one_device_for_a_while_and_silences_another() -> None:
    script = Script((Episode("overheat", 2, 2.0, 8.0), Episode("silent", 3, 4.0, 10.0)), cycle_s=20.0)
    plain = FleetFeed(4, 5.0, seed=5, now_ns=0).next_slice(60, now_ns=0)  # 12 s, 5 readings a second
    scripted_feed = FleetFeed(4, 5.0, seed=5, now_ns=0, script=script)
    scripted = scripted_feed.next_slice(60, now_ns=0)

    before, after = _temperatures(plain, "dev-00002"), _temperatures(scripted, "dev-00002")
    assert before.keys() == after.keys()
    for seq, temperature in after.items():  # seq n is n x 0.2 s into the run
        if not 10 < seq < 40:
            assert temperature == before[seq], f"seq {seq} changed outside the episode (2-8 s)"
    # Up 3 s (ramp_s) after the episode began and down again 3 s before it ends: at 5 s, the full 20 degrees.
    assert after[25] == pytest.approx(before[25] + script.overheat_c, abs=0.006)  # temperatures have 2 decimals
    assert after[15] == pytest.approx(before[15] + script.overheat_c / 3, abs=0.006)
    # Other devices are untouched, and a resent message is still a byte copy of its (heated) original.
    assert _temperatures(plain, "dev-00001") == _temperatures(scripted, "dev-00001")
    valid = {m.payload for m in scripted if m.kind == "valid"}
    assert all(m.payload in valid for m in scripted if m.kind == "duplicate")

    # dev-00003 sends nothing from 4 s to 10 s: rounds 20 to 49 of 60.
    silent = [m for m in scripted if m.device == "dev-00003"]
    assert len(silent) <= 60 - 30  # fewer when a resend of what it held back falls later: that stays unsent too
    assert scripted_feed.held_back == 60 - len(silent)
    assert sum(m.device == "dev-00003" for m in plain) == 60


def test_demo_script_and_rules_fit_a_20_s_run() -> None:
    rules = {rule.name: rule for rule in load_rules(RULES_FILE).rules}
    assert set(rules) == {"overheating", "device_silent"}
    first = min(e.start_s for e in DEMO_SCRIPT.episodes if e.kind == "overheat")
    assert first + DEMO_SCRIPT.ramp_s + 2 < 20 / 2  # fires within the first half of the test's run
    assert any(e.kind == "silent" and e.start_s + 5 < 20 / 2 for e in DEMO_SCRIPT.episodes)
    assert {DEMO_SCRIPT.device(e, 50) for e in DEMO_SCRIPT.episodes} == {
        "dev-00007",
        "dev-00027",
        "dev-00047",
        "dev-00050",
    }
    assert DEMO_SCRIPT.device(Episode("silent", 50, 0, 1), 10) == "dev-00010"  # a smaller fleet wraps round


def test_dashboard_shows_counters_rejections_and_alerts() -> None:
    row = AlertRow(
        1_790_000_000_123_456_789, "overheating", "dev-00007", "critical", "threshold", "firing", "firing", 41.5, 35.0
    )
    snapshot = Snapshot(
        elapsed_s=12.0,
        rate_per_s=249.6,
        received=3_000,
        stored=2_850,
        duplicates=90,
        rejected=Counter({"malformed_json": 7, "non_finite_value": 3}),
        devices=50,
        alerts=[row],
        firing=[row],
    )
    console = Console(file=io.StringIO(), width=150, color_system=None)
    console.print(render_dashboard(snapshot, "gateway demo", ["  broker   amqtt"], 20.0))
    screen = console.file.getvalue()  # type: ignore[attr-defined]
    for expected in ("250", "msg/s", "3,000", "2,850", "alerts firing", "malformed_json", "12 s of 20 s"):
        assert expected in screen, screen
    assert re.search(r"\.123Z +firing +overheating +dev-00007 +critical +41\.5 +35", screen), screen
    line = Text.from_markup(status_markup(snapshot)).plain
    assert line == (
        "   12s  250 msg/s  received 3,000  stored 2,850  duplicates 90  devices 50  alerts firing 1  "
        "rejected 10 (malformed_json 7, non_finite_value 3)"
    )


@pytest.mark.integration
@pytest.mark.timeout(30)
def test_amqtt_keeps_a_named_clients_session_and_refuses_anonymous_ones() -> None:
    """Why the demo's gateway gives amqtt a username: amqtt keeps QoS 1 messages published while a subscriber
    is away only for a client that is not anonymous, and with anonymous access allowed every client is."""
    broker = AmqttBroker()
    broker.start()
    try:
        received: list[bytes] = []
        subscriber = _client("sub", "gateway", received)
        subscriber.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe("t/#", 1)
        subscriber.connect(LOCALHOST, broker.port)
        subscriber.loop_start()
        wait_until(functools.partial(broker.subscribed, "sub", "t/#"), 5, "amqtt to hold sub's subscription to t/#")
        subscriber.disconnect()
        subscriber.loop_stop()
        # The scenario: the subscriber stays away while amqtt's session monitor (which drops anonymous sessions,
        # and runs once a second) runs at least once; nothing observable marks that run.
        time.sleep(1.5)

        publisher = _client("pub", "demo", [])
        publisher.connect(LOCALHOST, broker.port)
        publisher.loop_start()
        for i in range(20):
            publisher.publish("t/x", b"%d" % i, qos=1).wait_for_publish(5)
        publisher.disconnect()
        publisher.loop_stop()

        again = _client("sub", "gateway", received)
        again.connect(LOCALHOST, broker.port)
        again.loop_start()
        wait_until(lambda: len(received) >= 20, 5, "the 20 messages kept for sub", lambda: f"received {received}")
        again.disconnect()
        again.loop_stop()
        assert sorted(received, key=int) == [b"%d" % i for i in range(20)]

        refusals: list[str] = []
        anonymous = _client("anon", None, [])
        anonymous.on_connect = lambda _c, _u, _f, reason, _p: refusals.append(str(reason))
        anonymous.connect(LOCALHOST, broker.port)
        anonymous.loop_start()
        wait_until(lambda: bool(refusals), 5, "a CONNACK for the anonymous client")
        anonymous.loop_stop()
        anonymous.disconnect()
        assert refusals[0] == "Not authorized"
    finally:
        broker.stop()


def _client(client_id: str, username: str | None, received: list[bytes]) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=False,
    )
    if username is not None:
        client.username_pw_set(username)
    client.on_message = lambda _c, _u, message: received.append(bytes(message.payload))
    return client


def test_demo_never_removes_a_file_that_is_not_its_store(tmp_path: Path) -> None:
    precious = tmp_path / "notes.db"
    precious.write_bytes(b"not a database, and not the demo's")
    other = tmp_path / "app.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    for path in (precious, other):
        with pytest.raises(DemoError, match="not a gateway SQLite store"):
            fresh_store(path)
        assert path.exists()
    store = tmp_path / "demo.db"
    SqliteSink(SqliteConfig(path=store)).close()
    fresh_store(store)  # a store of an earlier demo is replaced
    assert not store.exists()
