"""The docker-compose deployment's credentials: one .env variable each, used by every service that needs it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from device_sim.brokerurl import parse_broker_url
from gateway.config.schema import GatewayConfig
from tests.support.compose_files import (
    DATASOURCE,
    GATEWAY_USER,
    INIT_AUTH,
    MOSQUITTO_CONF,
    SIM_USER,
    env_values,
    mounts,
    service,
    simulator_argv,
    variable_of,
)


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
