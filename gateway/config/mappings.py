"""The `mappings` (topic -> readings) and `validation` sections: what a mapping reads and what it may hold."""

from __future__ import annotations

import re
import zoneinfo
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.section import Section


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
