"""The sink sections (`influx`, `sqlite`, `webhook`) and the batching every sink shares."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.config.section import Section, http_url, read_secret


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

    _check_url = field_validator("url")(http_url)

    @model_validator(mode="after")
    def _load_secret(self) -> InfluxConfig:
        object.__setattr__(self, "token", read_secret(self.token, self.token_file, "token"))
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

    _check_url = field_validator("url")(http_url)

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"not a valid header name: {name!r}")
            if any(c in value.get_secret_value() for c in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} holds a line break or NUL")
        return headers
