"""The shipped example config loads, and documents every key of every section model, each with a description."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator

import pytest
from pydantic import BaseModel

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
from tests.support import ROOT

pytestmark = pytest.mark.usefixtures("no_gateway_env")


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
