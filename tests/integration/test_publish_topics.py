"""The topics the gateway publishes to (dead letters, alert notifications), with real Mosquitto and gateway
processes: a topic MQTT cannot carry is refused at start-up, one that slipped into the journal costs that one
message and never the session, and the gateway never ingests its own output."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.journal.store import Journal
from gateway.model import OutgoingMessage
from tests.support.gateway_proc import publish, run_cli, sqlite_gateway, sqlite_rows
from tests.support.messages import native_messages
from tests.support.servers import Mosquitto
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("variable", "key", "value"),
    [
        ("GATEWAY_MQTT__DEADLETTER_TOPIC", "mqtt.deadletter_topic", "gateway/dl/+/{device}"),
        ("GATEWAY_ALERTS__TOPIC", "alerts.topic", "alerts/#"),
        ("GATEWAY_ALERTS__TOPIC", "alerts.topic", "alerts/{devce}/{rule}"),
    ],
)
def test_a_publish_topic_mqtt_cannot_carry_is_refused_at_start(
    tmp_path: Path, variable: str, key: str, value: str
) -> None:
    result = run_cli(["run"], tmp_path, {variable: value, "GATEWAY_SQLITE__PATH": str(tmp_path / "g.db")})
    assert result.returncode == 2, result.stderr
    assert key in result.stderr and repr(value) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_dead_letter_that_cannot_be_published_costs_that_message_not_the_session(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """A journal written before the topic check (wildcard in the dead-letter topic) still holds such a record:
    re-publishing it raised ValueError in the network thread, which died while /readyz said ready."""
    workdir = tmp_path / "gw"
    workdir.mkdir()
    journal = Journal(workdir / "journal.db", ["sqlite"])
    journal.commit([], [OutgoingMessage("gateway/dl/+/sensor-1", b'{"reason": "malformed_json"}')])
    journal.close()

    with sqlite_gateway(workdir, mosquitto.url, "gw-bad-topic") as gateway:
        publish(mosquitto.url, native_messages("sensor-1", 100))
        wait_until(lambda: sqlite_rows(workdir / "gateway.db") >= 100, 30, "100 readings stored", gateway.log_tail)
        log = gateway.wait_for_log("cannot publish to 'gateway/dl/+/sensor-1'", 10)
        assert "kept in the journal as rejected" in log
        metrics = gateway.metrics()
        assert metrics["gateway_publish_failed"] == 1
        assert metrics["gateway_broker_connected"] == 1
        assert gateway.readyz() == (200, "ready")
        # The session is alive: a message published now is still received.
        publish(mosquitto.url, native_messages("sensor-1", 1, start=100))
        wait_until(lambda: sqlite_rows(workdir / "gateway.db") == 101, 15, "reading 101 stored", gateway.log_tail)
    listing = run_cli(["deadletter", "list", "--config", str(workdir / "gateway.yaml")], workdir)
    assert "publish_failed" in listing.stdout, listing.stdout + listing.stderr


def test_the_gateway_never_ingests_its_own_dead_letters(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`+/+/{device}` also matches `gateway/deadletter/<device>`: one bad message used to become thousands of
    dead letters of dead letters, pushing real records out of the replay table."""
    workdir = tmp_path / "gw"
    broad = [{"topic": "+/+/{device}", "format": "native"}]
    with sqlite_gateway(workdir, mosquitto.url, "gw-own-output", mappings=broad) as gateway:
        assert "also matches 'gateway/deadletter/+'" in gateway.log_text()
        publish(mosquitto.url, [("devices/sensor-1/telemetry", b"{not json")])
        assert gateway.wait_for("gateway_deadletters_published", 1, 15) == 1
        # The dead letter comes back on the broad subscription: acknowledged and ignored, not rejected again.
        assert gateway.wait_for('gateway_messages_ignored{reason="own_output"}', 1, 15) == 1
        publish(mosquitto.url, native_messages("sensor-1", 10))
        wait_until(lambda: sqlite_rows(workdir / "gateway.db") == 10, 15, "10 readings stored", gateway.log_tail)
        metrics = gateway.metrics()
        assert metrics['gateway_messages_rejected{reason="malformed_json"}'] == 1
        assert sum(v for k, v in metrics.items() if k.startswith("gateway_messages_rejected{")) == 1
        assert metrics["gateway_deadletters_published"] == 1
        assert metrics['gateway_messages_ignored{reason="own_output"}'] == 1


def test_check_config_warns_of_a_mapping_that_matches_the_gateways_own_topics(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f'sqlite: {{path: "{tmp_path / "g.db"}"}}\nmappings:\n  - topic: "+/+/{{device}}"\n')
    result = run_cli(["check-config", "--config", str(config)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning: mappings[0].topic '+/+/{device}' also matches 'gateway/deadletter/+'" in result.stderr
