"""Bad configs: every error names the key and the value; unparseable and missing files name the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config.schema import (
    load_config,
)
from gateway.errors import ConfigError
from tests.support.config_messages import _line_for

pytestmark = pytest.mark.usefixtures("no_gateway_env")


@pytest.mark.parametrize(
    ("text", "key", "shown"),
    [
        pytest.param("mqtt:\n  keepalive_s: abc\n", "mqtt.keepalive_s", "'abc'", id="wrong-type"),
        pytest.param("mqtt:\n  keepalive_s: 3\n", "mqtt.keepalive_s", "3", id="below-minimum"),
        pytest.param("mqtt:\n  hots: broker.example\n", "mqtt.hots", "'broker.example'", id="unknown-key"),
        pytest.param("sinks: []\n", "sinks", "[]", id="unknown-top-level-key"),
        pytest.param("mqtt:\n  url: http://x\n", "mqtt.url", "http://x", id="mqtt-url-http-scheme"),
        pytest.param("mqtt:\n  url: mqtt://\n", "mqtt.url", "mqtt://", id="mqtt-url-no-host"),
        pytest.param("mqtt:\n  url: mqtt://h:99999\n", "mqtt.url", "mqtt://h:99999", id="mqtt-url-bad-port"),
        pytest.param("mqtt:\n  protocol: '4'\n", "mqtt.protocol", "'4'", id="protocol-not-allowed"),
        pytest.param("mqtt:\n  shared_group: a/b\n", "mqtt.shared_group", "'a/b'", id="shared-group-slash"),
        pytest.param("mqtt:\n  tls:\n    insecur: true\n", "mqtt.tls.insecur", "True", id="unknown-nested-key"),
        pytest.param("influx:\n  url: ftp://x\n", "influx.url", "ftp://x", id="influx-url-ftp"),
        pytest.param("influx:\n  batch_size: 0\n", "influx.batch_size", "0", id="influx-batch-size-zero"),
        pytest.param(
            "validation:\n  device_id_pattern: '[a-'\n",
            "validation.device_id_pattern",
            "'[a-'",
            id="bad-regex",
        ),
        pytest.param("dedup:\n  max_entries: 0\n", "dedup.max_entries", "0", id="dedup-zero-entries"),
        pytest.param("dedup:\n  window_s: -1\n", "dedup.window_s", "-1", id="dedup-negative-window"),
        pytest.param(
            "mappings:\n  - topic: devices/telemetry\n",
            "mappings.0",
            "devices/telemetry",
            id="no-placeholder",
        ),
        pytest.param("mappings:\n  - measurement: gateway\n", "mappings.0.measurement", "'gateway'", id="reserved"),
        pytest.param(
            "mappings:\n  - topic: d/{device}/{device}\n",
            "mappings.0.topic",
            "d/{device}/{device}",
            id="two-device-levels",
        ),
        pytest.param(
            "mappings:\n  - topic: d/+\n    format: native\n    device_field: id\n",
            "mappings.0",
            "device_field",
            id="device-field-needs-json",
        ),
        pytest.param(
            "validation:\n  metrics:\n    - {name: t, min: 5, max: 1}\n",
            "validation.metrics.0",
            "'min': 5",
            id="metric-min-above-max",
        ),
        pytest.param(
            "mappings:\n  - validation: {late: sometimes}\n",
            "mappings.0.validation.late",
            "'sometimes'",
            id="mapping-late-unknown",
        ),
        pytest.param("mappings:\n  - format: protobuf\n", "mappings.0.format", "'protobuf'", id="unknown-format"),
        pytest.param(
            "mappings:\n  - topic: esphome/{device}/state\n    format: value\n",
            "mappings.0",
            "{metric}",
            id="value-needs-metric",
        ),
        pytest.param("mappings:\n  - timezone: Mars/Olympus\n", "mappings.0.timezone", "Mars", id="bad-timezone"),
        pytest.param("mappings: []\n", "mappings", "[]", id="no-mappings"),
        pytest.param("http:\n  port: 70000\n", "http.port", "70000", id="port-out-of-range"),
        pytest.param("log:\n  level: LOUD\n", "log.level", "'LOUD'", id="log-level"),
    ],
)
def test_bad_config_names_key_and_value(text: str, key: str, shown: str, write_yaml: Callable[[str], Path]) -> None:
    sink = "" if text.startswith("influx:") else "sqlite:\n  path: x.db\n"
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(sink + text))
    assert shown in _line_for(str(info.value), key)


def test_every_problem_is_reported(write_yaml: Callable[[str], Path]) -> None:
    text = "mqtt:\n  keepalive_s: abc\n  hots: x\ninflux:\n  url: ftp://x\n"
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(text))
    for key in ("mqtt.keepalive_s", "mqtt.hots", "influx.url"):
        _line_for(str(info.value), key)


def test_no_sink_section_is_an_error(write_yaml: Callable[[str], Path]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml("mqtt:\n  url: mqtt://h\n"))
    message = str(info.value)
    assert "influx" in message
    assert "sqlite" in message
    with pytest.raises(ConfigError):
        load_config(write_yaml(""))  # an empty file is no exception


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("mqtt: [unclosed\n", "not valid YAML", id="invalid-yaml"),
        pytest.param("- a\n- b\n", "mapping", id="top-level-list"),
        pytest.param("just a string\n", "mapping", id="top-level-scalar"),
    ],
)
def test_unparseable_file_names_the_file(text: str, fragment: str, write_yaml: Callable[[str], Path]) -> None:
    path = write_yaml(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(info.value)
