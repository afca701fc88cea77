"""The gateway against a broker that wants credentials, and one that speaks TLS: real Mosquitto, real gateway.

Each test starts its own broker (tests/support/mosquitto.py: ``password_file=`` / ``tls=``) and the gateway as a
process configured from the environment only (no YAML file), with the SQLite sink.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.sinks.sqlite import read_readings
from tests.support.gateway_proc import GatewayProcess
from tests.support.servers import BrokerCertificates, Mosquitto, make_certificates, write_password_file
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration

GATEWAY_USER = "gateway"
GATEWAY_PASSWORD = "gw-Pa55-7f3c9e"  # distinctive: the log is searched for it
PUBLISHER_USER = "sensor-publisher"
PUBLISHER_PASSWORD = "pub-Pa55-41d2"
WRONG_PASSWORD = "wrong-Pa55-b81a"
STORED = 'gateway_readings_stored{sink="sqlite"}'
REFUSED = "broker refused the connection"
VERIFY_FAILED = "CERTIFICATE_VERIFY_FAILED"


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


class Gateway(GatewayProcess):
    """A gateway configured by environment only (`launch()` does not insist on a broker connection)."""

    def __init__(self, workdir: Path, broker: Mosquitto, env: Mapping[str, str]) -> None:
        super().__init__(
            workdir,
            {
                "GATEWAY_MQTT__URL": broker.url,
                "GATEWAY_MQTT__CLIENT_ID": f"gw-security-{broker.port}",
                "GATEWAY_SQLITE__PATH": str(workdir / "gateway.db"),
                # Retry fast, so a few attempts fit in a short test.
                "GATEWAY_MQTT__RECONNECT_MIN_S": "0.2",
                "GATEWAY_MQTT__RECONNECT_MAX_S": "0.5",
                **env,
            },
            config=None,
        )
        self.db_path = workdir / "gateway.db"


def publish_reading(
    broker: Mosquitto,
    device: str,
    reading: Mapping[str, object],
    *,
    auth: tuple[str, str] | None = None,
    certs: BrokerCertificates | None = None,
) -> None:
    """Publish one reading (QoS 1, retained: it reaches the gateway whether or not its SUBSCRIBE got
    there first) as an ordinary device would; fail if the broker does not take it."""
    connected: list[ReasonCode] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{device}", protocol=mqtt.MQTTv5)
    client.on_connect = lambda _c, _u, _f, reason, _p: connected.append(reason)
    if auth:
        client.username_pw_set(*auth)
    if certs:
        client.tls_set(ca_certs=str(certs.ca_file))
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        info = client.publish(f"devices/{device}/telemetry", orjson.dumps(reading), qos=1, retain=True)
        info.wait_for_publish(timeout=5)
        assert info.is_published(), f"broker did not acknowledge the publish (connack: {connected})"
    finally:
        client.disconnect()
        client.loop_stop()


def connack(broker: Mosquitto, auth: tuple[str, str] | None) -> ReasonCode:
    """The broker's answer to a CONNECT with these credentials (plain TCP broker)."""
    answers: list[ReasonCode] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="connack-check", protocol=mqtt.MQTTv5)
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason)
    if auth:
        client.username_pw_set(*auth)
    client.connect(broker.host, broker.port)
    wait_until(lambda: client.loop(0.1) is not None and bool(answers), 5, "a CONNACK", broker.log_tail)
    client.disconnect()
    return answers[0]


def assert_stored(gateway: Gateway, device: str, reading_id: str, fields: Mapping[str, float]) -> None:
    stored = gateway.wait_for(STORED, 1, timeout_s=10)
    assert stored == 1, gateway.log_tail()
    [row] = [r for r in read_readings(gateway.db_path) if r.device == device]
    assert (row.reading_id, row.fields) == (reading_id, dict(fields))


def assert_retrying_unready(gateway: Gateway, failure: str, attempts: int = 3) -> str:
    """The gateway stays up, not connected and not ready, and keeps trying: `failure` logged `attempts` times."""
    wait_until(
        lambda: gateway.log_text().count(failure) >= attempts, 10, f"{attempts} log lines {failure!r}", gateway.log_tail
    )
    log = gateway.log_text()
    assert gateway.proc is not None and gateway.proc.poll() is None, log
    assert gateway.metrics()["gateway_broker_connected"] == 0
    status, why = gateway.readyz()
    assert (status, why.strip()) == (503, "broker not connected")
    assert "Traceback" not in gateway.log_text()
    return log


# ---------------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> BrokerCertificates:
    return make_certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    users = write_password_file(
        tmp_path / "passwd", {GATEWAY_USER: GATEWAY_PASSWORD, PUBLISHER_USER: PUBLISHER_PASSWORD}
    )
    with Mosquitto(tmp_path / "mosquitto", persistence=False, password_file=users) as broker:
        yield broker


@pytest.fixture
def tls_broker(tmp_path: Path, certs: BrokerCertificates) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto", persistence=False, tls=certs) as broker:
        yield broker


# ---------------------------------------------------------------------------------------------------
# username / password
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given_as", ["GATEWAY_MQTT__PASSWORD", "GATEWAY_MQTT__PASSWORD_FILE"])
def test_gateway_authenticates_and_stores(tmp_path: Path, auth_broker: Mosquitto, given_as: str) -> None:
    # The broker really wants credentials (else this test would prove nothing).
    assert connack(auth_broker, None).is_failure
    assert connack(auth_broker, (GATEWAY_USER, "not-" + GATEWAY_PASSWORD)).is_failure
    assert not connack(auth_broker, (GATEWAY_USER, GATEWAY_PASSWORD)).is_failure

    if given_as == "GATEWAY_MQTT__PASSWORD_FILE":
        secret = tmp_path / "mqtt-password"
        secret.write_text(GATEWAY_PASSWORD + "\n")  # as `echo ... > file` writes it: the newline is dropped
        password_env = {given_as: str(secret)}
    else:
        password_env = {given_as: GATEWAY_PASSWORD}
    env = {"GATEWAY_MQTT__USERNAME": GATEWAY_USER, **password_env}
    with Gateway(tmp_path / "gateway", auth_broker, env) as gateway:  # enter = connected
        publish_reading(
            auth_broker,
            "thermo-1",
            {"metrics": {"temperature": 21.5}, "id": "auth-1"},
            auth=(PUBLISHER_USER, PUBLISHER_PASSWORD),
        )
        assert_stored(gateway, "thermo-1", "auth-1", {"temperature": 21.5})
        assert gateway.readyz()[0] == 200
    assert gateway.proc is not None and gateway.proc.returncode == 0
    assert GATEWAY_PASSWORD not in gateway.log_text()


def test_wrong_password_is_retried_without_crashing_or_leaking_it(tmp_path: Path, auth_broker: Mosquitto) -> None:
    env = {
        "GATEWAY_MQTT__USERNAME": GATEWAY_USER,
        "GATEWAY_MQTT__PASSWORD": WRONG_PASSWORD,
        "GATEWAY_LOG__LEVEL": "DEBUG",  # the password must not show at any level
    }
    gateway = Gateway(tmp_path / "gateway", auth_broker, env).launch()
    try:
        log = assert_retrying_unready(gateway, REFUSED)
        assert "bad user name or password" in log.lower() or "not authorized" in log.lower(), log
    finally:
        exit_code = gateway.stop(timeout_s=10)
    assert exit_code == 0
    log = gateway.log_text()
    assert WRONG_PASSWORD not in log
    assert log.count("connected to") == 0
    # Every refusal was a fresh connection attempt at the broker, not one stuck socket.
    broker_log = auth_broker.log_path.read_text()
    assert broker_log.count(f"as gw-security-{auth_broker.port}") == 0
    assert broker_log.count("not authorised") >= 3


# ---------------------------------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------------------------------


def test_gateway_verifies_the_broker_with_the_configured_ca_and_stores(
    tmp_path: Path, tls_broker: Mosquitto, certs: BrokerCertificates
) -> None:
    assert tls_broker.url.startswith("mqtts://127.0.0.1:")
    env = {"GATEWAY_MQTT__TLS__CA_FILE": str(certs.ca_file)}
    with Gateway(tmp_path / "gateway", tls_broker, env) as gateway:
        publish_reading(tls_broker, "meter-7", {"metrics": {"power": 1250.0}, "id": "tls-1"}, certs=certs)
        assert_stored(gateway, "meter-7", "tls-1", {"power": 1250.0})
    assert gateway.proc is not None and gateway.proc.returncode == 0


def test_unknown_ca_fails_verification_and_is_retried_without_crashing(tmp_path: Path, tls_broker: Mosquitto) -> None:
    # No tls section: mqtts:// alone means TLS verified against the system CAs, which do not know our CA.
    gateway = Gateway(tmp_path / "gateway", tls_broker, {}).launch()
    try:
        assert_retrying_unready(gateway, VERIFY_FAILED)
    finally:
        exit_code = gateway.stop(timeout_s=10)
    assert exit_code == 0


def test_insecure_skips_verification(tmp_path: Path, tls_broker: Mosquitto, certs: BrokerCertificates) -> None:
    # `mqtt.tls.insecure` is documented as skipping verification of the broker's certificate.
    with Gateway(tmp_path / "gateway", tls_broker, {"GATEWAY_MQTT__TLS__INSECURE": "true"}) as gateway:
        publish_reading(tls_broker, "meter-8", {"metrics": {"power": 5.0}, "id": "tls-2"}, certs=certs)
        assert_stored(gateway, "meter-8", "tls-2", {"power": 5.0})
