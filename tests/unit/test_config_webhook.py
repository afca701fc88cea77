"""The webhook section of the config: alert batching, not a sink on its own, header values never shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway.config.schema import (
    load_config,
)
from gateway.errors import ConfigError
from gateway.tools.cli import app
from tests.support.config_messages import _line_for

pytestmark = pytest.mark.usefixtures("no_gateway_env")


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
