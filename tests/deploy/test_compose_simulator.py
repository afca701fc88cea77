"""The compose simulator service: its shell command passes device-sim valid options and its broker password."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from device_sim.brokerurl import parse_broker_url
from device_sim.cli import app as device_sim_app
from tests.support.compose_files import SIM_USER, simulator_argv


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
