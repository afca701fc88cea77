"""The compose broker's logins, for real: config/mosquitto/init-auth.sh writes the password file and ACL, and
config/mosquitto/mosquitto.conf (paths and port swapped for the test's) runs on the Mosquitto installed here.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import queue
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from device_sim.wire import topic_for
from gateway.config.schema import GatewayConfig
from gateway.ingest.mapping import TopicRouter
from tests.support.compose_files import ACL_FILE, GATEWAY_USER, INIT_AUTH, MOSQUITTO_CONF, SIM_USER, concrete
from tests.support.servers import Mosquitto
from tests.support.waits import wait_until

PASSWORDS = {GATEWAY_USER: "gw-Pa55 with space", SIM_USER: "sim-Pa55*$x#", "boiler-17": "b17-Pa55", "boiler-18": "b18"}


def run_init_auth(auth_dir: Path, devices: str, **env: str) -> subprocess.CompletedProcess[str]:
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    return subprocess.run(
        ["sh", str(INIT_AUTH)],
        env={
            "PATH": f"{Path(passwd).parent}:/usr/bin:/bin",
            "AUTH_DIR": str(auth_dir),
            "ACL_SOURCE": str(ACL_FILE),
            "MQTT_GATEWAY_PASSWORD": PASSWORDS[GATEWAY_USER],
            "MQTT_SIM_PASSWORD": PASSWORDS[SIM_USER],
            "MQTT_DEVICES": devices,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_init_auth_writes_hashed_passwords_and_the_acl_for_the_broker_only(tmp_path: Path) -> None:
    result = run_init_auth(tmp_path, "boiler-17:b17-Pa55 boiler-18:b18")
    assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "passwd").read_text()
    assert [line.split(":")[0] for line in passwd.splitlines()] == [GATEWAY_USER, SIM_USER, "boiler-17", "boiler-18"]
    for password in PASSWORDS.values():
        assert password not in passwd
    assert (tmp_path / "acl").read_text() == ACL_FILE.read_text()
    for name in ("passwd", "acl"):
        assert (tmp_path / name).stat().st_mode & 0o077 == 0, f"{name} is readable by others"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acl", "passwd"], "no plain-text leftovers"


@pytest.mark.parametrize(
    ("devices", "env", "complaint"),
    [
        pytest.param("boiler/17:pw", {}, "letters, digits", id="slash-in-name"),
        pytest.param("boiler+:pw", {}, "letters, digits", id="wildcard-in-name"),
        pytest.param("gateway:pw", {}, "given twice", id="reserved-name"),
        pytest.param("a:1 a:2", {}, "given twice", id="duplicate"),
        pytest.param("boiler-17", {}, "not name:password", id="no-password"),
        pytest.param("boiler-17:", {}, "empty password", id="empty-password"),
        pytest.param("boiler-17:a:b", {}, "no :", id="colon-in-password"),
        pytest.param("", {"MQTT_SIM_PASSWORD": "a:b"}, "no :", id="colon-in-sim-password"),
        pytest.param("", {"MQTT_GATEWAY_PASSWORD": ""}, "MQTT_GATEWAY_PASSWORD is not set", id="no-gateway-password"),
    ],
)
def test_init_auth_refuses_bad_users(tmp_path: Path, devices: str, env: dict[str, str], complaint: str) -> None:
    result = run_init_auth(tmp_path, devices, **env)
    assert result.returncode == 2
    assert complaint in result.stderr
    assert not (tmp_path / "passwd").exists()


class ComposeMosquitto(Mosquitto):
    """config/mosquitto/mosquitto.conf itself, with the container's paths and port replaced by the test's."""

    def __init__(self, workdir: Path, auth_dir: Path) -> None:
        super().__init__(workdir, password_file=auth_dir / "passwd")
        self.auth_dir = auth_dir

    def config_text(self) -> str:
        text = MOSQUITTO_CONF.read_text()
        for old, new in (
            ("listener 1883\n", f"listener {self.port} {self.host}\n"),
            ("/mosquitto/auth/", f"{self.auth_dir}/"),
            ("/mosquitto/data/", f"{self.workdir}/"),
            ("log_dest stdout\n", f"log_dest file {self.log_path}\n"),
        ):
            assert old in text, f"{MOSQUITTO_CONF.name} no longer has {old!r}"
            text = text.replace(old, new)
        # As root, Mosquitto would switch to the user `mosquitto`, which cannot write the test's directory.
        return text + f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"


class Client:
    """A paho MQTT 5 client that records what it receives and the broker's answers to its publishes."""

    def __init__(self, broker: Mosquitto, username: str, password: str, client_id: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.acks: dict[int, ReasonCode] = {}
        self.granted: list[ReasonCode] = []
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self._client.username_pw_set(username, password)
        self._client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload))
        self._client.on_publish = lambda _c, _u, mid, reason, _p: self.acks.__setitem__(mid, reason)
        self._client.on_subscribe = lambda _c, _u, _mid, reasons, _p: self.granted.extend(reasons)
        self.connack: ReasonCode | None = None
        self._client.on_connect = lambda _c, _u, _f, reason, _p: setattr(self, "connack", reason)
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        wait_until(lambda: self.connack is not None, 10, f"a CONNACK for {client_id}", broker.log_tail, interval=0.01)

    def publish(self, topic: str, payload: str) -> int:
        return self._client.publish(topic, payload, qos=1).mid

    def subscribe(self, filters: list[str]) -> None:
        self._client.subscribe([(f, 1) for f in filters])
        wait_until(lambda: len(self.granted) == len(filters), 10, f"a SUBACK for {filters}", interval=0.01)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[ComposeMosquitto]:
    result = run_init_auth(tmp_path / "auth", "boiler-17:b17-Pa55 boiler-18:b18")
    assert result.returncode == 0, result.stderr
    with ComposeMosquitto(tmp_path / "broker", tmp_path / "auth") as server:
        yield server


@pytest.mark.integration
def test_mosquitto_with_the_compose_config_enforces_logins_and_the_acl(
    broker: ComposeMosquitto, gateway_config: GatewayConfig
) -> None:
    filters = TopicRouter(list(gateway_config.mappings)).filters
    gateway = Client(broker, GATEWAY_USER, PASSWORDS[GATEWAY_USER], "gw")
    device = Client(broker, "boiler-17", PASSWORDS["boiler-17"], "boiler-17")
    sim = Client(broker, SIM_USER, PASSWORDS[SIM_USER], "device-sim-0")
    intruder = Client(broker, "boiler-17", "wrong", "intruder")
    clients = [gateway, device, sim, intruder]
    try:
        assert intruder.connack is not None and intruder.connack.is_failure, "a wrong password is refused"
        assert gateway.connack is not None and not gateway.connack.is_failure
        deadletters = gateway_config.mqtt.deadletter_topic.format(device="#")
        gateway.subscribe([*filters, deadletters, "alerts/#"])
        assert all(not code.is_failure for code in gateway.granted), gateway.granted

        # Refused publishes first: once the allowed ones have arrived, the refused ones would have too.
        refused = [
            device.publish("devices/boiler-18/telemetry", "as another device"),
            device.publish(deadletters.replace("#", "boiler-17"), "as the gateway"),
            sim.publish("alerts/dev-00001", "simulator off its topics"),
        ]
        expected = {concrete(m.topic, "boiler-17"): f"mapping {i}" for i, m in enumerate(gateway_config.mappings)}
        for topic, payload in expected.items():
            device.publish(topic, payload)
        expected[topic_for("dev-00001")] = "simulated"
        sim.publish(topic_for("dev-00001"), "simulated")
        for topic in (deadletters.replace("#", "boiler-17"), "alerts/boiler-17"):
            expected[topic] = "from the gateway"
            gateway.publish(topic, "from the gateway")

        received: dict[str, str] = {}

        def all_topics_received() -> bool:
            with contextlib.suppress(queue.Empty):
                while True:
                    topic, payload = gateway.messages.get_nowait()
                    assert not payload.startswith((b"as ", b"simulator off")), f"refused publish delivered on {topic}"
                    received[topic] = payload.decode()
            return set(received) == set(expected)

        wait_until(all_topics_received, 10, f"a message on each of {sorted(expected)}", lambda: f"received {received}")
        assert received == expected
        # MQTT 5: Mosquitto answers a refused QoS 1 publish with PUBACK "Not authorized" (0x87).
        wait_until(
            lambda: all(mid in device.acks for mid in refused[:2]) and refused[2] in sim.acks,
            10,
            "a PUBACK for each refused publish",
            broker.log_tail,
            interval=0.01,
        )
        for code in (device.acks[refused[0]], device.acks[refused[1]], sim.acks[refused[2]]):
            assert code.is_failure, code
    finally:
        for client in clients:
            client.close()
