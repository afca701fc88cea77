"""Configuration rough edges, through the real command line (`python -m gateway ...` as a process): what a user
gets wrong is named with its key and value (exit 2), or warned of, never ignored silently or a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.gateway_proc import run_cli, sqlite_gateway
from tests.support.servers import Mosquitto


def _gateway(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cwd, env)


def _config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(f'sqlite: {{path: "{tmp_path / "g.db"}"}}\njournal: {{path: "{tmp_path / "j.db"}"}}\n{text}')
    return path


def test_a_misspelt_gateway_variable_is_warned_of_with_the_likely_name(tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = _gateway(
        ["check-config", "--config", str(config)], tmp_path, GATEWAY_INFLUX_TOKEN="t", GATEWAY_MQQT__URL="mqtt://x"
    )
    assert result.returncode == 0, result.stderr
    assert "GATEWAY_INFLUX_TOKEN names no configuration key and is ignored; did you mean GATEWAY_INFLUX__TOKEN?" in (
        result.stderr
    )
    assert "GATEWAY_MQQT__URL names no configuration key and is ignored; did you mean GATEWAY_MQTT__URL?" in (
        result.stderr
    )


def test_a_misspelt_gateway_variable_is_logged_by_run(tmp_path: Path, mosquitto: Mosquitto) -> None:
    gateway = sqlite_gateway(tmp_path / "gw", mosquitto.url, "gw-typo")
    gateway.env["GATEWAY_INFLUX_TOKEN"] = "t"
    with gateway:
        gateway.wait_for_log("GATEWAY_INFLUX_TOKEN names no configuration key", 10)


@pytest.mark.parametrize("qos", ["0", "1"])
def test_the_subscription_qos_can_be_set_from_the_environment(tmp_path: Path, qos: str) -> None:
    result = _gateway(["check-config", "--config", str(_config(tmp_path))], tmp_path, GATEWAY_MQTT__QOS=qos)
    assert result.returncode == 0, result.stderr
    assert f"  qos: {qos}\n" in result.stdout


def test_a_config_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_bytes(b'sqlite: {path: "caf\xe9.db"}\n')
    result = _gateway(["run", "--config", str(path)], tmp_path)
    assert result.returncode == 2
    assert f"config file {str(path)!r} is not valid UTF-8: byte 0xe9 at offset 19" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("key", ["journal.path", "sqlite.path"])
def test_a_database_path_that_cannot_be_created_names_the_key(tmp_path: Path, key: str) -> None:
    # Under a regular file: not creatable even by root, who may write anywhere else.
    (tmp_path / "a-file").write_text("")
    bad = tmp_path / "a-file" / "x.db"
    variable = "GATEWAY_" + key.upper().replace(".", "__")
    result = _gateway(["run", "--config", str(_config(tmp_path))], tmp_path, **{variable: str(bad)})
    assert result.returncode == 2, result.stderr
    assert f"{key}: cannot create {str(bad)!r}: {str(tmp_path / 'a-file')!r} is not a directory" in (result.stderr)
    assert "Traceback" not in result.stderr


def test_check_config_masks_the_credentials_of_a_url(tmp_path: Path) -> None:
    config = _config(tmp_path, 'influx: {url: "https://bob:s3cret@influx.example:8086", token: t}\n')
    result = _gateway(["check-config", "--config", str(config)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout and "bob" not in result.stdout
    assert "url: https://***@influx.example:8086" in result.stdout
