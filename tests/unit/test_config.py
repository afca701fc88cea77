"""The config model: YAML, then GATEWAY_* environment; secrets masked; errors name the key and the value."""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from gateway.config.masking import masked_dump
from gateway.config.schema import (
    AlertsConfig,
    DedupConfig,
    GatewayConfig,
    HttpConfig,
    InfluxConfig,
    JournalConfig,
    LogConfig,
    MappingConfig,
    MetricRule,
    MqttConfig,
    SelfMetricsConfig,
    SqliteConfig,
    TlsConfig,
    ValidationConfig,
    ValidationLimits,
    WebhookConfig,
    load_config,
)
from gateway.errors import ConfigError
from gateway.tools.cli import app
from tests.support import ROOT

EXAMPLE = ROOT / "config" / "gateway.example.yaml"
SECTION_MODELS = {
    GatewayConfig,
    MqttConfig,
    TlsConfig,
    InfluxConfig,
    SqliteConfig,
    DedupConfig,
    JournalConfig,
    ValidationConfig,
    ValidationLimits,
    MetricRule,
    MappingConfig,
    HttpConfig,
    LogConfig,
    SelfMetricsConfig,
    WebhookConfig,
    AlertsConfig,
}


@pytest.fixture(autouse=True)
def _no_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own GATEWAY_* variables must not leak into these tests (names are case-insensitive)."""
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "gateway.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def _error_lines(message: str) -> list[str]:
    return [line.strip() for line in message.splitlines()]


def _line_for(message: str, key: str) -> str:
    """The error line about `key`; fails when no line starts with it."""
    lines = [line for line in _error_lines(message) if line.startswith(f"{key}:")]
    assert lines, f"no error line for {key!r} in:\n{message}"
    return lines[0]


# --- YAML and environment ---------------------------------------------------------------------------------


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


# --- secrets ----------------------------------------------------------------------------------------------


def test_masked_dump_hides_secrets(write_yaml: Callable[[str], Path]) -> None:
    path = write_yaml("mqtt:\n  username: gw\n  password: hunter2-pw\ninflux:\n  token: file-tok-987\n")
    config = load_config(path)
    dump = masked_dump(config)
    text = yaml.safe_dump(dump) + repr(dump) + repr(config) + str(config)
    assert "hunter2-pw" not in text
    assert "file-tok-987" not in text
    assert dump["mqtt"]["username"] == "gw"
    for masked in (dump["mqtt"]["password"], dump["influx"]["token"]):
        assert masked and set(masked) == {"*"}
    # The secrets are still usable by the code that needs them.
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "hunter2-pw"


def test_masked_dump_hides_env_secrets(write_yaml: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_INFLUX__TOKEN", "env-secret-555")
    monkeypatch.setenv("GATEWAY_MQTT__PASSWORD", "env-secret-666")
    dump = masked_dump(load_config(write_yaml("sqlite:\n  path: x.db\n")))
    assert "env-secret-555" not in repr(dump)
    assert "env-secret-666" not in repr(dump)
    assert "token" in dump["influx"]


def test_secret_files_are_read_and_win(write_yaml: Callable[[str], Path], tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("pw-from-file\n", encoding="utf-8")  # as Docker secrets are mounted
    (tmp_path / "tok").write_text("  tok-from-file  \n", encoding="utf-8")
    path = write_yaml(
        f"""
mqtt:
  password: inline-pw
  password_file: {tmp_path / "pw"}
influx:
  token: inline-tok
  token_file: {tmp_path / "tok"}
"""
    )
    config = load_config(path)
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "pw-from-file"
    assert config.influx is not None
    assert config.influx.token is not None
    assert config.influx.token.get_secret_value() == "tok-from-file"
    assert "pw-from-file" not in repr(masked_dump(config))
    assert "tok-from-file" not in repr(masked_dump(config))


def test_unreadable_secret_file_names_key_and_path(write_yaml: Callable[[str], Path], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    path = write_yaml(f"influx:\n  token: inline-secret-42\n  token_file: {missing}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "token_file" in message
    assert str(missing) in message
    assert "inline-secret-42" not in message


SECRET = "s3cr3t-value-xyz"


@pytest.mark.parametrize(
    ("text", "env"),
    [
        pytest.param(f"mqtt:\n  password: {SECRET}\n", {}, id="no-sink-top-level-error"),
        pytest.param("mqtt:\n  url: mqtt://h\n", {"GATEWAY_MQTT__PASSWORD": SECRET}, id="no-sink-env-password"),
        pytest.param(
            f"mqtt:\n  password: {SECRET}\n  password_file: /nonexistent/pw\nsqlite: {{path: x.db}}\n",
            {},
            id="unreadable-password-file",
        ),
        pytest.param(
            f"mqtt:\n  password: {SECRET}\n  reconnect_min_s: 10\n  reconnect_max_s: 1\nsqlite: {{path: x.db}}\n",
            {},
            id="section-level-validator",
        ),
        pytest.param(f"influx:\n  token: [{SECRET}]\n", {}, id="token-wrong-type"),
        pytest.param(f"influx:\n  token: {SECRET}\n  url: ftp://x\n", {}, id="sibling-key-error"),
        pytest.param("influx:\n  url: ftp://x\n", {"GATEWAY_INFLUX__TOKEN": SECRET}, id="env-token-sibling-error"),
        pytest.param(
            f"mqtt:\n  password: {SECRET}\n  keepalive_s: 1\nsqlite: {{path: x.db}}\n",
            {},
            id="password-sibling",
        ),
    ],
)
def test_secrets_never_appear_in_errors(
    text: str, env: dict[str, str], write_yaml: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(text))
    assert "invalid configuration" in str(info.value)
    assert SECRET not in str(info.value)


# --- bad configs ------------------------------------------------------------------------------------------


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


# --- CLI --------------------------------------------------------------------------------------------------


def test_check_config_bad_file_exits_2_naming_the_key(write_yaml: Callable[[str], Path]) -> None:
    path = write_yaml("mqtt:\n  keepalive_s: abc\nsqlite:\n  path: x.db\n")
    result = CliRunner().invoke(app, ["check-config", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "'abc'" in _line_for(result.stderr.removeprefix("error: "), "mqtt.keepalive_s")
    assert result.stdout == ""


def test_check_config_good_file_prints_masked_config(write_yaml: Callable[[str], Path]) -> None:
    path = write_yaml("influx:\n  url: http://influx.example:8086\n  token: cli-secret-token\n")
    result = CliRunner().invoke(app, ["check-config", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "cli-secret-token" not in result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["influx"]["url"] == "http://influx.example:8086"
    assert set(printed["influx"]["token"]) == {"*"}
    assert "valid" in result.stderr


# --- the shipped example ----------------------------------------------------------------------------------


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def _all_models(root: type[BaseModel] = GatewayConfig) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [root]
    for model in found:  # grows while iterating: a breadth-first walk
        for field in model.model_fields.values():
            for sub in _models_in(field.annotation):
                if sub not in found:
                    found.append(sub)
    return found


def test_the_walk_reaches_every_section_model() -> None:
    assert set(_all_models()) == SECTION_MODELS


@pytest.mark.parametrize("model", sorted(SECTION_MODELS, key=lambda m: m.__name__), ids=lambda m: m.__name__)
def test_every_field_has_a_description(model: type[BaseModel]) -> None:
    undocumented = [name for name, field in model.model_fields.items() if not (field.description or "").strip()]
    assert undocumented == []


def test_example_config_loads_with_one_store() -> None:
    """One store unless the user asks for two: a second one costs throughput (the comment beside it says how much)."""
    config = load_config(EXAMPLE)
    assert config.influx is not None
    assert config.sqlite is None
    assert "# sqlite:" in EXAMPLE.read_text(encoding="utf-8")


def test_example_config_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    # A key may be commented out (`#   ca_file: ...`) or be a list item (`- topic: ...`).
    wanted: dict[str, int] = {}
    for model in _all_models():
        for name in model.model_fields:
            wanted[name] = wanted.get(name, 0) + 1
    missing = {}
    for name, models_with_it in wanted.items():
        found = len(re.findall(rf"^[ \t]*(?:#[ \t]*)?(?:-[ \t]+)?{re.escape(name)}[ \t]*:", text, re.MULTILINE))
        # `url` is a key of mqtt and influx, `batch_size` of influx and sqlite: each must show up each time.
        if found < models_with_it:
            missing[name] = (found, models_with_it)
    assert missing == {}, f"keys not documented in {EXAMPLE.name} (found, needed): {missing}"


# --- the webhook sink section -----------------------------------------------------------------------------

WEBHOOK_SECRET = "Bearer hook-s3cr3t-77"


def test_webhook_section_loads_with_alert_batching(write_yaml: Callable[[str], Path]) -> None:
    config = load_config(write_yaml("sqlite: {path: x.db}\nwebhook:\n  url: https://hooks.example/alerts\n"))
    assert config.webhook is not None
    assert config.webhook.url == "https://hooks.example/alerts"
    assert (config.webhook.batch_size, config.webhook.flush_interval_ms) == (100, 200)
    assert config.webhook.headers == {}


def test_webhook_alone_is_not_a_sink(write_yaml: Callable[[str], Path]) -> None:
    with pytest.raises(ConfigError, match="no sink configured"):
        load_config(write_yaml("webhook:\n  url: https://hooks.example/alerts\n"))


@pytest.mark.parametrize(
    ("text", "key", "shown"),
    [
        pytest.param("webhook:\n  url: ftp://hooks.example\n", "webhook.url", "ftp://hooks.example", id="ftp"),
        pytest.param("webhook:\n  url: https://\n", "webhook.url", "https://", id="no-host"),
        pytest.param("webhook:\n  url: https://h\n  timeout_s: 0\n", "webhook.timeout_s", "0", id="zero-timeout"),
        pytest.param("webhook:\n  headers: {}\n", "webhook.url", "", id="url-missing"),
        pytest.param(
            "webhook:\n  url: https://h\n  headers: {'Bad Name': x}\n", "webhook.headers", "***", id="bad-header-name"
        ),
    ],
)
def test_bad_webhook_config_names_key_and_value(
    text: str, key: str, shown: str, write_yaml: Callable[[str], Path]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(text + "sqlite: {path: x.db}\n"))
    assert shown in _line_for(str(info.value), key)


def test_webhook_header_values_never_shown(write_yaml: Callable[[str], Path]) -> None:
    headers = f"  headers:\n    Authorization: {WEBHOOK_SECRET}\n"
    text = "sqlite: {path: x.db}\nwebhook:\n  url: https://h\n  batch_size: 0\n" + headers
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(text))
    assert "webhook.batch_size" in str(info.value)
    assert "hook-s3cr3t" not in str(info.value)
    text = "sqlite: {path: x.db}\nwebhook:\n  url: https://h\n  headers:\n    Authorization: [hook-s3cr3t]\n"
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(text))
    assert "hook-s3cr3t" not in str(info.value)


def test_check_config_masks_webhook_headers(write_yaml: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_WEBHOOK__HEADERS__X_API_KEY", "env-hook-s3cr3t")
    text = f"sqlite: {{path: x.db}}\nwebhook:\n  url: https://h/hook\n  headers:\n    Authorization: {WEBHOOK_SECRET}\n"
    config = load_config(write_yaml(text))
    assert config.webhook is not None
    assert config.webhook.headers["x_api_key"].get_secret_value() == "env-hook-s3cr3t"
    result = CliRunner().invoke(app, ["check-config", "--config", str(write_yaml(text))])
    assert result.exit_code == 0, result.output
    assert "hook-s3cr3t" not in result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["webhook"]["url"] == "https://h/hook"
    assert set(printed["webhook"]["headers"]) == {"Authorization", "x_api_key"}
    assert all(set(value) == {"*"} for value in printed["webhook"]["headers"].values())
