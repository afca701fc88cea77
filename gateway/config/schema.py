"""The gateway's one configuration model: YAML file, then `GATEWAY_*` environment overrides.

Every key is documented here, once, in its `Field(description=...)`; `config/gateway.example.yaml`
shows them all and is parsed by a test. `GATEWAY_MQTT__URL=mqtt://host:1883` overrides `mqtt.url`.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.errors import ConfigError
from gateway.ingest import topics

ENV_PREFIX = "GATEWAY_"


class Section(BaseModel):
    """A config section: unknown keys are errors, so a typo fails at start-up instead of being ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _read_secret(value: SecretStr | None, path: Path | None, key: str) -> SecretStr | None:
    """A secret given inline or in a file (`*_file`, as Docker secrets are mounted); the file wins."""
    if path is None:
        return value
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(f"{key}_file: cannot read {str(path)!r}: {exc.strerror}") from exc


def check_writable_paths(config: GatewayConfig) -> None:
    """`gateway run` checks the database files it must write before it opens them, so that a path that cannot
    be written is named with its key (exit 2) instead of a traceback from SQLite. Only at start-up: once
    running, a SQLite store that goes away is retried like any other store."""
    paths = {"journal.path": config.journal.path, "sqlite.path": config.sqlite.path if config.sqlite else None}
    problems = []
    for key, path in paths.items():
        if path is not None:
            try:
                _writable_file(path)
            except ValueError as exc:
                problems.append(f"{key}: {exc} (value {str(path)!r})")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _writable_file(path: Path) -> Path:
    """A database file the gateway will create or write; raises ValueError saying why it cannot."""
    if path.exists():
        if not path.is_file():
            raise ValueError(f"{str(path)!r} exists and is not a file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise ValueError(f"{str(path)!r} is not writable")
        return path
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"cannot create {str(path)!r}: {str(ancestor)!r} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"cannot create {str(path)!r}: directory {str(ancestor)!r} is not writable")
    return path


class TlsConfig(Section):
    ca_file: Path | None = Field(None, description="CA bundle to verify the broker; system CAs when unset.")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: Path | None = Field(None, description="Private key (PEM) of the client certificate.")
    insecure: bool = Field(False, description="Skip verification of the broker's certificate (testing only).")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"no such file: {str(path)!r}")
        return path


class MqttConfig(Section):
    url: str = Field(
        "mqtt://127.0.0.1:1883",
        description="Broker address: mqtt://host[:port] (default port 1883) or mqtts://host[:port] (TLS, 8883).",
    )
    client_id: str = Field(
        "iot-gateway",
        min_length=1,
        max_length=128,
        description="Fixed client id; the persistent session (and its unacknowledged messages) is bound to it. "
        "Each replica needs its own.",
    )
    username: str | None = Field(None, description="Username, if the broker requires one.")
    password: SecretStr | None = Field(None, description="Password; prefer GATEWAY_MQTT__PASSWORD or password_file.")
    password_file: Path | None = Field(None, description="File holding the password (wins over `password`).")
    protocol: Literal["5", "3.1.1"] = Field(
        "5",
        description="MQTT protocol version. 5 lets the gateway set its own in-flight window (receive_maximum).",
    )
    session_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=1,
        description="MQTT 5: how long the broker keeps the session (subscriptions, unacknowledged and queued "
        "messages) while the gateway is away.",
    )
    receive_maximum: int = Field(
        2000,
        ge=1,
        le=65535,
        description="MQTT 5: unacknowledged QoS 1 messages the broker may have in flight to the gateway. "
        "Messages are acknowledged only once stored, so this bounds both memory and throughput.",
    )
    keepalive_s: int = Field(30, ge=5, le=65535, description="MQTT keepalive interval.")
    max_messages_in_memory: int = Field(
        10_000,
        ge=100,
        description="Messages read from the broker and not yet committed to the journal, at most. Beyond it the "
        "gateway stops reading (the broker keeps the rest), whatever the broker's in-flight window: Mosquitto "
        "does not hold to receive_maximum, and MQTT 3.1.1 has none.",
    )
    qos: Literal[0, 1] = Field(1, description="Subscription QoS. 1 gives at-least-once delivery; 0 gives none.")
    shared_group: str | None = Field(
        None,
        pattern=r"^[^/+#]+$",
        description="Subscribe through $share/<group>/... so several gateway replicas split the load (MQTT 5).",
    )
    retained: Literal["new_subscription", "always", "never"] = Field(
        "new_subscription",
        description="Retained messages: new_subscription takes them when a filter is first subscribed (not again "
        "on every reconnect of the persistent session); always takes them on every subscribe; never ignores "
        "them. MQTT 5 asks the broker (Retain Handling); under 3.1.1 the gateway skips retained messages on "
        "a resumed session.",
    )
    deadletter_topic: str = Field(
        "gateway/deadletter/{device}",
        description="Where rejected messages are published (QoS 1); {device} is `_unknown` when there is none.",
    )
    reconnect_min_s: float = Field(0.5, gt=0, description="First reconnect delay; doubles up to reconnect_max_s.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest reconnect delay (jitter is added).")
    tls: TlsConfig | None = Field(None, description="TLS settings; mqtts:// URLs use TLS even without this section.")

    @field_validator("qos", mode="before")
    @classmethod
    def _qos_from_text(cls, qos: object) -> object:
        # Environment variables are text: GATEWAY_MQTT__QOS=0 must mean the number 0.
        return int(qos) if isinstance(qos, str) and qos.strip() in ("0", "1") else qos

    @field_validator("deadletter_topic")
    @classmethod
    def _check_deadletter_topic(cls, topic: str) -> str:
        return topics.check_publish_template(topic, frozenset({"device"}))

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"scheme must be mqtt:// or mqtts://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        if parts.username or parts.password:
            # They would be logged with the URL; mqtt.username / mqtt.password keep them out of logs.
            raise ValueError("credentials do not belong in the URL: use mqtt.username and mqtt.password")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in {url!r}") from exc
        return url

    @model_validator(mode="after")
    def _load_secret(self) -> MqttConfig:
        object.__setattr__(self, "password", _read_secret(self.password, self.password_file, "password"))
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts" or self.tls is not None


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL with a host, got {url!r}")
    return url


class BatchingConfig(Section):
    batch_size: int = Field(5000, ge=1, le=1_000_000, description="Readings per write request, at most.")
    flush_interval_ms: int = Field(
        100, ge=1, le=60_000, description="A partial batch is written after this long; bounds ack latency."
    )


class InfluxConfig(BatchingConfig):
    url: str = Field("http://127.0.0.1:8086", description="InfluxDB 2.x base URL (http:// or https://).")
    org: str = Field("iot", min_length=1, description="InfluxDB organisation.")
    bucket: str = Field("telemetry", min_length=1, description="InfluxDB bucket.")
    token: SecretStr | None = Field(None, description="API token; prefer GATEWAY_INFLUX__TOKEN or token_file.")
    token_file: Path | None = Field(None, description="File holding the API token (wins over `token`).")
    gzip: bool = Field(True, description="Compress write requests (saves bandwidth, costs CPU).")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one write request.")
    verify_ssl: bool = Field(True, description="Verify the server certificate on https:// URLs.")

    _check_url = field_validator("url")(_http_url)

    @model_validator(mode="after")
    def _load_secret(self) -> InfluxConfig:
        object.__setattr__(self, "token", _read_secret(self.token, self.token_file, "token"))
        return self


class SqliteConfig(BatchingConfig):
    path: Path = Field(Path("data/gateway.db"), description="SQLite database file (created if missing).")


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 token


class WebhookConfig(BatchingConfig):
    """Alert points (measurement `alerts`) posted as JSON; every other reading passes it by."""

    url: str = Field(description="Receiver of the alerts' JSON POST (http:// or https://).")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Extra request headers, e.g. Authorization. Values are secrets: never logged, masked by "
        "check-config; prefer GATEWAY_WEBHOOK__HEADERS__<NAME>.",
    )
    timeout_s: float = Field(5.0, gt=0, description="HTTP timeout of one POST.")
    batch_size: int = Field(100, ge=1, le=1_000_000, description="Alerts per POST, at most.")
    flush_interval_ms: int = Field(
        200, ge=1, le=60_000, description="A partial batch is posted after this long; bounds alert latency."
    )

    _check_url = field_validator("url")(_http_url)

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"not a valid header name: {name!r}")
            if any(c in value.get_secret_value() for c in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} holds a line break or NUL")
        return headers


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


class MetricRule(Section):
    """What one metric (or every metric a glob matches) may hold; the first rule that matches a field wins."""

    name: str = Field(min_length=1, description="Field name or glob (fnmatch, case-sensitive): temperature, *_pct.")
    type: Literal["number", "boolean", "string"] | None = Field(None, description="Allowed type; any when unset.")
    min: float | None = Field(None, description="Smallest allowed value (numbers).")
    max: float | None = Field(None, description="Largest allowed value (numbers).")
    unit: str | None = Field(
        None,
        description="Unit the metric must be reported in, checked where the payload names units (SenML u / bu).",
    )

    @model_validator(mode="after")
    def _bounds(self) -> MetricRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.type in ("boolean", "string") and (self.min is not None or self.max is not None):
            raise ValueError(f"min / max apply to numbers, not to type {self.type}")
        return self


def _check_regex(pattern: str | None) -> str | None:
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
    return pattern


class ValidationLimits(Section):
    """Limits a mapping may override; unset keys fall back to the top-level `validation` section."""

    max_payload_bytes: int | None = Field(None, ge=64, description="Larger payloads are rejected unread.")
    max_depth: int | None = Field(None, ge=1, le=1000, description="Deepest JSON nesting accepted.")
    max_fields: int | None = Field(None, ge=1, description="Most fields one message may carry (all its readings).")
    device_id_pattern: str | None = Field(None, description="Device ids must match (the whole id).")
    device_id_max_length: int | None = Field(None, ge=1, le=1024, description="Longest device id accepted.")
    max_future_s: float | None = Field(None, ge=0, description="Readings stamped further ahead are rejected.")
    max_late_s: float | None = Field(
        None, gt=0, description="Readings stamped longer ago than this are late (see `late`); unset: no bound."
    )
    late: Literal["reject", "accept"] | None = Field(
        None, description="What happens to a late reading: rejected, or stored and counted as late."
    )
    metrics: list[MetricRule] | None = Field(
        None, description="Per-metric rules; a mapping's rules are tried before the top-level ones."
    )

    _pattern = field_validator("device_id_pattern")(_check_regex)


class ValidationConfig(ValidationLimits):
    max_payload_bytes: int = Field(256 * 1024, ge=64, description="Larger payloads are rejected unread.")
    max_depth: int = Field(32, ge=1, le=1000, description="Deepest JSON nesting accepted (the top level is 1).")
    max_fields: int = Field(1000, ge=1, description="Most fields one message may carry (all its readings).")
    device_id_pattern: str = Field(
        r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$",
        description="Device ids must match (the whole id); keeps ids safe as tags and topic levels.",
    )
    device_id_max_length: int = Field(128, ge=1, le=1024, description="Longest device id accepted.")
    max_future_s: float = Field(
        3600.0, ge=0, description="Readings stamped further than this in the future are rejected."
    )
    late: Literal["reject", "accept"] = Field(
        "accept", description="A reading older than max_late_s: rejected, or stored and counted as late."
    )
    metrics: list[MetricRule] = Field(default_factory=list, description="Per-metric rules (type, min, max, unit).")

    def merged(self, override: ValidationLimits | None) -> ValidationConfig:
        """These limits with a mapping's overrides applied; its metric rules come before the global ones."""
        if override is None:
            return self
        update = override.model_dump(exclude_none=True, exclude={"metrics"})
        if override.metrics:
            update["metrics"] = [*override.metrics, *self.metrics]
        return self.model_copy(update=update)


# Measurements the gateway writes itself; a mapping cannot store device readings under these names.
SELF_MEASUREMENT = "gateway"
ALERTS_MEASUREMENT = "alerts"
RESERVED_MEASUREMENTS = frozenset({SELF_MEASUREMENT, ALERTS_MEASUREMENT})


class MappingConfig(Section):
    topic: str = Field(
        "devices/{device}/telemetry",
        description="Topic template, level by level: {device} (required) and {metric} name a level; + matches "
        "any one level, # (last) any rest.",
    )
    format: Literal["native", "json", "value", "senml", "thingsboard", "line"] = Field(
        "native",
        description="Payload format: native (this gateway's schema), json (zigbee2mqtt, Tasmota, Shelly...), "
        "value (a bare value, ESPHome), senml (RFC 8428 JSON), thingsboard ({ts, values}), line (line protocol).",
    )
    measurement: str = Field(
        "telemetry",
        min_length=1,
        description="Measurement the readings are stored in (not `gateway` or `alerts`: the gateway writes those).",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Static tags added to every reading.")
    timestamp_field: str | None = Field(
        None, description="json: dotted path of the timestamp in the payload (e.g. Time); absent: receive time."
    )
    timezone: str = Field("UTC", description="IANA zone of zone-less local timestamps (Tasmota's Time).")
    keep_strings: bool = Field(False, description="Keep non-numeric strings as string fields (else skipped).")
    include: list[str] = Field(default_factory=list, description="Field globs to keep (empty: all).")
    exclude: list[str] = Field(default_factory=list, description="Field globs to drop.")
    rename: dict[str, str] = Field(default_factory=dict, description="Field name -> stored name.")
    separator: str = Field("_", description="Joins nested keys when flattening: ENERGY.Power -> ENERGY_Power.")
    root: str | None = Field(
        None, description="json: dotted path of the object holding the fields (Shelly's params); absent: the top."
    )
    device_field: str | None = Field(
        None,
        description="json: dotted payload path of the device id. With {device} in the topic the two "
        "must agree (a payload cannot claim another device); without, the payload names the device.",
    )
    validation: ValidationLimits | None = Field(None, description="This mapping's own limits and metric rules.")

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, topic: str) -> str:
        levels = topic.split("/")
        if levels.count("{device}") > 1:
            raise ValueError(f"at most one {{device}} level, got {topic!r}")
        if levels.count("{metric}") > 1 or "#" in levels[:-1]:
            raise ValueError(f"at most one {{metric}} level, and # only last, got {topic!r}")
        return topic

    @field_validator("measurement")
    @classmethod
    def _not_reserved(cls, measurement: str) -> str:
        if measurement in RESERVED_MEASUREMENTS:
            raise ValueError(f"measurement {measurement!r} is the gateway's own; choose another name")
        return measurement

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, zone: str) -> str:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r}") from exc
        return zone

    @model_validator(mode="after")
    def _consistent(self) -> MappingConfig:
        levels = self.topic.split("/")
        if self.format == "value" and "{metric}" not in levels:
            raise ValueError(f"format value needs a {{metric}} level in topic {self.topic!r}")
        if "{device}" not in levels and self.device_field is None:
            raise ValueError(f"topic {self.topic!r} has no {{device}} level: set device_field")
        if self.device_field is not None and self.format != "json":
            raise ValueError(f"device_field works with format json, not {self.format}")
        if self.root is not None and self.format != "json":
            raise ValueError(f"root works with format json, not {self.format}")
        return self


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
        return (env_settings, init_settings)

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


def describe_errors(exc: ValidationError) -> str:
    """One line per problem: the dotted key, what is wrong, and the value given (never a secret)."""
    lines = []
    for err in exc.errors(include_url=False):
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = "***" if _is_secret(key) else repr(_redact(value))
        if err["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key (value {shown})")
        else:
            lines.append(f"{key}: {err['msg']} (value {shown})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _is_secret(key: str) -> bool:
    return any(word in key for word in ("password", "token", "headers"))


def _redact(value: Any) -> Any:
    """A whole section's error (model validator, missing sink) shows the section's input: mask its secrets."""
    if isinstance(value, dict):
        return {k: "***" if _is_secret(str(k)) else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, str) and "@" in value and "://" in value:
        return _URL_CREDENTIALS.sub(r"\1***@", value)
    return value


_URL_CREDENTIALS = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)


def masked_dump(config: GatewayConfig) -> dict[str, Any]:
    """The effective configuration with secrets masked, for `check-config`: SecretStr fields, and the
    credentials of a URL (`https://user:pass@influx:8086`)."""
    masked: dict[str, Any] = _mask_url_credentials(config.model_dump(mode="json", exclude_none=True))
    return masked


def _mask_url_credentials(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_url_credentials(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_url_credentials(v) for v in value]
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(r"\1***@", value)
    return value
