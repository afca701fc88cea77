"""The `check-config` command: exit 2 naming the bad key, or the masked config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway.tools.cli import app
from tests.support.config_messages import _line_for

pytestmark = pytest.mark.usefixtures("no_gateway_env")


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
