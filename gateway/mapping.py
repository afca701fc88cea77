"""Topic templates: which topic filter to subscribe to, and which device and format a topic means."""

from __future__ import annotations

from typing import NamedTuple

from gateway.config import MappingConfig


class TopicMatch(NamedTuple):
    device: str
    mapping: MappingConfig


class TopicTemplate:
    """`devices/{device}/telemetry` -> filter `devices/+/telemetry`; matches a topic level by level."""

    def __init__(self, mapping: MappingConfig) -> None:
        self.mapping = mapping
        self._levels = mapping.topic.split("/")
        self._device_level = self._levels.index("{device}")
        self.filter = "/".join("+" if level == "{device}" else level for level in self._levels)

    def match(self, topic: str) -> str | None:
        levels = topic.split("/")
        if len(levels) != len(self._levels):
            return None
        for i, (want, got) in enumerate(zip(self._levels, levels, strict=True)):
            if i != self._device_level and want not in ("+", got):
                return None
        return levels[self._device_level]


class TopicRouter:
    """The configured mappings, tried in order."""

    def __init__(self, mappings: list[MappingConfig]) -> None:
        self._templates = [TopicTemplate(m) for m in mappings]

    @property
    def filters(self) -> list[str]:
        return list(dict.fromkeys(t.filter for t in self._templates))

    def route(self, topic: str) -> TopicMatch | None:
        for template in self._templates:
            device = template.match(topic)
            if device is not None:
                return TopicMatch(device, template.mapping)
        return None
