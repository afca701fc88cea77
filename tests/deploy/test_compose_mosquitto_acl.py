"""The compose Mosquitto config: the settings the gateway relies on, and the ACL (read with Mosquitto's
acl_file semantics) against the topics of the gateway, the devices and the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import paho.mqtt.client as mqtt
import yaml

from device_sim.wire import topic_for
from gateway.config.schema import GatewayConfig
from gateway.ingest.mapping import TopicRouter
from tests.support.compose_files import (
    ACL_FILE,
    DEVICES_EXAMPLE,
    GATEWAY_CONFIG,
    GATEWAY_USER,
    MOSQUITTO_CONF,
    SIM_USER,
    concrete,
    mounts,
)


def mosquitto_options() -> dict[str, str]:
    options = {}
    for line in MOSQUITTO_CONF.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            options[key] = value.strip()
    return options


def test_mosquitto_keeps_the_gateways_session_and_backlog() -> None:
    options = mosquitto_options()
    assert options["persistence"] == "true"
    assert options["persistence_location"].rstrip("/") in mounts("mosquitto")
    assert mounts("mosquitto")[options["persistence_location"].rstrip("/")] == "mosquitto-data"
    assert int(options["max_queued_messages"]) >= 10_000_000, "the default (1000) drops queued QoS 1 messages"
    assert options["max_queued_bytes"] == "0"
    assert options["max_inflight_messages"] == "0", "no broker cap below the gateway's receive_maximum"
    assert options["allow_anonymous"] == "false"
    assert options.get("protocol", "mqtt") == "mqtt", "MQTT 5 must stay allowed"


@dataclass(frozen=True)
class AclRule:
    access: str  # read, write, readwrite, deny
    topic: str
    user: str | None  # None: a pattern, for every user


def acl_rules() -> list[AclRule]:
    rules, user = [], None
    for line in ACL_FILE.read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user":
            user = words[1]
        elif words[0] in ("topic", "pattern"):
            access, topic = (words[1], words[2]) if len(words) == 3 else ("readwrite", words[1])
            assert access in ("read", "write", "readwrite", "deny"), line
            assert words[0] == "pattern" or user is not None, f"topic line for anonymous clients: {line}"
            rules.append(AclRule(access, topic, user if words[0] == "topic" else None))
        else:
            raise AssertionError(f"unknown ACL line: {line}")
    return rules


def acl_allows(username: str, access: str, topic: str, client_id: str = "some-client") -> bool:
    """Mosquitto's acl_file semantics: a user's topic lines plus every pattern (%u, %c); deny wins."""
    allowed = False
    for rule in acl_rules():
        if rule.user is None:
            acl_topic = rule.topic.replace("%u", username).replace("%c", client_id)
        elif rule.user == username:
            acl_topic = rule.topic
        else:
            continue
        if not mqtt.topic_matches_sub(acl_topic, topic):
            continue
        if rule.access == "deny":
            return False
        allowed = allowed or rule.access in (access, "readwrite")
    return allowed


def test_compose_mappings_are_the_device_families_of_devices_example() -> None:
    compose_mappings = yaml.safe_load(GATEWAY_CONFIG.read_text())["mappings"]
    examples = {m["topic"]: m for m in yaml.safe_load(DEVICES_EXAMPLE.read_text())["mappings"]}
    assert len(compose_mappings) >= 2
    for mapping in compose_mappings:
        assert mapping == examples.get(mapping["topic"]), f"{mapping['topic']} differs from devices.example.yaml"


def test_acl_lets_a_device_publish_only_under_its_own_id(gateway_config: GatewayConfig) -> None:
    for mapping in gateway_config.mappings:
        own = concrete(mapping.topic, "boiler-17")
        assert acl_allows("boiler-17", "write", own), f"a device cannot publish on {own}"
        assert not acl_allows("boiler-18", "write", own), f"boiler-18 may publish as boiler-17 on {own}"
        assert not acl_allows("boiler-17", "read", own), "devices read nothing"
        # Client ids are not authenticated: claiming another's must not help.
        assert not acl_allows("boiler-18", "write", own, client_id="boiler-17")
    for topic in ("gateway/deadletter/boiler-17", "alerts/boiler-17", "devices/boiler-17/commands"):
        assert not acl_allows("boiler-17", "write", topic)


def test_acl_lets_the_gateway_read_what_it_subscribes_to_and_publish_dead_letters(
    gateway_config: GatewayConfig,
) -> None:
    filters = TopicRouter(list(gateway_config.mappings)).filters
    granted = {rule.topic for rule in acl_rules() if rule.user == GATEWAY_USER and "read" in rule.access}
    # Mosquitto checks a subscription against the ACL topics; the simplest sure match is the same filter.
    assert set(filters) <= granted, "the gateway subscribes to filters the ACL does not name"
    for mapping in gateway_config.mappings:
        assert acl_allows(GATEWAY_USER, "read", concrete(mapping.topic, "boiler-17"))
    for device in ("boiler-17", "_unknown"):
        assert acl_allows(GATEWAY_USER, "write", gateway_config.mqtt.deadletter_topic.format(device=device))
    assert acl_allows(GATEWAY_USER, "write", "alerts/boiler-17")
    assert not acl_allows(GATEWAY_USER, "write", "devices/boiler-17/telemetry")


def test_acl_lets_the_simulator_publish_for_its_whole_fleet(gateway_config: GatewayConfig) -> None:
    topic = topic_for("dev-00042")
    assert acl_allows(SIM_USER, "write", topic)
    assert TopicRouter(list(gateway_config.mappings)).route(topic) is not None, "the gateway maps its topic"
    assert not acl_allows(SIM_USER, "write", "gateway/deadletter/dev-00042")
