"""The `mqtt` section: the broker connection, the persistent session, TLS and reconnects."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.config.section import Section, read_secret
from gateway.ingest import topics


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
        object.__setattr__(self, "password", read_secret(self.password, self.password_file, "password"))
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
