"""What every config section shares: unknown keys are errors, secrets may come from files, URLs are checked."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr


class Section(BaseModel):
    """A config section: unknown keys are errors, so a typo fails at start-up instead of being ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(value: SecretStr | None, path: Path | None, key: str) -> SecretStr | None:
    """A secret given inline or in a file (`*_file`, as Docker secrets are mounted); the file wins."""
    if path is None:
        return value
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(f"{key}_file: cannot read {str(path)!r}: {exc.strerror}") from exc


def http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL with a host, got {url!r}")
    return url
