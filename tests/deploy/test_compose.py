"""The docker-compose deployment, checked without Docker: the compose file against the Compose Specification's
JSON schema, and ports, credentials, topics and measurements agreeing across the compose file, .env.example,
the gateway's compose config, the Mosquitto config and ACL, the Grafana provisioning and the dashboards.

The broker part runs for real: config/mosquitto/mosquitto.conf (paths and port swapped for the test's) with
the password file and ACL that config/mosquitto/init-auth.sh writes, on the Mosquitto installed here.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import queue
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from typer.testing import CliRunner

from device_sim.brokerurl import parse_broker_url
from device_sim.cli import app as device_sim_app
from device_sim.wire import topic_for
from gateway.config.schema import SELF_MEASUREMENT, GatewayConfig, load_config
from gateway.ingest.mapping import TopicRouter
from gateway.telemetry import self_metrics
from tests.support import DATA, ROOT
from tests.support.servers import Mosquitto
from tests.support.waits import wait_until

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = DATA / "compose-spec.json"
DOCKERFILE = ROOT / "Dockerfile"
GATEWAY_CONFIG = ROOT / "config" / "gateway.compose.yaml"
DEVICES_EXAMPLE = ROOT / "config" / "devices.example.yaml"
MOSQUITTO_DIR = ROOT / "config" / "mosquitto"
MOSQUITTO_CONF = MOSQUITTO_DIR / "mosquitto.conf"
ACL_FILE = MOSQUITTO_DIR / "acl"
INIT_AUTH = MOSQUITTO_DIR / "init-auth.sh"
GRAFANA = ROOT / "config" / "grafana"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "influxdb.yaml"
DASHBOARD_PROVIDER = GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

# The gateway's own counters in InfluxDB (issue 7: "the same counters are written every N seconds to the sinks
# as measurement `gateway`"): one point per interval, tag `instance`, float fields named after the Prometheus
# metrics without the `gateway_` prefix; labelled counters are summed over their labels. The dashboards use
# exactly these; the writer must write at least these.
GATEWAY_MEASUREMENT = SELF_MEASUREMENT
GATEWAY_TAGS = frozenset({"instance"})
# What gateway/telemetry/self_metrics.py writes as measurement `gateway`; the dashboards must use exactly these.
GATEWAY_FIELDS = frozenset(self_metrics.FIELDS)

GATEWAY_USER = "gateway"  # the broker users config/mosquitto/acl names
SIM_USER = "device-sim"


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services[name]


@dataclass(frozen=True)
class EnvVar:
    value: str
    comment: str


def env_example() -> dict[str, EnvVar]:
    """NAME=value lines of .env.example, each with the comment line right above it ('' if none)."""
    found: dict[str, EnvVar] = {}
    previous = ""
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            name, value = match.groups()
            assert name not in found, f".env.example sets {name} twice"
            if value.startswith("'") and value.endswith("'") and len(value) > 1:
                value = value[1:-1]
            found[name] = EnvVar(value, previous.lstrip("# ").strip() if previous.startswith("#") else "")
        previous = line
    return found


def env_values() -> dict[str, str]:
    return {name: var.value for name, var in env_example().items()}


# $$ is a literal $; ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME.
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


@dataclass(frozen=True)
class Use:
    name: str
    op: str | None
    arg: str | None


def uses_in(text: str) -> list[Use]:
    return [Use(m["name"] or m["bare"], m["op"], m["arg"]) for m in _INTERPOLATION.finditer(text) if m.group() != "$$"]


def interpolate(text: str, env: dict[str, str]) -> str:
    """What Compose makes of a value, given the variables in .env."""

    def one(m: re.Match[str]) -> str:
        if m.group() == "$$":
            return "$"
        name = m["name"] or m["bare"]
        value = env.get(name)
        if m["op"] in ("-", ":-") and (value is None or (m["op"] == ":-" and value == "")):
            return str(m["arg"])
        if m["op"] in ("?", ":?") and (value is None or (m["op"] == ":?" and value == "")):
            raise AssertionError(f"compose would stop: {name} {m['arg']}")
        return value or ""

    return _INTERPOLATION.sub(one, text)


def strings(node: Any) -> Iterator[str]:
    """Every string in a parsed YAML document, keys included (comments are gone)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def variables_used() -> dict[str, list[Use]]:
    used: dict[str, list[Use]] = {}
    for text in strings(compose()):
        for use in uses_in(text):
            used.setdefault(use.name, []).append(use)
    return used


def variable_of(value: str) -> str:
    """The one .env variable a compose value consists of: `${INFLUXDB_TOKEN:?...}` -> INFLUXDB_TOKEN."""
    match = re.fullmatch(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-?][^}]*)?\}", value)
    assert match, f"expected exactly one ${{VARIABLE}}, got {value!r}"
    return match[1]


def container_ports(name: str) -> dict[int, str]:
    """Published ports of a service: container port -> host part ("127.0.0.1:9108", "1883")."""
    ports: dict[int, str] = {}
    for entry in service(name).get("ports", []):
        host, _, container = interpolate(str(entry), env_values()).rpartition(":")
        ports[int(container)] = host
    return ports


def mounts(name: str) -> dict[str, str]:
    """Volumes of a service: target in the container -> source (host path or volume name)."""
    found = {}
    for entry in service(name).get("volumes", []):
        source, target, *_ = str(entry).split(":")
        found[target] = source
    return found


@pytest.fixture
def compose_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The gateway container's environment, as Compose sets it from .env.example, in os.environ."""
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    env = {key: interpolate(str(value), env_values()) for key, value in service("gateway")["environment"].items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def gateway_config(compose_env: dict[str, str]) -> GatewayConfig:
    return load_config(GATEWAY_CONFIG)


# ---------------------------------------------------------------------------------------------------
# the compose file and its variables
# ---------------------------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_bad_compose_file() -> None:
    """The vendored schema really constrains services (a typo'd key, a wrong depends_on condition)."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    bad = compose()
    bad["services"]["gateway"]["healthchek"] = {}
    bad["services"]["mosquitto"]["depends_on"]["mosquitto-init"]["condition"] = "service_done"
    assert len(list(validator.iter_errors(bad))) == 2


def test_every_variable_the_compose_file_uses_is_documented_in_env_example_and_vice_versa() -> None:
    used = variables_used()
    documented = env_example()
    assert sorted(set(used) - set(documented)) == [], "used in docker-compose.yml, missing from .env.example"
    assert sorted(set(documented) - set(used)) == [], "in .env.example, used nowhere in docker-compose.yml"
    for name, var in documented.items():
        assert var.comment, f".env.example: {name} has no comment line above it"
        for use in used[name]:
            if use.op in ("?", ":?"):
                assert var.value, f".env.example: {name} is required by docker-compose.yml and must have a value"
            if use.op in ("-", ":-") and use.arg:  # an empty default: optional, the example shows a use
                assert use.arg == var.value, f"{name}: compose default {use.arg!r}, .env.example says {var.value!r}"


def test_env_example_holds_placeholders_not_secrets() -> None:
    env = env_values()
    secrets = {name: value for name, value in env.items() if "PASSWORD" in name or "TOKEN" in name}
    assert len(secrets) >= 5
    for name, value in secrets.items():
        assert value.startswith("change-me"), f"{name} must be an obvious placeholder, got {value!r}"
    for entry in env["MQTT_DEVICES"].split():
        assert entry.partition(":")[2].startswith("change-me"), entry
    assert len(env["INFLUXDB_PASSWORD"]) >= 8, "InfluxDB refuses passwords shorter than 8 characters"


def test_env_file_stays_out_of_git_and_of_the_image() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()


# ---------------------------------------------------------------------------------------------------
# ports and hosts
# ---------------------------------------------------------------------------------------------------


def _healthcheck_url(test: list[str] | str) -> str:
    text = test if isinstance(test, str) else " ".join(test)
    match = re.search(r"http://[^'\" ]+", text)
    assert match, f"no URL in healthcheck {text!r}"
    return match.group()


def test_gateway_http_port_agrees_with_published_port_and_healthchecks(gateway_config: GatewayConfig) -> None:
    port = gateway_config.http.port
    assert gateway_config.http.host == "0.0.0.0", "the published port needs the endpoint on every interface"
    assert list(container_ports("gateway")) == [port]
    url = urlsplit(_healthcheck_url(service("gateway")["healthcheck"]["test"]))
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", port, "/readyz")
    dockerfile = DOCKERFILE.read_text()
    healthcheck = re.search(r"^HEALTHCHECK (?:.*\\\n)*.*", dockerfile, re.M)
    assert healthcheck, "the Dockerfile has no HEALTHCHECK"
    url = urlsplit(_healthcheck_url(healthcheck.group()))
    assert (url.port, url.path) == (port, "/readyz")
    assert f"EXPOSE {port}" in dockerfile


def test_gateway_command_reads_the_mounted_config() -> None:
    gateway = service("gateway")
    command = gateway["command"]
    config_path = command[command.index("--config") + 1]
    assert mounts("gateway")[config_path] == "./" + GATEWAY_CONFIG.relative_to(ROOT).as_posix()
    assert 'CMD ["gateway", "run", "--config", "' + config_path + '"]' in DOCKERFILE.read_text()


def test_broker_port_agrees_across_mosquitto_conf_gateway_and_simulator(compose_env: dict[str, str]) -> None:
    listeners = re.findall(r"^listener (\d+)\s*$", MOSQUITTO_CONF.read_text(), re.M)
    assert listeners == ["1883"], "one listener on every interface"
    port = int(listeners[0])
    assert list(container_ports("mosquitto")) == [port]
    gateway_url = urlsplit(compose_env["GATEWAY_MQTT__URL"])
    assert (gateway_url.scheme, gateway_url.hostname, gateway_url.port) == ("mqtt", "mosquitto", port)
    sim = parse_broker_url(simulator_argv()[simulator_argv().index("--broker") + 1])
    assert (sim.host, sim.port, sim.tls) == ("mosquitto", port, False)


def test_influxdb_port_and_host_agree_across_gateway_grafana_and_healthcheck(compose_env: dict[str, str]) -> None:
    assert list(container_ports("influxdb")) == [8086]
    gateway_url = urlsplit(compose_env["GATEWAY_INFLUX__URL"])
    assert (gateway_url.hostname, gateway_url.port) == ("influxdb", 8086)
    datasource = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]
    assert urlsplit(datasource["url"]).netloc == "influxdb:8086"
    assert _healthcheck_url(service("influxdb")["healthcheck"]["test"]) == "http://localhost:8086"


def test_grafana_serves_on_its_default_port() -> None:
    grafana = service("grafana")
    assert list(container_ports("grafana")) == [3000]
    assert "GF_SERVER_HTTP_PORT" not in grafana["environment"]


def test_only_the_simulator_and_grafana_need_a_profile() -> None:
    profiles = {name: spec.get("profiles") for name, spec in compose()["services"].items()}
    assert profiles == {
        "mosquitto-init": None,
        "mosquitto": None,
        "influxdb": None,
        "gateway": None,
        "simulator": ["sim"],
        "grafana": ["grafana"],
    }


# ---------------------------------------------------------------------------------------------------
# credentials: one variable each, used everywhere
# ---------------------------------------------------------------------------------------------------


def test_influxdb_org_bucket_and_token_are_the_same_variables_for_influxdb_gateway_and_grafana() -> None:
    influx = service("influxdb")["environment"]
    gateway = service("gateway")["environment"]
    grafana = service("grafana")["environment"]
    datasource = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]
    provisioned = {
        "org": datasource["jsonData"]["organization"],
        "bucket": datasource["jsonData"]["defaultBucket"],
        "token": datasource["secureJsonData"]["token"],
    }
    for key, init in (("org", "ORG"), ("bucket", "BUCKET"), ("token", "ADMIN_TOKEN")):
        variable = variable_of(influx[f"DOCKER_INFLUXDB_INIT_{init}"])
        assert variable_of(gateway[f"GATEWAY_INFLUX__{key.upper()}"]) == variable
        # Grafana expands ${NAME} in provisioning files from its own environment.
        grafana_env = variable_of(provisioned[key])
        assert variable_of(grafana[grafana_env]) == variable, f"datasource {key}"
    assert influx["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert {"DOCKER_INFLUXDB_INIT_USERNAME", "DOCKER_INFLUXDB_INIT_PASSWORD"} <= set(influx)
    assert datasource["jsonData"]["version"] == "Flux"


def test_gateway_config_loads_with_the_compose_environment(
    gateway_config: GatewayConfig, compose_env: dict[str, str]
) -> None:
    env = env_values()
    config = gateway_config
    assert config.influx is not None, "the compose gateway writes to InfluxDB"
    assert config.sqlite is None
    assert (config.influx.url, config.influx.org, config.influx.bucket) == (
        "http://influxdb:8086",
        env["INFLUXDB_ORG"],
        env["INFLUXDB_BUCKET"],
    )
    assert config.influx.token is not None and config.influx.token.get_secret_value() == env["INFLUXDB_TOKEN"]
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.username) == ("mosquitto", 1883, GATEWAY_USER)
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == env["MQTT_GATEWAY_PASSWORD"]
    assert config.mqtt.protocol == "5", "MQTT 5 sets the gateway's own in-flight window"
    # The journal lives on the gateway-data volume, so it survives the container.
    assert mounts("gateway")["/data"] == "gateway-data"
    assert config.journal.path.parent == Path("/data")


def test_broker_passwords_reach_the_password_file_generator_and_the_clients() -> None:
    init = service("mosquitto-init")["environment"]
    assert variable_of(service("gateway")["environment"]["GATEWAY_MQTT__PASSWORD"]) == variable_of(
        init["MQTT_GATEWAY_PASSWORD"]
    )
    assert variable_of(service("simulator")["environment"]["MQTT_SIM_PASSWORD"]) == variable_of(
        init["MQTT_SIM_PASSWORD"]
    )
    script = INIT_AUTH.read_text()
    assert f'add_user {GATEWAY_USER} "$MQTT_GATEWAY_PASSWORD"' in script
    assert f'add_user {SIM_USER} "$MQTT_SIM_PASSWORD"' in script
    assert parse_broker_url(simulator_argv()[simulator_argv().index("--broker") + 1]).username == SIM_USER


def test_broker_starts_only_after_its_password_file_is_written() -> None:
    mosquitto = service("mosquitto")
    assert mosquitto["depends_on"]["mosquitto-init"]["condition"] == "service_completed_successfully"
    init_mounts, broker_mounts = mounts("mosquitto-init"), mounts("mosquitto")
    conf = MOSQUITTO_CONF.read_text()
    auth_dir = re.search(r"^password_file (\S+)/passwd$", conf, re.M)
    assert auth_dir, "password_file must be in the auth volume"
    assert f"acl_file {auth_dir[1]}/acl" in conf
    assert init_mounts[auth_dir[1]] == broker_mounts[auth_dir[1]] == "mosquitto-auth"
    # init-auth.sh's defaults are where the compose file mounts things.
    script = INIT_AUTH.read_text()
    assert f'auth_dir="${{AUTH_DIR:-{auth_dir[1]}}}"' in script
    config_dir = next(target for target, source in init_mounts.items() if source == "./config/mosquitto")
    assert f'acl_source="${{ACL_SOURCE:-{config_dir}/acl}}"' in script
    assert service("mosquitto-init")["command"] == ["sh", f"{config_dir}/init-auth.sh"]
    assert broker_mounts["/mosquitto/config"] == "./config/mosquitto", "the image reads mosquitto.conf there"


# ---------------------------------------------------------------------------------------------------
# Mosquitto: settings the gateway relies on, and the ACL against the topics
# ---------------------------------------------------------------------------------------------------


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


def concrete(template: str, device: str) -> str:
    """A topic a device publishes under a mapping's template (wildcard levels filled in)."""
    levels = {"{device}": device, "{metric}": "temperature", "+": "x", "#": "x"}
    return "/".join(levels.get(level, level) for level in template.split("/"))


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


# ---------------------------------------------------------------------------------------------------
# the simulator service
# ---------------------------------------------------------------------------------------------------


def simulator_argv(password: str | None = None) -> list[str]:
    """The arguments the simulator container passes to device-sim: its shell command, run here with a stand-in
    device-sim that records them (and the venv's Python for the container's)."""
    env = env_values()
    spec = service("simulator")
    container_env = {key: interpolate(str(value), env) for key, value in spec["environment"].items()}
    if password is not None:
        container_env["MQTT_SIM_PASSWORD"] = password
    with tempfile.TemporaryDirectory() as scratch:
        bin_dir = Path(scratch)
        fake = bin_dir / "device-sim"
        fake.write_text('#!/bin/sh\nprintf \'%s\\n\' "$@" > "$ARGS_OUT"\n')
        fake.chmod(0o755)
        (bin_dir / "python").symlink_to(sys.executable)
        args_out = bin_dir / "args"
        subprocess.run(
            [interpolate(part, env) for part in spec["command"]],
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "ARGS_OUT": str(args_out), **container_env},
            check=True,
            timeout=30,
        )
        return args_out.read_text().splitlines()


def test_simulator_command_passes_device_sim_valid_options() -> None:
    argv = simulator_argv()
    assert argv[0] == "run"
    # The real CLI parses them (a small --dry-run instead of the hour-long fleet).
    result = CliRunner().invoke(device_sim_app, [*argv, "--messages", "20", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "--start" not in argv, "readings are stamped from now on (the simulator's default), in real time"
    assert "--pace" not in argv and "--no-pace" not in argv, "at the fleet's own pace"


@pytest.mark.parametrize(
    "password",
    [pytest.param("plain", id="plain"), pytest.param("p@ss/w rd%20 $x'\"#?&", id="url-and-shell-characters")],
)
def test_simulator_command_carries_the_password_into_the_broker_url_whatever_its_characters(password: str) -> None:
    argv = simulator_argv(password)
    broker = parse_broker_url(argv[argv.index("--broker") + 1])
    assert (broker.username, broker.password) == (SIM_USER, password)


# ---------------------------------------------------------------------------------------------------
# Grafana: provisioning and the dashboards' Flux
# ---------------------------------------------------------------------------------------------------


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in DASHBOARDS}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # inside rows


def flux_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, Flux) for every panel target and every query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"{dashboard['title']} / {panel['title']}", target["query"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"{dashboard['title']} / variable {variable['name']}", variable["query"]


_COMPARISON = r"""r(?:\.{col}|\["{col}"\])\s*(?P<op>==|!=|=~|!~)\s*(?P<value>"[^"]*"|\S+)"""
_MEASUREMENT = re.compile(_COMPARISON.format(col="_measurement"))
_FIELD = re.compile(_COMPARISON.format(col="_field"))
_COLUMN = re.compile(r"""\br(?:\.([A-Za-z_][A-Za-z0-9_]*)|\["([^"]+)"\])""")
_COLUMN_LISTS = re.compile(r"columns:\s*\[([^\]]*)\]")


@dataclass(frozen=True)
class FluxNames:
    measurements: frozenset[str]
    fields: frozenset[str]
    columns: frozenset[str]


def flux_names(flux: str) -> FluxNames:
    """The measurements and fields a query compares with (only `== "literal"`), and every column it names."""
    found: dict[str, set[str]] = {"measurements": set(), "fields": set()}
    for key, pattern in (("measurements", _MEASUREMENT), ("fields", _FIELD)):
        for match in pattern.finditer(flux):
            op, value = match["op"], match["value"]
            assert op == "==" and value.startswith('"'), f'only == "literal" can be checked, got {match.group()}'
            found[key].add(value.strip('"'))
    columns = {a or b for a, b in _COLUMN.findall(flux)}
    for listed in _COLUMN_LISTS.findall(flux):
        columns |= {name.strip().strip('"') for name in listed.split(",") if name.strip()}
    return FluxNames(frozenset(found["measurements"]), frozenset(found["fields"]), frozenset(columns))


@dataclass(frozen=True)
class SimulatedData:
    fields: dict[str, set[str]]  # measurement -> field names
    tags: set[str]


def simulated_data() -> SimulatedData:
    """What the compose simulator sends, from its own manifest: its command, as a short dry run."""
    with tempfile.TemporaryDirectory() as scratch:
        manifest = Path(scratch) / "manifest.jsonl"
        args = [*simulator_argv(), "--messages", "500", "--dry-run", "--manifest", str(manifest)]
        result = CliRunner().invoke(device_sim_app, args)
        assert result.exit_code == 0, result.output
        data = SimulatedData({}, set())
        for line in manifest.read_text().splitlines():
            record = json.loads(line)
            if record["type"] == "reading":
                data.fields.setdefault(record.get("measurement", "telemetry"), set()).update(record["fields"])
                data.tags.update(record["tags"])
        return data


def test_grafana_provisions_the_datasource_the_dashboards_use_and_loads_them_from_the_mount() -> None:
    datasource = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]
    provider = yaml.safe_load(DASHBOARD_PROVIDER.read_text())["providers"][0]
    grafana = mounts("grafana")
    assert grafana[provider["options"]["path"]] == "./config/grafana/dashboards"
    assert grafana["/etc/grafana/provisioning"] == "./config/grafana/provisioning"
    assert {path.stem for path in DASHBOARDS} == {"fleet-overview", "device", "gateway-health"}
    uids = [d["uid"] for d in dashboards().values()]
    assert len(set(uids)) == len(uids)
    for dashboard in dashboards().values():
        for panel in panels(dashboard):
            refs = [panel.get("datasource"), *(t.get("datasource") for t in panel.get("targets", []))]
            for ref in filter(None, refs):
                assert ref == {"type": "influxdb", "uid": datasource["uid"]}, panel["title"]


def test_dashboards_query_only_measurements_and_fields_the_gateway_writes(gateway_config: GatewayConfig) -> None:
    simulated = simulated_data()
    assert set(simulated.fields) <= {m.measurement for m in gateway_config.mappings}
    writes = {**simulated.fields, GATEWAY_MEASUREMENT: set(GATEWAY_FIELDS)}
    # Tags: the gateway's `device`, the payloads' (the simulator's), the mappings' static ones, `instance`.
    static_tags = {tag for m in gateway_config.mappings for tag in m.tags}
    columns = {"_measurement", "_field", "_value", "_time", "_start", "_stop", "device"}
    columns |= simulated.tags | static_tags | GATEWAY_TAGS
    used_gateway_fields: set[str] = set()
    queries = [q for d in dashboards().values() for q in flux_queries(d)]
    assert len(queries) >= 15
    for where, flux in queries:
        names = flux_names(flux)
        assert names.measurements, f"{where}: no r._measurement filter"
        assert names.measurements <= set(writes), f"{where}: unknown measurement in {sorted(names.measurements)}"
        allowed_fields = set().union(*(writes[m] for m in names.measurements))
        assert names.fields <= allowed_fields, f"{where}: {sorted(names.fields - allowed_fields)} not written"
        if names.measurements == {GATEWAY_MEASUREMENT}:
            used_gateway_fields |= names.fields
        # A projection's output names (field, value) are not data columns; r.<name> and columns: [...] are.
        unknown = names.columns - columns - {"field", "value"}
        assert not unknown, f"{where}: columns {sorted(unknown)} are not tags or columns the gateway writes"
        assert "v.defaultBucket" in flux, f"{where}: use the data source's bucket, not a fixed one"
    assert used_gateway_fields == GATEWAY_FIELDS, "every field of the gateway measurement is on a dashboard"


def test_device_dashboard_is_templated_by_device() -> None:
    board = dashboards()["device"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"device"}
    assert '"device"' in variables["device"]["query"]
    for where, flux in flux_queries(board):
        if "variable" not in where:
            assert 'r.device == "${device}"' in flux, f"{where}: not filtered by the chosen device"


@pytest.mark.parametrize(
    ("flux", "message"),
    [
        pytest.param('r._measurement =~ /tele.*/ and r._field == "x"', "only ==", id="regex-measurement"),
        pytest.param('r["_field"] != "temperature"', "only ==", id="not-equal-field"),
    ],
)
def test_flux_check_refuses_what_it_cannot_verify(flux: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        flux_names(flux)


def test_flux_check_reads_both_column_syntaxes() -> None:
    names = flux_names('filter(fn: (r) => r["_measurement"] == "gateway" and r._field == "journal_bytes")')
    assert names == FluxNames(
        frozenset({"gateway"}), frozenset({"journal_bytes"}), frozenset({"_measurement", "_field"})
    )


# ---------------------------------------------------------------------------------------------------
# the password file generator and the broker, for real
# ---------------------------------------------------------------------------------------------------

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
