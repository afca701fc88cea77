"""Topic mappings: which topic filters to subscribe to, which device (and metric) a topic names, and which
payload format decodes it."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from gateway.config.schema import MappingConfig
from gateway.ingest.formats import json, line, native, senml, thingsboard, value
from gateway.ingest.formats.base import DecodeContext, Format
from gateway.model import Reading


class TopicMatch(NamedTuple):
    device: str | None  # None when the topic names no device and the mapping's device_field does
    mapping: MappingConfig
    metric: str | None = None


class TopicTemplate:
    """`tele/{device}/SENSOR` -> filter `tele/+/SENSOR`; matches a topic level by level."""

    def __init__(self, mapping: MappingConfig) -> None:
        self.mapping = mapping
        self._levels = mapping.topic.split("/")
        self._device_level = self._levels.index("{device}") if "{device}" in self._levels else None
        self._metric_level = self._levels.index("{metric}") if "{metric}" in self._levels else None
        self._rest = self._levels[-1] == "#"
        self.filter = "/".join("+" if level in ("{device}", "{metric}") else level for level in self._levels)

    def match(self, topic: str) -> TopicMatch | None:
        levels = topic.split("/")
        fixed = len(self._levels) - 1 if self._rest else len(self._levels)
        if len(levels) < fixed or (not self._rest and len(levels) != fixed):
            return None
        for want, got in zip(self._levels[:fixed], levels, strict=False):
            if want not in ("+", "{device}", "{metric}", got):
                return None
        device = levels[self._device_level] if self._device_level is not None else None
        metric = levels[self._metric_level] if self._metric_level is not None else None
        return TopicMatch(device, self.mapping, metric)


class TopicRouter:
    """The configured mappings, tried in order."""

    def __init__(self, mappings: list[MappingConfig]) -> None:
        self._templates = [TopicTemplate(m) for m in mappings]

    @property
    def filters(self) -> list[str]:
        return list(dict.fromkeys(t.filter for t in self._templates))

    def route(self, topic: str) -> TopicMatch | None:
        for template in self._templates:
            match = template.match(topic)
            if match is not None:
                return match
        return None


_DECODERS: dict[str, Format] = {
    "json": json.decode,
    "value": value.decode,
    "senml": senml.decode,
    "thingsboard": thingsboard.decode,
    "line": line.decode,
}


def decode(
    match: TopicMatch,
    payload: bytes,
    received_at_ns: int,
    max_depth: int = 32,
    expected_unit: Callable[[str], str | None] | None = None,
) -> list[Reading]:
    """Bytes -> readings with the format the matched mapping names, plus the mapping's static tags."""
    mapping = match.mapping
    if mapping.format == "native":
        readings = native.decode(payload, match.device or "", mapping.measurement, received_at_ns)
    else:
        context = DecodeContext(
            device=match.device or "",
            measurement=mapping.measurement,
            received_at_ns=received_at_ns,
            topic_metric=match.metric,
            timestamp_field=mapping.timestamp_field,
            timezone=mapping.timezone,
            keep_strings=mapping.keep_strings,
            include=tuple(mapping.include),
            exclude=tuple(mapping.exclude),
            rename=mapping.rename,
            separator=mapping.separator,
            max_depth=max_depth,
            root=mapping.root,
            device_field=mapping.device_field,
            expected_unit=expected_unit,
        )
        readings = _DECODERS[mapping.format](payload, context)
    if mapping.tags:
        # The payload's own tags win over the mapping's defaults.
        readings = [r._replace(tags={**mapping.tags, **r.tags}) for r in readings]
    return readings
