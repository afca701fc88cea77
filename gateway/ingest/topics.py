"""MQTT topic names and filters: the checks a topic the gateway publishes must pass, and filter matching.

The gateway publishes to topics built from templates (`mqtt.deadletter_topic`, `alerts.topic`). The MQTT client
raises ValueError on a topic with a wildcard, and a broker drops the connection on one longer than MQTT allows, so a
template is checked once at start-up and every value put into it is checked as it is filled in.
"""

from __future__ import annotations

import re

MAX_TOPIC_BYTES = 65_535  # MQTT's limit: a two-byte length prefix
UNKNOWN_LEVEL = "_unknown"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def check_publish_template(template: str, placeholders: frozenset[str]) -> str:
    """A template of a topic to publish to; raises ValueError saying what is wrong with it."""
    if not template:
        raise ValueError("a topic cannot be empty")
    unknown = sorted(set(_PLACEHOLDER.findall(template)) - placeholders)
    if unknown:
        allowed = ", ".join(f"{{{p}}}" for p in sorted(placeholders))
        raise ValueError(f"unknown placeholder {{{unknown[0]}}}: allowed are {allowed}")
    check_publish_topic(_PLACEHOLDER.sub("x", template))
    return template


def check_publish_topic(topic: str) -> None:
    """What MQTT requires of a topic name (not a filter); raises ValueError."""
    if not topic:
        raise ValueError("a topic cannot be empty")
    if "+" in topic or "#" in topic:
        raise ValueError("a topic to publish to cannot hold the wildcards + or #")
    if "\0" in topic:
        raise ValueError("a topic cannot hold a NUL character")
    if topic.startswith("$"):
        raise ValueError("topics starting with $ are the broker's own")
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid UTF-8: {exc.reason}") from None
    if size > MAX_TOPIC_BYTES:
        raise ValueError(f"{size} bytes long; MQTT allows {MAX_TOPIC_BYTES}")


def fill_template(template: str, values: dict[str, str]) -> str:
    """`template` with each {name} replaced by its value; a value that is not one safe topic level (empty,
    a `/`, a wildcard, NUL) becomes `_unknown`, and so does every value when the topic would be too long."""
    safe = {name: value if _is_level(value) else UNKNOWN_LEVEL for name, value in values.items()}
    topic = _PLACEHOLDER.sub(lambda m: safe.get(m.group(1), m.group(0)), template)
    if len(topic.encode("utf-8", "replace")) > MAX_TOPIC_BYTES:
        topic = _PLACEHOLDER.sub(lambda m: UNKNOWN_LEVEL if m.group(1) in values else m.group(0), template)
    return topic


def _is_level(value: str) -> bool:
    if not value or any(c in value for c in "/+#\0"):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def template_filter(template: str) -> str:
    """The filter matching every topic a template can produce: each placeholder level becomes +."""
    return "/".join("+" if _PLACEHOLDER.search(level) else level for level in template.split("/"))


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` matches `topic_filter` (+ one level, # the rest), as a broker decides it."""
    if topic.startswith("$") and not topic_filter.startswith("$"):
        return False  # wildcards at the start do not match the broker's own $ topics
    wanted = topic_filter.split("/")
    levels = topic.split("/")
    for i, want in enumerate(wanted):
        if want == "#":
            return True
        if i >= len(levels) or (want != "+" and want != levels[i]):
            return False
    return len(levels) == len(wanted)


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both filters."""
    left, right = a.split("/"), b.split("/")
    for i in range(max(len(left), len(right))):
        x = left[i] if i < len(left) else None
        y = right[i] if i < len(right) else None
        if x == "#" or y == "#":
            return True
        if x is None or y is None:
            return False
        if "+" not in (x, y) and x != y:
            return False
    return True
