"""Reading the lines of a ConfigError message: one line a bad key, `key: what is wrong (value shown)`."""

from __future__ import annotations


def _error_lines(message: str) -> list[str]:
    return [line.strip() for line in message.splitlines()]


def _line_for(message: str, key: str) -> str:
    """The error line about `key`; fails when no line starts with it."""
    lines = [line for line in _error_lines(message) if line.startswith(f"{key}:")]
    assert lines, f"no error line for {key!r} in:\n{message}"
    return lines[0]
