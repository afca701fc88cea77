"""gateway/mqtt's client against a real Mosquitto (tests/servers.py, a free port each): connect, subscribe, receive
and acknowledge, the persistent session resumed (unacknowledged messages again, with DUP; queued ones across a
broker restart), Receive Maximum, our QoS 1 and retained publishes confirmed, keepalive, TLS, credentials. The same
properties against amqtt, RabbitMQ and NATS: test_mqtt_interop_brokers.py."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.mqtt import (
    MQTT_5,
    MQTT_311,
    ConnectionClosed,
    ConnectionRefused,
    MqttClient,
    RetainHandling,
    TlsOptions,
)
from tests.support.mqtt_interop import backlog, before_marker, confirmations, drain, quiet_for
from tests.support.servers import BrokerCertificates, Mosquitto, free_port, make_certificates, write_password_file
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration

PROTOCOLS = [pytest.param(MQTT_5, id="mqtt5"), pytest.param(MQTT_311, id="mqtt311")]


def make_client(broker: Mosquitto, protocol: int, client_id: str = "interop", **options: object) -> MqttClient:
    settings: dict[str, object] = {"session_expiry": 3600, "receive_maximum": 1000, "keepalive": 30, **options}
    return MqttClient(broker.host, broker.port, client_id=client_id, protocol=protocol, **settings)  # type: ignore[arg-type]


def reconnect_once_gone(client: MqttClient, broker: Mosquitto, client_id: str = "interop") -> bool:
    """Disconnect, wait until Mosquitto has logged it, connect again. A connection that overtakes one Mosquitto
    has not read to the end drops that one's unread PUBACKs ("already connected, closing old connection"),
    DISCONNECT or not: at least once, but these tests count exactly."""
    gone = (f"Client {client_id} disconnected", f"Client {client_id} closed its connection")

    def logged() -> int:
        return sum(broker.log_path.read_text().count(marker) for marker in gone)

    seen = logged()
    client.disconnect()
    wait_until(lambda: logged() > seen, 5, "Mosquitto logging the disconnect", broker.log_path.read_text)
    return client.connect()


@pytest.fixture
def subscribed(mosquitto: Mosquitto, request: pytest.FixtureRequest) -> Iterator[MqttClient]:
    client = make_client(mosquitto, request.param)
    assert client.connect() is False
    assert client.subscribe(["t/#"], 1) == (1,)
    yield client
    client.close()


@pytest.mark.parametrize("subscribed", PROTOCOLS, indirect=True)
def test_receive_and_ack_then_nothing_comes_again(mosquitto: Mosquitto, subscribed: MqttClient) -> None:
    payloads = backlog(mosquitto, 500)
    got = drain(subscribed, 500)
    assert [p.payload for p in got] == payloads
    assert {(p.qos, p.dup, p.retain) for p in got} == {(1, False, False)}
    assert got[0].topic == "t/dev-0/telemetry"
    assert reconnect_once_gone(subscribed, mosquitto) is True
    assert before_marker(subscribed, mosquitto) == []


@pytest.mark.parametrize("subscribed", PROTOCOLS, indirect=True)
def test_unacknowledged_messages_come_again_with_dup_after_a_crash(
    mosquitto: Mosquitto, subscribed: MqttClient
) -> None:
    payloads = backlog(mosquitto, 50)
    assert [p.payload for p in drain(subscribed, 50, ack=False)] == payloads
    subscribed.close()  # no DISCONNECT, no PUBACK: as kill -9 would leave it
    assert subscribed.connect() is True
    again = drain(subscribed, 50)
    assert [p.payload for p in again] == payloads
    assert all(p.dup for p in again)
    assert reconnect_once_gone(subscribed, mosquitto) is True
    assert before_marker(subscribed, mosquitto) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_messages_queued_while_away_survive_a_broker_restart(mosquitto: Mosquitto, protocol: int) -> None:
    client = make_client(mosquitto, protocol)
    client.connect()
    client.subscribe(["t/#"], 1)
    client.disconnect()
    payloads = backlog(mosquitto, 300)
    mosquitto.restart()
    assert client.connect() is True
    assert [p.payload for p in drain(client, 300)] == payloads
    client.close()


def test_receive_maximum_bounds_what_mosquitto_sends_unacknowledged(mosquitto: Mosquitto) -> None:
    client = make_client(mosquitto, MQTT_5, receive_maximum=5)
    client.connect()
    client.subscribe(["t/#"], 1)
    backlog(mosquitto, 20)
    first = drain(client, 20, timeout=1.0, ack=False)
    assert len(first) == 5
    client.ack([p.packet_id for p in first if p.packet_id is not None])
    client.flush()
    rest = drain(client, 15)
    assert len(first) + len(rest) == 20
    client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_our_publishes_are_confirmed_and_a_retained_one_reaches_a_later_subscriber(
    mosquitto: Mosquitto, protocol: int
) -> None:
    publisher = make_client(mosquitto, protocol, client_id="interop-alerts")
    publisher.connect()
    plain = publisher.publish("deadletter/dev-1", b'{"reason":"bad"}')
    retained = publisher.publish("alerts/dev-1/too_hot", b'{"state":"firing"}', retain=True)
    confirmed = confirmations(publisher, 2)
    # MQTT 5 brokers may say "no matching subscribers" (0x10), a success; Mosquitto says 0 or 0x10.
    assert sorted(packet_id for packet_id, _ in confirmed) == sorted([plain, retained])
    assert all(code < 0x80 for _, code in confirmed)
    assert publisher.unconfirmed == 0
    subscriber = make_client(mosquitto, protocol, client_id="interop-later")
    subscriber.connect()
    subscriber.subscribe(["alerts/#"], 1, RetainHandling.SEND_ON_SUBSCRIBE)
    (message,) = drain(subscriber, 1)
    assert (message.topic, message.payload, message.retain) == ("alerts/dev-1/too_hot", b'{"state":"firing"}', True)
    subscriber.close()
    publisher.disconnect()


def test_retain_handling_skips_retained_messages_on_a_resubscribe(mosquitto: Mosquitto) -> None:
    publisher = make_client(mosquitto, MQTT_5, client_id="interop-retainer")
    publisher.connect()
    publisher.publish("r/1", b"kept", retain=True)
    publisher.disconnect()
    client = make_client(mosquitto, MQTT_5)
    client.connect()
    client.subscribe(["r/#"], 1, RetainHandling.SEND_IF_NEW_SUBSCRIPTION)
    assert [p.payload for p in drain(client, 1)] == [b"kept"]
    client.subscribe(["r/#"], 1, RetainHandling.SEND_IF_NEW_SUBSCRIPTION)  # the same subscription again
    assert before_marker(client, mosquitto, "r/marker") == []
    client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unsubscribed_filters_receive_nothing_more(mosquitto: Mosquitto, protocol: int) -> None:
    client = make_client(mosquitto, protocol)
    client.connect()
    client.subscribe(["t/#", "marker/#"], 1)
    codes = client.unsubscribe(["t/#"])
    assert codes == ((0,) if protocol == MQTT_5 else ())
    backlog(mosquitto, 5)
    assert before_marker(client, mosquitto, "marker/1") == []  # the backlog went to the broker first
    client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_keepalive_pings_are_answered(mosquitto: Mosquitto, protocol: int) -> None:
    client = make_client(mosquitto, protocol, keepalive=1)
    client.connect()
    assert quiet_for(client, 2.6) == []  # the scenario: idle for more than two keepalive intervals
    assert client.pings_sent >= 2
    assert client.pings_answered >= client.pings_sent - 1
    assert client.connected
    client.disconnect()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_second_client_with_our_id_takes_the_session(mosquitto: Mosquitto, protocol: int) -> None:
    first = make_client(mosquitto, protocol)
    first.connect()
    second = make_client(mosquitto, protocol)
    second.connect()
    with pytest.raises(ConnectionClosed) as closed:
        quiet_for(first, 2.0)
    # MQTT 5 allows a DISCONNECT "session taken over" (0x8E); Mosquitto 2.0.11 just closes the older connection.
    assert closed.value.reason_code in (0x8E, None)
    assert second.connected
    second.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_credentials_are_checked(tmp_path: Path, protocol: int) -> None:
    users = write_password_file(tmp_path / "passwd", {"gateway": "s3cret"})
    with Mosquitto(tmp_path / "auth-broker", password_file=users) as broker:
        good = make_client(broker, protocol, username="gateway", password="s3cret")
        good.connect()
        good.disconnect()
        bad = make_client(broker, protocol, username="gateway", password="wrong")
        with pytest.raises(ConnectionRefused) as refused:
            bad.connect()
        assert refused.value.reason_code in ((0x86, 0x87) if protocol == MQTT_5 else (4, 5))


# -- TLS -------------------------------------------------------------------------------------------------------------


def client_certificate(certs: BrokerCertificates, directory: Path) -> tuple[Path, Path]:
    """A client certificate signed by the throwaway CA (openssl CLI), for a broker that requires one."""
    key, csr, cert = directory / "client.key", directory / "client.csr", directory / "client.pem"
    run = ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", str(key), "-out", str(csr), "-subj", "/CN=gateway"]  # fmt: skip
    subprocess.run(run, check=True, capture_output=True, timeout=30)
    sign = ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(certs.ca_file), "-CAkey", str(certs.ca_key_file),
            "-CAcreateserial", "-days", "2", "-out", str(cert)]  # fmt: skip
    subprocess.run(sign, check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, BrokerCertificates]]:
    certs = make_certificates(tmp_path / "pki")
    with Mosquitto(tmp_path / "tls-broker", tls=certs) as broker:
        yield broker, certs


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_with_our_ca_receives_and_acks(tls_broker: tuple[Mosquitto, BrokerCertificates], protocol: int) -> None:
    broker, certs = tls_broker
    client = make_client(broker, protocol, tls=TlsOptions(ca_file=certs.ca_file))
    client.connect()
    client.subscribe(["t/#"], 1)
    publisher = make_client(broker, protocol, client_id="tls-publisher", tls=TlsOptions(ca_file=certs.ca_file))
    publisher.connect()
    sent = [publisher.publish(f"t/{i}", b"x" * 1000) for i in range(200)]
    got = drain(client, len(sent))
    assert len(got) == len(sent)
    assert reconnect_once_gone(client, broker) is True
    # Through the publisher that has sent 200 before: its PUBACKs came as many TLS records, and the marker's
    # must not wait in OpenSSL's buffer behind them (it did, until transport.Connection read TLS to the end).
    assert before_marker(client, broker, publisher=publisher) == []
    client.close()
    publisher.close()


def test_tls_refuses_a_broker_the_ca_did_not_sign(tls_broker: tuple[Mosquitto, BrokerCertificates]) -> None:
    broker, _certs = tls_broker
    with pytest.raises(ConnectionClosed, match="CERTIFICATE_VERIFY_FAILED"):
        make_client(broker, MQTT_5, tls=TlsOptions()).connect()  # the system's CAs do not know ours
    insecure = make_client(broker, MQTT_5, tls=TlsOptions(insecure=True))
    insecure.connect()
    insecure.disconnect()


def test_tls_client_certificate(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "pki")
    cert, key = client_certificate(certs, tmp_path / "pki")
    port = free_port()
    # A second listener wants client certificates; the fixture's probe uses the plain first one.
    mtls = (f"listener {port} 127.0.0.1\ncafile {certs.ca_file}\ncertfile {certs.cert_file}\n"
            f"keyfile {certs.key_file}\nrequire_certificate true\n")  # fmt: skip
    with Mosquitto(tmp_path / "mtls-broker", extra_conf=mtls) as broker:
        without = MqttClient(broker.host, port, client_id="no-cert", tls=TlsOptions(ca_file=certs.ca_file), timeout=3)
        with pytest.raises(ConnectionClosed):
            without.connect()
        tls = TlsOptions(ca_file=certs.ca_file, cert_file=cert, key_file=key)
        client = MqttClient(broker.host, port, client_id="with-cert", tls=tls)
        client.connect()
        client.disconnect()
