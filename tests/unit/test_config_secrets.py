"""Config secrets: masked in dumps, read from secret files, and never shown in errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gateway.config.masking import masked_dump
from gateway.config.schema import (
    load_config,
)
from gateway.errors import ConfigError

pytestmark = pytest.mark.usefixtures("no_gateway_env")


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
