"""Alert rules in a running gateway, through a real Mosquitto: deadman timers for a 10,000-device fleet, and a
firing episode that survives a kill -9 without a second notification."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gateway.sinks.sqlite import read_readings
from tests.support.gateway_proc import GatewayProcess
from tests.support.mqtt import MqttTap
from tests.support.servers import Mosquitto
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration

DEADMAN_S = 4.0
REPORT_EVERY_S = 1.5  # the talking devices; well inside the deadman duration


Notification = tuple[float, str, dict[str, Any], bool]  # (arrival time, topic, body, retained)


def alert_listener(broker: Mosquitto, client_id: str = "alert-listener") -> MqttTap:
    """A tap on alerts/# that keeps every non-empty notification (an empty one clears a retained alert)."""
    return MqttTap(broker, "alerts/#", client_id, keep=lambda message: bool(message.payload))


def notifications(listener: MqttTap, transition: str) -> list[Notification]:
    received = [(m.at, m.topic, m.json(), m.retain) for m in listener.messages()]
    return [n for n in received if n[2]["transition"] == transition]


def wait_for_notifications(listener: MqttTap, transition: str, count: int, timeout: float) -> None:
    wait_until(lambda: len(notifications(listener, transition)) >= count, timeout, f"{count} {transition!r} alerts")


def _gateway_env(tmp_path: Path, broker: Mosquitto, client_id: str) -> dict[str, str]:
    return {
        "GATEWAY_MQTT__URL": broker.url,
        "GATEWAY_MQTT__CLIENT_ID": client_id,
        "GATEWAY_SQLITE__PATH": str(tmp_path / "g.db"),
        "GATEWAY_SQLITE__FLUSH_INTERVAL_MS": "20",
        "GATEWAY_JOURNAL__PATH": str(tmp_path / "journal.db"),
    }


def _config(tmp_path: Path, rules: str) -> Path:
    (tmp_path / "rules.yaml").write_text(rules)
    config = tmp_path / "gateway.yaml"
    config.write_text(f"sqlite:\n  path: g.db\nalerts:\n  rules_file: {tmp_path / 'rules.yaml'}\n")
    return config


def _publisher(broker: Mosquitto, name: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, name, protocol=mqtt.MQTTv5)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def test_deadman_fires_once_per_silent_device_and_resolves(tmp_path: Path, mosquitto: Mosquitto) -> None:
    devices = [f"dev-{i:05d}" for i in range(10_000)]
    silent = set(devices[::100])  # 100 of them
    rules = f"rules:\n  - name: silent\n    kind: deadman\n    for: {DEADMAN_S}s\n"
    config = _config(tmp_path, rules)
    listener = alert_listener(mosquitto)
    publisher = _publisher(mosquitto, "fleet")
    last_sent: dict[str, float] = {}

    def report(round_no: int, who: list[str]) -> None:
        for device in who:
            body = json.dumps({"id": f"{device}-{round_no}", "metrics": {"t": round_no}})
            publisher.publish(f"devices/{device}/telemetry", body, qos=0)  # no in-flight window to wait on
            last_sent[device] = time.time()

    with GatewayProcess(tmp_path / "gw", _gateway_env(tmp_path, mosquitto, "gw-deadman"), config=config) as gw:
        report(0, devices)
        gw.wait_for("gateway_messages_received", len(devices), timeout_s=30)
        talking = [d for d in devices if d not in silent]
        stop = threading.Event()

        def keep_talking() -> None:  # the other 9,900 keep reporting until the end, spread evenly (no bursts)
            round_no, slices = 1, 15
            while not stop.is_set():
                for part in range(slices):
                    started = time.monotonic()
                    report(round_no, talking[part::slices])
                    stop.wait(max(0.0, REPORT_EVERY_S / slices - (time.monotonic() - started)))
                round_no += 1

        chatter = threading.Thread(target=keep_talking, daemon=True)
        chatter.start()
        try:
            time.sleep(0.5)  # the scenario: the silent devices fall silent a while after the fleet started
            report(1, sorted(silent))  # the silent devices' last words, sent once the first burst is in
            gw.wait_for("gateway_messages_received", len(devices) + len(silent), timeout_s=10)
            wait_for_notifications(listener, "firing", len(silent), timeout=DEADMAN_S + 10)
            # The scenario: a repeat would come from the deadman's own timer, not after any message that could
            # mark its absence, so time passes in which it would have arrived.
            time.sleep(1.0)
            fired = notifications(listener, "firing")
            silent_since = {device: last_sent[device] for device in silent}

            report(1, sorted(silent))  # the same messages again: duplicates, yet signs of life
            report(2, sorted(silent))
            wait_for_notifications(listener, "resolved", len(silent), timeout=10)
            time.sleep(1.0)  # as above: time for a repeat of either transition to arrive
            resolved = notifications(listener, "resolved")
            fired_after = notifications(listener, "firing")
        finally:
            stop.set()
            chatter.join()
    listener.close()
    publisher.loop_stop()

    assert sorted(body["device"] for _, _, body, _ in fired) == sorted(silent)
    assert len(fired_after) == len(silent)  # no repeat, no second episode, none for a talking device
    late = []
    for arrived, topic, body, _retained in fired:
        assert topic == f"alerts/{body['device']}/silent"
        delay = arrived - silent_since[body["device"]]
        if not DEADMAN_S - 0.1 <= delay <= DEADMAN_S + 1.0:
            late.append((body["device"], round(delay, 2)))
    assert late == [], f"deadman notifications outside [{DEADMAN_S}, {DEADMAN_S + 1}] s after the last reading"
    assert sorted(body["device"] for _, _, body, _ in resolved) == sorted(silent)
    delays = sorted(arrived - silent_since[body["device"]] for arrived, _, body, _ in fired)
    print(f"deadman: {len(fired)} fired, delay after the last reading {delays[0]:.2f}-{delays[-1]:.2f} s")


def test_restart_during_a_firing_episode_does_not_notify_again(tmp_path: Path, mosquitto: Mosquitto) -> None:
    rules = (
        "rules:\n"
        "  - {name: hot, kind: threshold, severity: critical, metric: t, op: '>', value: 50,\n"
        "     clear: {op: '<', value: 40}, labels: {team: heating}}\n"
    )
    config = _config(tmp_path, rules)
    env = _gateway_env(tmp_path, mosquitto, "gw-restart")
    listener = alert_listener(mosquitto)
    publisher = _publisher(mosquitto, "boiler")
    now = time.time()

    def send(seq: int, value: float) -> None:
        body = {"seq": seq, "ts": now + seq, "metrics": {"t": value}}
        publisher.publish("devices/boiler-1/telemetry", json.dumps(body), qos=1).wait_for_publish(5)

    gateway = GatewayProcess(tmp_path / "gw", env, config=config).start()
    try:
        send(1, 20.0)
        send(2, 60.0)  # fires
        wait_for_notifications(listener, "firing", 1, timeout=10)
        gateway.kill()  # kill -9 while firing

        gateway = GatewayProcess(tmp_path / "gw", env, config=config).start()
        send(3, 65.0)  # still above: must not notify again
        send(4, 45.0)  # inside the hysteresis band: still firing
        gateway.wait_for('gateway_readings_stored{sink="sqlite"}', 2, timeout_s=10)
        send(5, 30.0)  # clears
        wait_for_notifications(listener, "resolved", 1, timeout=10)
        # The resolved notification is the marker: a second firing for reading 3 or 4 would have come before it.
        assert len(notifications(listener, "firing")) == 1
        gateway.wait_for('gateway_alert_notifications{transition="resolved"}', 1, timeout_s=10)
    finally:
        gateway.stop()
        listener.close()
        publisher.loop_stop()

    (firing,) = notifications(listener, "firing")
    (resolved,) = notifications(listener, "resolved")
    assert firing[2]["reading_id"].startswith("boiler-1#2@")
    assert firing[2]["labels"] == {"team": "heating"}
    assert resolved[2]["reading_id"].startswith("boiler-1#5@")
    assert resolved[2]["starts_at"] == firing[2]["starts_at"]  # the same episode, across the restart
    # The retained firing message was cleared: a new subscriber finds nothing retained.
    with alert_listener(mosquitto, "late-joiner") as late_joiner:
        assert late_joiner.sync() == []  # its marker comes back after anything retained would have
    # Both transitions are stored as the `alerts` measurement, once each.
    stored = [r for r in read_readings(tmp_path / "g.db", "alerts")]
    assert sorted(str(r.fields["transition"]) for r in stored) == ["firing", "resolved"]
    assert {r.tags["rule"] for r in stored} == {"hot"}
