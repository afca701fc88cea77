"""The gateway's one configuration model: YAML file, then `GATEWAY_*` environment overrides.

Every key is documented once, in its `Field(description=...)`; `config/gateway.example.yaml`
shows them all and is parsed by a test. `GATEWAY_MQTT__URL=mqtt://host:1883` overrides `mqtt.url`.
The larger sections live beside this module (`mqtt`, `sinks`, `mappings`); every type of the tree can be
imported from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.config.mappings import (
    ALERTS_MEASUREMENT,
    RESERVED_MEASUREMENTS,
    SELF_MEASUREMENT,
    MappingConfig,
    MetricRule,
    ValidationConfig,
    ValidationLimits,
)
from gateway.config.masking import describe_errors
from gateway.config.mqtt import MqttConfig, TlsConfig
from gateway.config.section import Section
from gateway.config.sinks import BatchingConfig, InfluxConfig, SqliteConfig, WebhookConfig
from gateway.errors import ConfigError
from gateway.ingest import topics

__all__ = [
    "ALERTS_MEASUREMENT",
    "ENV_PREFIX",
    "RESERVED_MEASUREMENTS",
    "SELF_MEASUREMENT",
    "AlertsConfig",
    "BatchingConfig",
    "DedupConfig",
    "GatewayConfig",
    "HttpConfig",
    "InfluxConfig",
    "JournalConfig",
    "LogConfig",
    "MappingConfig",
    "MetricRule",
    "MqttConfig",
    "SelfMetricsConfig",
    "SqliteConfig",
    "TlsConfig",
    "ValidationConfig",
    "ValidationLimits",
    "WebhookConfig",
    "load_config",
]

ENV_PREFIX = "GATEWAY_"


class JournalConfig(Section):
    path: Path = Field(
        Path("data/journal.db"),
        description="The durable journal (SQLite, WAL): readings not yet stored by every sink, dedup keys, "
        "dead-letter records. Each replica needs its own.",
    )
    max_bytes: int = Field(
        1 << 30,
        ge=1 << 20,
        description="Readings waiting for a sink may fill this much; beyond it the gateway stops acknowledging "
        "(the broker keeps the messages) until the sinks catch up.",
    )
    max_backpressure_s: float = Field(
        60.0,
        ge=0,
        description="/readyz turns not ready when the journal has been full (back-pressure) for longer than this: "
        "the gateway is up but not taking messages.",
    )
    max_rejected: int = Field(
        100_000,
        ge=0,
        description="Rejected messages kept for `gateway deadletter list` and `replay`; beyond it the oldest are "
        "dropped (counted in gateway_rejected_dropped). 0 keeps none.",
    )


class DedupConfig(Section):
    enabled: bool = Field(True, description="Drop readings already seen within the window.")
    max_entries: int = Field(
        1_000_000, ge=1, description="Keys remembered at most (about 150 bytes each); the oldest go first."
    )
    window_s: float = Field(3600.0, gt=0, description="How long a key is remembered.")


class HttpConfig(Section):
    host: str = Field("127.0.0.1", description="Address of the metrics and health endpoint.")
    port: int = Field(9108, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz; 0 turns it off.")


class AlertsConfig(Section):
    rules_file: Path | None = Field(
        None, description="Alert rules (YAML, see config/rules.example.yaml); unset: no alerts. Reloaded on SIGHUP."
    )
    topic: str = Field(
        "alerts/{device}/{rule}",
        description="MQTT topic of notifications (QoS 1): retained while firing, cleared when resolved.",
    )

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, topic: str) -> str:
        return topics.check_publish_template(topic, frozenset({"device", "rule"}))

    @field_validator("rules_file")
    @classmethod
    def _rules_load(cls, path: Path | None) -> Path | None:
        if path is not None:
            from gateway.alerts import load_rules  # noqa: PLC0415 - the rules package imports this module

            try:
                load_rules(path)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return path


class SelfMetricsConfig(Section):
    interval_s: float = Field(
        10.0,
        ge=0,
        description="Every this many seconds the gateway's own counters are written to the sinks as "
        "measurement `gateway`, beside the devices' data; 0 turns it off.",
    )
    instance: str | None = Field(
        None, min_length=1, description="Value of the `instance` tag of those points; default: mqtt.client_id."
    )


class LogConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="json (a JSON object a line, for machines), console (readable), auto: console on a TTY."
    )


class GatewayConfig(BaseSettings):
    """The whole configuration. A sink runs when its section is present."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True)

    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection and session.")
    influx: InfluxConfig | None = Field(None, description="InfluxDB 2.x sink; runs when present.")
    sqlite: SqliteConfig | None = Field(None, description="SQLite sink, the embedded default; runs when present.")
    webhook: WebhookConfig | None = Field(
        None,
        description="Posts alerts to an HTTP receiver; runs when present, beside influx or sqlite (still needed).",
    )
    journal: JournalConfig = Field(default_factory=JournalConfig, description="Durable local state.")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Duplicate suppression window.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description="Input limits.")
    mappings: list[MappingConfig] = Field(
        default_factory=lambda: [MappingConfig()], min_length=1, description="Topic mappings, tried in order."
    )
    http: HttpConfig = Field(default_factory=HttpConfig, description="Metrics and health endpoint.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert rules and their outputs.")
    self_metrics: SelfMetricsConfig = Field(
        default_factory=SelfMetricsConfig, description="The gateway's own counters, written to the sinks."
    )
    log: LogConfig = Field(default_factory=LogConfig, description="Logging.")

    # False: only the arguments count (the demo's configuration: GATEWAY_* variables cannot redirect it).
    reads_environment: ClassVar[bool] = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML document arrives as init arguments; the environment overrides it.
        return (env_settings, init_settings) if cls.reads_environment else (init_settings,)

    @model_validator(mode="after")
    def _needs_a_sink(self) -> GatewayConfig:
        if self.influx is None and self.sqlite is None:
            raise ValueError("no sink configured: add an `influx` or a `sqlite` section")
        return self


def load_config(path: Path | None) -> GatewayConfig:
    """Read the YAML file (optional) and the environment; raise ConfigError naming key and value."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config file {str(path)!r} is not valid UTF-8: byte {exc.object[exc.start]:#04x} at offset {exc.start}"
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top, got {type(loaded).__name__}")
        data = loaded or {}
    try:
        return GatewayConfig(**data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
