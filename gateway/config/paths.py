"""The database files a configuration names, checked writable before `gateway run` opens them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.config.schema import GatewayConfig


def check_writable_paths(config: GatewayConfig) -> None:
    """`gateway run` checks the database files it must write before it opens them, so that a path that cannot
    be written is named with its key (exit 2) instead of a traceback from SQLite. Only at start-up: once
    running, a SQLite store that goes away is retried like any other store."""
    paths = {"journal.path": config.journal.path, "sqlite.path": config.sqlite.path if config.sqlite else None}
    problems = []
    for key, path in paths.items():
        if path is not None:
            try:
                _writable_file(path)
            except ValueError as exc:
                problems.append(f"{key}: {exc} (value {str(path)!r})")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _writable_file(path: Path) -> Path:
    """A database file the gateway will create or write; raises ValueError saying why it cannot."""
    if path.exists():
        if not path.is_file():
            raise ValueError(f"{str(path)!r} exists and is not a file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise ValueError(f"{str(path)!r} is not writable")
        return path
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"cannot create {str(path)!r}: {str(ancestor)!r} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"cannot create {str(path)!r}: directory {str(ancestor)!r} is not writable")
    return path
