"""The config model's sources: YAML, then GATEWAY_* environment over it, and the environment alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config.schema import (
    InfluxConfig,
    MqttConfig,
    load_config,
)
from gateway.errors import ConfigError
from tests.support.config_messages import _line_for

pytestmark = pytest.mark.usefixtures("no_gateway_env")


def test_yaml_values_are_loaded(write_yaml: Callable[[str], Path], tmp_path: Path) -> None:
    path = write_yaml(
        f"""
mqtt:
  url: mqtts://broker.example:8884
  client_id: gw-2
  keepalive_s: 45
sqlite:
  path: {tmp_path / "g.db"}
dedup:
  window_s: 60
mappings:
  - topic: site/{{device}}/data
    measurement: plant
"""
    )
    config = load_config(path)
    assert config.mqtt.host == "broker.example"
    assert config.mqtt.port == 8884
    assert config.mqtt.uses_tls
    assert config.mqtt.client_id == "gw-2"
    assert config.mqtt.keepalive_s == 45
    assert config.sqlite is not None
    assert config.sqlite.path == tmp_path / "g.db"
    assert config.influx is None
    assert config.dedup.window_s == 60.0
    assert [(m.topic, m.measurement) for m in config.mappings] == [("site/{device}/data", "plant")]


def test_default_ports_follow_the_scheme() -> None:
    assert MqttConfig(url="mqtt://h").port == 1883
    assert MqttConfig(url="mqtts://h").port == 8883
    assert not MqttConfig(url="mqtt://h").uses_tls


def test_env_overrides_the_file_and_keeps_its_other_keys(
    write_yaml: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_yaml("mqtt:\n  url: mqtt://file-host:1883\n  client_id: from-file\nsqlite:\n  path: x.db\n")
    monkeypatch.setenv("GATEWAY_MQTT__URL", "mqtt://env-host:1884")
    config = load_config(path)
    assert config.mqtt.url == "mqtt://env-host:1884"
    assert (config.mqtt.host, config.mqtt.port) == ("env-host", 1884)
    assert config.mqtt.client_id == "from-file"  # the env merges into the section, it does not replace it


def test_env_scalar_is_coerced(write_yaml: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml("mqtt:\n  keepalive_s: 30\nsqlite:\n  path: x.db\n")
    monkeypatch.setenv("GATEWAY_MQTT__KEEPALIVE_S", "90")
    assert load_config(path).mqtt.keepalive_s == 90


def test_nested_env_creates_the_influx_section(
    write_yaml: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_yaml("sqlite:\n  path: x.db\n")
    monkeypatch.setenv("GATEWAY_INFLUX__TOKEN", "env-token-123")
    config = load_config(path)
    assert config.influx is not None
    assert config.influx.token is not None
    assert config.influx.token.get_secret_value() == "env-token-123"
    assert config.influx.url == InfluxConfig.model_fields["url"].default
    assert config.sqlite is not None  # the file's section is still there


def test_nested_env_merges_into_the_files_influx_section(
    write_yaml: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_yaml("influx:\n  url: https://influx.example:8086\n  bucket: b1\n  token: file-token\n")
    monkeypatch.setenv("GATEWAY_INFLUX__TOKEN", "env-token")
    config = load_config(path)
    assert config.influx is not None
    assert config.influx.url == "https://influx.example:8086"
    assert config.influx.bucket == "b1"
    assert config.influx.token is not None
    assert config.influx.token.get_secret_value() == "env-token"


def test_environment_alone_is_a_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GATEWAY_SQLITE__PATH", str(tmp_path / "env.db"))
    config = load_config(None)
    assert config.sqlite is not None
    assert config.sqlite.path == tmp_path / "env.db"


def test_bad_env_value_names_the_key(write_yaml: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml("sqlite:\n  path: x.db\n")
    monkeypatch.setenv("GATEWAY_MQTT__KEEPALIVE_S", "abc")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "'abc'" in _line_for(str(info.value), "mqtt.keepalive_s")


def test_unknown_env_key_under_a_section_is_an_error(
    write_yaml: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_yaml("sqlite:\n  path: x.db\n")
    monkeypatch.setenv("GATEWAY_MQTT__HOTS", "broker")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "'broker'" in _line_for(str(info.value), "mqtt.hots")
