"""The docker-compose deployment's files, read as Compose reads them: the compose file, .env.example and its
interpolation, the services' ports and mounts, and the simulator's command as the container runs it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support import DATA, ROOT

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


GATEWAY_USER = "gateway"  # the broker users config/mosquitto/acl names
SIM_USER = "device-sim"


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


def concrete(template: str, device: str) -> str:
    """A topic a device publishes under a mapping's template (wildcard levels filled in)."""
    levels = {"{device}": device, "{metric}": "temperature", "+": "x", "#": "x"}
    return "/".join(levels.get(level, level) for level in template.split("/"))


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
