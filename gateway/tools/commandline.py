"""What the `gateway` commands share: the --config option and its loading, errors as exit codes, counted nouns."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from gateway.config.schema import GatewayConfig, load_config
from gateway.errors import ConfigError

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file; GATEWAY_* environment variables override it."),
]
EXIT_CONFIG = 2
DEMO_DB = Path("data/demo.db")  # where `gateway demo` stores, so `gateway query` finds it without options


def exit_with_error(error: Exception, exit_code: int) -> NoReturn:
    """`error: ...` on stderr, then the exit status."""
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(exit_code) from None


def load_or_exit(path: Path | None) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        exit_with_error(exc, EXIT_CONFIG)


def counted(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
