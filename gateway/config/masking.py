"""A configuration and its validation errors shown to people: keys named, secrets masked."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationError


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


def masked_dump(config: BaseModel) -> dict[str, Any]:
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
