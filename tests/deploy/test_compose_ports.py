"""The docker-compose deployment's ports and hosts agree across the compose file, the Dockerfile, the gateway's
compose config, the Mosquitto config, the simulator and the Grafana provisioning.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import yaml

from device_sim.brokerurl import parse_broker_url
from gateway.config.schema import GatewayConfig
from tests.support import ROOT
from tests.support.compose_files import (
    DATASOURCE,
    DOCKERFILE,
    GATEWAY_CONFIG,
    MOSQUITTO_CONF,
    compose,
    container_ports,
    mounts,
    service,
    simulator_argv,
)


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
