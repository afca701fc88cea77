"""The fleet file (`config/fleet.example.yaml`): device groups, what they measure, what goes wrong with them,
how they connect and for how long. Checked once at start-up; an error names the key and the value.

Every key is described here, once, in its `Field(description=...)`; the example file shows them all.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from device_sim.brokerurl import parse_broker_url

Format = Literal["native", "senml", "zigbee2mqtt", "tasmota", "esphome"]
FORMATS: tuple[str, ...] = ("native", "senml", "zigbee2mqtt", "tasmota", "esphome")
Rate = Annotated[float, Field(ge=0.0, le=1.0)]
_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"  # a metric name every format and store takes as is
_GROUP = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAMES_KEY = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+)*: ")
GATEWAY_MAX_PAYLOAD_BYTES = 262_144
DEFAULT_GROUP: dict[str, Any] = {
    "name": "dev",
    "count": 10,
    "id_pattern": "dev-{n:05d}",
}  # without a fleet file  # the gateway's default validation.max_payload_bytes


class FleetFileError(ValueError):
    """The fleet file (or a flag that overrides it) is invalid; the message lists every problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemperatureSensor(_Strict):
    kind: Literal["temperature"]
    name: str = Field("temperature", pattern=_NAME, description="The metric name.")
    mean: float = Field(21.0, description="Mean in degrees Celsius; each device is offset by up to +-spread.")
    spread: float = Field(2.0, ge=0, description="How far a device's own mean may lie from `mean`.")
    daily_amplitude: float = Field(3.0, ge=0, description="Half the day/night swing; warmest at 15:00 UTC.")
    noise: float = Field(0.1, ge=0, description="Random-walk step per sample (the walk drifts back to the mean).")


class HumiditySensor(_Strict):
    kind: Literal["humidity"]
    name: str = Field("humidity", pattern=_NAME, description="The metric name.")
    mean: float = Field(45.0, ge=0, le=100, description="Mean relative humidity in %.")
    spread: float = Field(10.0, ge=0, description="How far a device's own mean may lie from `mean`.")
    daily_amplitude: float = Field(8.0, ge=0, description="Half the daily swing, opposite to temperature.")
    noise: float = Field(0.5, ge=0, description="Random-walk step per sample.")


class PressureSensor(_Strict):
    kind: Literal["pressure"]
    name: str = Field("pressure", pattern=_NAME, description="The metric name.")
    mean: float = Field(1013.25, gt=0, description="Mean air pressure in hPa.")
    spread: float = Field(5.0, ge=0, description="How far a device's own mean may lie from `mean`.")
    noise: float = Field(0.05, ge=0, description="Random-walk step per sample.")


class BatterySensor(_Strict):
    kind: Literal["battery"]
    name: str = Field("battery", pattern=_NAME, description="The metric name.")
    start_min: float = Field(40.0, ge=0, le=100, description="Charge (%) a device starts with: at least this ...")
    start_max: float = Field(100.0, ge=0, le=100, description="... and at most this.")
    drain_per_hour: float = Field(0.5, ge=0, description="Mean drain in % per hour; the charge never rises.")


class EnergySensor(_Strict):
    kind: Literal["energy"]
    name: str = Field("energy", pattern=_NAME, description="The metric name.")
    power_w: float = Field(150.0, ge=0, description="Mean power drawn; the counter (kWh) only grows.")


class BinarySensor(_Strict):
    kind: Literal["binary"]
    name: str = Field("relay", pattern=_NAME, description="The metric name.")
    flip_probability: float = Field(0.05, ge=0, le=1, description="Chance per sample that the state flips.")


Sensor = Annotated[
    TemperatureSensor | HumiditySensor | PressureSensor | BatterySensor | EnergySensor | BinarySensor,
    Field(discriminator="kind"),
]
SENSOR_KINDS = ("temperature", "humidity", "pressure", "battery", "energy", "binary")


def _default_sensors() -> list[Sensor]:
    return [
        TemperatureSensor(kind="temperature"),
        HumiditySensor(kind="humidity"),
        BatterySensor(kind="battery"),
        BinarySensor(kind="binary"),
    ]


class Anomaly(_Strict):
    kind: Literal["spike", "drift", "stuck"] = Field(
        description="spike: the value jumps by `magnitude`; drift: it wanders off by `magnitude` per second; "
        "stuck: it stops changing."
    )
    sensor: str = Field(description="The name of one of the group's sensors.")
    rate: Rate = Field(description="Chance per sample that an episode starts (when none is running).")
    magnitude: float = Field(0.0, description="spike: added to the value; drift: added per second.")
    duration_s: float = Field(0.0, ge=0, description="How long an episode lasts; a spike of 0 s is one sample.")


class Faults(_Strict):
    """Rates are chances per sample unless said otherwise; a fault a format cannot carry is skipped (README)."""

    duplicate: Rate = Field(0.0, description="The message is sent again, byte for byte, with the next sample.")
    malformed: Rate = Field(0.0, description="The message is broken in one way the format's decoder refuses.")
    out_of_order: Rate = Field(0.0, description="The message is held back and sent after the next one.")
    oversized: Rate = Field(0.0, description="The message is padded past `oversized_bytes` (payload_too_large).")
    spoofed_id: Rate = Field(0.0, description="The payload names another device than the topic (native only).")
    clock_skew: Rate = Field(0.0, description="Share of devices whose clock is off by up to clock_skew_max_s.")
    clock_skew_max_s: float = Field(120.0, gt=0, le=3000, description="Largest clock error, either way.")
    burst: Rate = Field(0.0, description="The device sends burst_size extra samples within one interval.")
    burst_size: int = Field(10, ge=1, le=1000, description="Samples in a burst.")
    disconnect: Rate = Field(0.0, description="The connection drops for disconnect_s; samples are buffered.")
    disconnect_s: float = Field(2.0, ge=0, description="How long a dropped connection stays down.")
    reboot: Rate = Field(0.0, description="The device restarts: offline for reboot_s, its seq counts from 1 again.")
    reboot_s: float = Field(3.0, ge=0, description="How long a reboot takes (samples in it are never taken).")
    silence: Rate = Field(0.0, description="The device takes no samples for silence_s (then resumes).")
    silence_s: float = Field(10.0, ge=0, description="How long a silence lasts.")
    oversized_bytes: int = Field(
        GATEWAY_MAX_PAYLOAD_BYTES + 1024,
        gt=GATEWAY_MAX_PAYLOAD_BYTES,
        description="Size of an oversized payload; above the gateway's validation.max_payload_bytes (262144).",
    )


class Group(_Strict):
    name: str = Field(pattern=_GROUP, description="Names the group in reports; the default id pattern uses it.")
    count: int = Field(1, ge=1, le=1_000_000, description="Devices in the group.")
    id_pattern: str | None = Field(
        None, description="Device ids, str.format with n counting from 1 per group; default '<name>-{n:04d}'."
    )
    format: Format = Field("native", description="Payload format: " + ", ".join(FORMATS) + ".")
    rate: float = Field(1.0, gt=0, le=1000, description="Samples per second per device (esphome: one message each).")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags every message carries (native only).")
    sensors: list[Sensor] = Field(default_factory=_default_sensors, min_length=1, description="What is measured.")
    anomalies: list[Anomaly] = Field(default_factory=list, description="Sensor anomalies and their rates.")
    faults: Faults = Field(default_factory=Faults, description="What goes wrong, and how often.")

    @model_validator(mode="after")
    def _check(self) -> Group:
        names = [s.name for s in self.sensors]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"sensors: two sensors are named {name!r}")
        by_name = {s.name: s for s in self.sensors}
        for i, anomaly in enumerate(self.anomalies):
            sensor = by_name.get(anomaly.sensor)
            if sensor is None:
                raise ValueError(f"anomalies[{i}].sensor: no sensor named {anomaly.sensor!r} (have {names})")
            if sensor.kind == "binary" and anomaly.kind != "stuck":
                raise ValueError(f"anomalies[{i}].kind: a binary sensor can only be stuck, not {anomaly.kind!r}")
        if self.tags and self.format != "native":
            raise ValueError(f"tags: only the native format carries tags, this group sends {self.format!r}")
        interval_ms = 1000 / self.rate
        if self.format == "tasmota" and self.rate > 1:
            raise ValueError(f"rate: tasmota stamps whole seconds, at most 1 sample/s per device (value {self.rate})")
        if self.faults.burst and self.faults.burst_size >= interval_ms:
            raise ValueError(
                f"faults.burst_size: a burst fits in one interval ({interval_ms:g} ms) at 1 ms apart at most "
                f"(value {self.faults.burst_size})"
            )
        return self

    @property
    def pattern(self) -> str:
        return self.id_pattern if self.id_pattern is not None else self.name + "-{n:04d}"


class BrokerSettings(_Strict):
    url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://[user[:password]@]host[:port] or mqtts://...")
    username: str | None = Field(None, description="Overrides a user in the URL.")
    password: str | None = Field(None, description="Better: the DEVICE_SIM_PASSWORD environment variable.")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version.")
    qos: Literal[0, 1] = Field(1, description="QoS of every publish.")
    keepalive_s: int = Field(60, ge=5, le=65535, description="MQTT keepalive; silent devices ping.")
    session_expiry_s: int = Field(3600, ge=0, description="MQTT 5: how long the broker keeps a device's session.")
    connections: int = Field(0, ge=0, description="0: one connection per device; N: the devices share N.")
    window: int = Field(100, ge=1, le=65000, description="Unacknowledged QoS 1 messages per connection, at most.")
    client_id_prefix: str = Field("", description="Client ids are <prefix><device id> (shared: <prefix>sim-<n>).")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parse_broker_url(value)
        return value


class RunSettings(_Strict):
    seed: int = Field(1, description="Same seed, fleet and start: the same messages and manifest, byte for byte.")
    duration_s: float | None = Field(None, gt=0, description="Each device samples this long (default 60).")
    messages: int | None = Field(None, ge=1, description="Or: this many samples over the fleet, then stop.")
    ramp_up_s: float = Field(0.0, ge=0, description="Devices come online evenly spread over this time.")
    start: datetime | None = Field(
        None, description="Time of the timeline's origin (RFC 3339); default now. Pin it to repeat a run exactly."
    )
    pace: bool = Field(True, description="false: send as fast as the broker takes it (timestamps stay nominal).")
    preload: bool = Field(False, description="Generate every message before the clock starts (unpaced load).")

    @model_validator(mode="after")
    def _one_length(self) -> RunSettings:
        if self.duration_s is not None and self.messages is not None:
            raise ValueError(f"messages: give duration_s or messages, not both (values {self.duration_s}, "
                             f"{self.messages})")  # fmt: skip
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError(f"start: needs a time zone, e.g. 2026-11-27T10:00:00Z (value {self.start})")
        return self


class FleetFile(_Strict):
    broker: BrokerSettings = Field(default_factory=BrokerSettings, description="Where and how devices connect.")
    run: RunSettings = Field(default_factory=RunSettings, description="How long, how fast, which seed.")
    groups: list[Group] = Field(
        default_factory=lambda: [Group.model_validate(DEFAULT_GROUP)],
        min_length=1,
        description="The device groups.",
    )

    @model_validator(mode="after")
    def _unique_groups(self) -> FleetFile:
        names = [g.name for g in self.groups]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"groups: two groups are named {name!r}")
        return self

    @property
    def devices(self) -> int:
        return sum(g.count for g in self.groups)


def load_fleet(path: Path | None, overrides: dict[str, Any] | None = None) -> FleetFile:
    """The fleet from a YAML file (or the defaults), with command-line overrides applied, checked."""
    data: Any = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise FleetFileError(f"cannot read fleet file {str(path)!r}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise FleetFileError(f"fleet file {str(path)!r} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise FleetFileError(f"fleet file {str(path)!r} must hold a mapping, not {type(data).__name__}")
    data = apply_overrides(data, overrides or {})
    try:
        return FleetFile.model_validate(data)
    except ValidationError as exc:
        source = str(path) if path is not None else "the command line"
        raise FleetFileError(f"invalid fleet in {source}:\n  " + "\n  ".join(describe_errors(exc))) from None


_EITHER = {"run.messages": "duration_s", "run.duration_s": "messages"}


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides are dotted keys: `broker.url`, `run.seed`; `groups.*.rate` sets every group's key;
    `devices` spreads a total over the groups in proportion to their counts; `faults.<name>` sets a fault
    rate in every group."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    groups = [dict(g) if isinstance(g, dict) else g for g in data.get("groups") or [dict(DEFAULT_GROUP)]]
    if "groups" in data or any(k.startswith(("groups.", "faults.")) or k in ("devices",) for k in overrides):
        data["groups"] = groups
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "devices":
            _spread_devices(groups, value)
        elif key.startswith("groups.*."):
            for group in groups:
                if isinstance(group, dict):
                    group[key.removeprefix("groups.*.")] = value
                    if key == "groups.*.format" and value != "native":
                        group.pop("tags", None)  # other formats carry no tags
        elif key.startswith("faults."):
            for group in groups:
                if isinstance(group, dict):
                    group["faults"] = {**(group.get("faults") or {}), key.removeprefix("faults."): value}
        else:
            section, _, name = key.partition(".")
            data[section] = {**(data.get(section) or {}), name: value}
            if key in _EITHER:  # a run length from the command line replaces the file's other one
                data[section].pop(_EITHER[key], None)
    return data


def _spread_devices(groups: list[Any], total: int) -> None:
    counts = [g.get("count", 1) if isinstance(g, dict) else 1 for g in groups]
    if len(groups) == 1 or not all(isinstance(c, int) and c > 0 for c in counts):
        if isinstance(groups[0], dict):
            groups[0]["count"] = total
        return
    whole = sum(counts)
    shares = [total * c / whole for c in counts]
    new = [max(1, int(s)) for s in shares]
    # Largest remainders get the devices that rounding down left over.
    for i in sorted(range(len(new)), key=lambda i: shares[i] - int(shares[i]), reverse=True):
        if sum(new) >= total:
            break
        new[i] += 1
    for group, count in zip(groups, new, strict=True):
        group["count"] = count


def describe_errors(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if p not in SENSOR_KINDS]  # the discriminated union adds the kind
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        if err["type"] == "value_error":
            message = str(err.get("ctx", {}).get("error", err["msg"]))
            if _NAMES_KEY.match(message):  # the validator named the key below `key` itself
                lines.append(f"{key + '.' if key else ''}{message}")
            else:
                lines.append(f"{key or '(top level)'}: {message} (value {err.get('input')!r})")
        elif err["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key (value {err.get('input')!r})")
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            lines.append(f"{key}.kind: must be one of {', '.join(SENSOR_KINDS)} (value {err.get('input')!r})")
        else:
            lines.append(f"{key or '(top level)'}: {err['msg']} (value {err.get('input')!r})")
    return lines
