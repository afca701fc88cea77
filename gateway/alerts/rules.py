"""The alert rules file: pydantic models of every rule kind, and `load_rules` whose errors name rule and key.

    rules:
      - name: boiler_hot            # unique; also a topic level of the alert (alerts/{device}/{rule})
        kind: threshold             # threshold | range | rate | deadman | sequence
        severity: critical
        select: {devices: ["boiler-*"], tags: {site: plant-1}}
        metric: temperature
        op: ">"
        value: 90
        for: 30s
        clear: {op: "<", value: 85}

`config/rules.example.yaml` shows every kind and key and is parsed by a test.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.alerts.conditions import ORDERING_OPS, Op, overlap
from gateway.alerts.durations import format_duration, parse_duration
from gateway.errors import ConfigError

Duration = Annotated[int, BeforeValidator(parse_duration), Field(ge=0)]
PositiveDuration = Annotated[int, BeforeValidator(parse_duration), Field(gt=0)]
Severity = Literal["critical", "major", "minor", "warning", "info"]
SequenceEvent = Literal["gap", "reset", "out_of_order"]
KINDS = ("threshold", "range", "rate", "deadman", "sequence")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"  # safe as an MQTT topic level and an InfluxDB tag


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt `for` would otherwise silently mean `for: 0s`."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Selector(_Strict):
    devices: tuple[str, ...] = Field(
        (), description="Globs on the device id (*, ?, [abc]); any one may match. Empty: every device."
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Tags a reading must carry, with exactly these values."
    )

    @field_validator("devices", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value


class Comparison(_Strict):
    op: Op = Field(description="One of > >= < <= == !=.")
    value: float | str = Field(description="The bound; a string only with == and !=.")


class Band(_Strict):
    min: float | None = Field(None, description="Lower end of the band (inclusive).")
    max: float | None = Field(None, description="Upper end of the band (inclusive).")


class _Rule(_Strict):
    name: str = Field(pattern=_NAME, description="Unique name; letters, digits, _ . : -")
    severity: Severity = Field("warning", description="critical, major, minor, warning or info.")
    labels: dict[str, str] = Field(default_factory=dict, description="Copied onto every alert of the rule.")
    description: str = Field("", description="For humans; copied nowhere.")
    select: Selector = Field(default_factory=Selector, description="Which devices (and readings) the rule watches.")
    repeat_interval: PositiveDuration | None = Field(
        None, description="While firing, notify again this often (wall clock). Unset: once per episode."
    )


class _Held(_Rule):
    """Kinds whose condition must hold `for` a while (device time) and may keep firing after it clears."""

    metric: str = Field(min_length=1, description="The field of the reading the rule looks at.")
    for_: Duration = Field(0, alias="for", description="The condition must hold this long (device time).")
    keep_firing_for: Duration = Field(
        0, description="Keep firing this long (device time) after the clear condition first holds."
    )


class ThresholdRule(_Held):
    kind: Literal["threshold"] = Field(description="A comparison held for a while.")
    op: Op = Field(description="Fires when `<metric> <op> <value>` holds.")
    value: float | str = Field(description="The bound; a string only with == and !=.")
    clear: Comparison | None = Field(
        None, description="Resolves when this holds (hysteresis). Unset: when the firing condition stops holding."
    )

    @model_validator(mode="after")
    def _check(self) -> ThresholdRule:
        if self.op in ORDERING_OPS and isinstance(self.value, str):
            raise ValueError(f"value: {self.op!r} needs a number, got {self.value!r}")
        if self.clear is not None:
            clear = self.clear
            if clear.op in ORDERING_OPS and isinstance(clear.value, str):
                raise ValueError(f"clear.value: {clear.op!r} needs a number, got {clear.value!r}")
            both = overlap((self.op, self.value), (clear.op, clear.value))
            if both is not None:
                raise ValueError(
                    f"clear: `{clear.op} {clear.value!r}` holds together with the firing condition "
                    f"`{self.op} {self.value!r}` (both hold at {both!r}); they must not overlap"
                )
        return self


class RangeRule(_Held):
    kind: Literal["range"] = Field(description="Outside [min, max] for a while.")
    min: float | None = Field(None, description="Fires below this.")
    max: float | None = Field(None, description="Fires above this.")
    clear: Band | None = Field(
        None, description="Resolves when the value is back inside this band (within [min, max]). Unset: [min, max]."
    )

    @model_validator(mode="after")
    def _check(self) -> RangeRule:
        if self.min is None and self.max is None:
            raise ValueError("min: a range needs min, max or both")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min: must be below max ({self.min!r} >= {self.max!r})")
        band = self.clear
        if band is not None:
            for end, limit in (("min", self.min), ("max", self.max)):
                value = getattr(band, end)
                if value is not None and limit is None:
                    raise ValueError(f"clear.{end}: the range has no {end}")
            if band.min is not None and self.min is not None and band.min < self.min:
                raise ValueError(f"clear.min: must be at least min ({band.min!r} < {self.min!r})")
            if band.max is not None and self.max is not None and band.max > self.max:
                raise ValueError(f"clear.max: must be at most max ({band.max!r} > {self.max!r})")
            if band.min is not None and band.max is not None and band.min > band.max:
                raise ValueError(f"clear.min: must not exceed clear.max ({band.min!r} > {band.max!r})")
        return self

    @property
    def clear_band(self) -> tuple[float | None, float | None]:
        band = self.clear or Band()
        low = band.min if band.min is not None else self.min
        high = band.max if band.max is not None else self.max
        return low, high


class RateRule(_Held):
    kind: Literal["rate"] = Field(description="Changing faster than a bound.")
    max: float = Field(gt=0, description="Fires when the value changes faster than this per `per`.")
    per: PositiveDuration = Field(60_000_000_000, description="The unit of time of `max` (default 1m).")
    direction: Literal["rising", "falling", "both"] = Field("rising", description="Which changes count.")
    window: Duration = Field(
        0,
        description="Compare readings at least this far apart (device time), smoothing noise; 0: consecutive.",
    )
    clear: float | None = Field(
        None, ge=0, description="Resolves when the rate is back to at most this (hysteresis). Unset: max."
    )

    @model_validator(mode="after")
    def _check(self) -> RateRule:
        if self.clear is not None and self.clear > self.max:
            raise ValueError(f"clear: must be at most max ({self.clear!r} > {self.max!r})")
        return self


class DeadmanRule(_Rule):
    kind: Literal["deadman"] = Field(description="No reading for a while.")
    metric: str | None = Field(None, min_length=1, description="Only readings with this field count; unset: any.")
    for_: PositiveDuration = Field(alias="for", description="Fires after this long without a reading (wall clock).")


class SequenceRule(_Rule):
    kind: Literal["sequence"] = Field(description="A sequence gap, reset or out-of-order event.")
    events: tuple[SequenceEvent, ...] = Field(
        ("gap", "reset"), min_length=1, description="Which sequence events fire: gap, reset (reboot), out_of_order."
    )
    resolve_after: Duration = Field(
        300_000_000_000,
        description="Resolves this long (wall clock) after the last such event; 0s: fires and resolves at once.",
    )


Rule = Annotated[ThresholdRule | RangeRule | RateRule | DeadmanRule | SequenceRule, Field(discriminator="kind")]
HeldRule = ThresholdRule | RangeRule | RateRule
AnyRule = ThresholdRule | RangeRule | RateRule | DeadmanRule | SequenceRule


class RuleSet(_Strict):
    rules: tuple[Rule, ...] = Field((), description="The rules, evaluated in this order.")

    @model_validator(mode="after")
    def _unique_names(self) -> RuleSet:
        first: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            if rule.name in first:
                raise ValueError(f"rules[{i}] (name {rule.name!r}): name: already used by rules[{first[rule.name]}]")
            first[rule.name] = i
        return self

    def __len__(self) -> int:
        return len(self.rules)


def fingerprint(rule: AnyRule) -> str:
    """Stable digest of a rule's definition: a snapshot's state is only restored into an identical rule."""
    canonical = json.dumps(rule.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def describe_rule(rule: AnyRule) -> str:
    """One line for `gateway rules check`: what fires, on what, when."""
    where = ", ".join(rule.select.devices) or "all devices"
    if rule.select.tags:
        where += " with " + ", ".join(f"{k}={v}" for k, v in rule.select.tags.items())
    if isinstance(rule, ThresholdRule):
        what = f"{rule.metric} {rule.op} {rule.value!r}"
        if rule.clear is not None:
            what += f", clear {rule.clear.op} {rule.clear.value!r}"
    elif isinstance(rule, RangeRule):
        what = f"{rule.metric} outside [{_end(rule.min)}, {_end(rule.max)}]"
        if rule.clear is not None:
            what += f", clear inside [{_end(rule.clear_band[0])}, {_end(rule.clear_band[1])}]"
    elif isinstance(rule, RateRule):
        what = f"{rule.metric} {rule.direction} faster than {rule.max:g} per {format_duration(rule.per)}"
    elif isinstance(rule, DeadmanRule):
        what = f"no {rule.metric or 'reading'} for {format_duration(rule.for_)}"
    else:
        what = f"sequence {'/'.join(rule.events)}, resolves after {format_duration(rule.resolve_after)}"
    if isinstance(rule, HeldRule) and rule.for_:
        what += f", for {format_duration(rule.for_)}"
    return f"{rule.name} [{rule.kind}, {rule.severity}]: {what}; {where}"


def _end(value: float | None) -> str:
    return "-inf" if value is None else f"{value:g}"


def load_rules(path: Path) -> RuleSet:
    """Read and check a rules file; ConfigError lists every problem as `rules[i] (name 'x'): key: what`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read rules file {str(path)!r}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"rules file {str(path)!r} is not valid YAML: {exc}") from exc
    return parse_rules(data, str(path))


def parse_rules(data: object, source: str = "rules") -> RuleSet:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must hold a mapping with a `rules` list, got {type(data).__name__}")
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid rules in {source}:\n  " + "\n  ".join(describe_errors(exc, data))) from None


def describe_errors(exc: ValidationError, data: dict[str, Any]) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            where = _rule_label(data, loc[1]) + ": "
            loc = loc[2:]
            if loc and loc[0] in KINDS:  # the discriminated union adds the kind to the location
                loc = loc[1:]
        key = ".".join(str(part) for part in loc)
        value = err.get("input")
        if err["type"] == "value_error":
            message = str(err.get("ctx", {}).get("error", err["msg"]))
            lines.append(f"{where}{key + ': ' if key and not message.startswith(key) else ''}{message}")
        elif err["type"] == "missing":
            lines.append(f"{where}{key}: required key is missing")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{where}{key}: unknown key (value {value!r})")
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            shown = value.get("kind") if isinstance(value, dict) else value
            lines.append(f"{where}kind: must be one of {', '.join(KINDS)} (value {shown!r})")
        else:
            lines.append(f"{where}{key or '(top level)'}: {err['msg']} (value {value!r})")
    return lines


def _rule_label(data: dict[str, Any], index: int) -> str:
    rules = data.get("rules")
    entry = rules[index] if isinstance(rules, list) and index < len(rules) else None
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"rules[{index}]" + (f" (name {name!r})" if isinstance(name, str) else "")
