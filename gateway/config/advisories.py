"""What is valid but almost certainly not meant: `check-config` prints these, `gateway run` logs them.

- A `GATEWAY_*` variable that names no key (`GATEWAY_INFLUX_TOKEN`, one underscore short) would be ignored
  silently: the token the user thinks is set is not.
- A mapping whose filter also matches a topic the gateway publishes to: those messages are ignored (counted in
  `gateway_messages_ignored_total{reason="own_output"}`), which is worth knowing before they go missing.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from gateway.config.schema import ENV_PREFIX, GatewayConfig
from gateway.ingest import topics
from gateway.ingest.ingestor import own_output_filters
from gateway.ingest.mapping import TopicTemplate


def config_warnings(config: GatewayConfig, environ: Mapping[str, str]) -> list[str]:
    return [*unknown_environment_names(environ), *own_output_overlaps(config)]


def unknown_environment_names(environ: Mapping[str, str]) -> list[str]:
    known = sorted(_env_names(GatewayConfig, ENV_PREFIX))
    warnings = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or _is_known(GatewayConfig, name[len(ENV_PREFIX) :].split("__")):
            continue
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else " (nested keys are joined with __)"
        warnings.append(f"environment variable {name} names no configuration key and is ignored{hint}")
    return warnings


def own_output_overlaps(config: GatewayConfig) -> list[str]:
    warnings = []
    outputs = own_output_filters(config)
    for index, mapping in enumerate(config.mappings):
        mapping_filter = TopicTemplate(mapping).filter
        for output in outputs:
            if topics.filters_overlap(mapping_filter, output):
                warnings.append(
                    f"mappings[{index}].topic {mapping.topic!r} also matches {output!r}, where the gateway publishes "
                    "its own dead letters or alerts: messages there are ignored, not ingested"
                )
    return warnings


def _field_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the section model a field holds, whether it is a free-form mapping) from its annotation."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            model, free = _field_model(arg)
            if model is not None or free:
                return model, free
        return None, False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, typing.get_origin(annotation) is dict


def _is_known(model: type[BaseModel], parts: list[str]) -> bool:
    field = model.model_fields.get(parts[0].lower())
    if field is None:
        return False
    section, free = _field_model(field.annotation)
    rest = parts[1:]
    if not rest or free:
        return True  # a leaf, a whole section as JSON, or a key of a free-form mapping (webhook headers)
    return section is not None and _is_known(section, rest)


def _env_names(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        yield env
        section, _free = _field_model(field.annotation)
        if section is not None:
            yield from _env_names(section, f"{env}__")
