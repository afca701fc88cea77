"""Fixtures for the deploy tests: the gateway container's environment and config, as Compose sets them from
.env.example.
"""

from __future__ import annotations

import os

import pytest

from gateway.config.schema import GatewayConfig, load_config
from tests.support.compose_files import GATEWAY_CONFIG, env_values, interpolate, service


@pytest.fixture
def compose_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The gateway container's environment, as Compose sets it from .env.example, in os.environ."""
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    env = {key: interpolate(str(value), env_values()) for key, value in service("gateway")["environment"].items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def gateway_config(compose_env: dict[str, str]) -> GatewayConfig:
    return load_config(GATEWAY_CONFIG)
