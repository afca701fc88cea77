"""`gateway deadletter list|replay`: the rejected messages kept in the journal, shown or run again."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from gateway.errors import ReplayError
from gateway.rfc3339 import rfc3339
from gateway.tools.commandline import ConfigOption, counted, exit_with_error, load_or_exit
from gateway.tools.replay import Example, ReplayReport, list_rejected, parse_since, replay

deadletter_app = typer.Typer(
    no_args_is_help=True, help="Rejected messages kept in the journal: list them, replay them through the config."
)

ReasonOption = Annotated[str | None, typer.Option(help="Only messages rejected for this reason (e.g. invalid_schema).")]
SinceOption = Annotated[
    str | None,
    typer.Option(
        help="Only messages received since then: RFC 3339 (2026-11-27T10:00:00Z) or a duration (30m, 1h, 2d)."
    ),
]


def _since_ns(since: str | None) -> int | None:
    if since is None:
        return None
    try:
        return parse_since(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None


def _filters_text(reason: str | None, since: str | None) -> str:
    shown = [f"reason {reason}"] if reason else []
    shown += [f"since {since}"] if since else []
    return f" ({', '.join(shown)})" if shown else ""


def _echo_examples(examples: list[Example], more: int) -> None:
    for example in examples:
        typer.echo(f"    {rfc3339(example.received_ns)}  {example.topic}  {example.detail}")
        typer.echo(f"      payload: {example.payload}")
    if more > 0:
        typer.echo(f"    ... and {more:,} more")


@deadletter_app.command("list")
def deadletter_list(
    config: ConfigOption = None,
    reason: ReasonOption = None,
    since: SinceOption = None,
    examples: Annotated[int, typer.Option(min=0, help="Examples shown per reason (the newest).")] = 3,
) -> None:
    """Show the rejected messages kept in the journal, grouped by reason, with examples."""
    loaded = load_or_exit(config)
    since_ns = _since_ns(since)
    try:
        summaries = list_rejected(loaded.journal.path, reason, since_ns, examples)
    except ReplayError as exc:
        exit_with_error(exc, 1)
    path = loaded.journal.path
    if not summaries:
        typer.echo(f"no rejected messages in {path}{_filters_text(reason, since)}")
        return
    total = sum(s.messages for s in summaries)
    typer.echo(
        f"{counted(total, 'rejected message')} in {path}{_filters_text(reason, since)} "
        f"(at most journal.max_rejected={loaded.journal.max_rejected:,} are kept, the oldest dropped first):"
    )
    for summary in summaries:
        unreplayable = (
            f", {summary.not_replayable:,} too large to replay (only their first bytes are kept)"
            if summary.not_replayable
            else ""
        )
        typer.echo("")
        typer.echo(
            f"  {summary.reason}: {counted(summary.messages, 'message')}, first {rfc3339(summary.first_ns)}, "
            f"last {rfc3339(summary.last_ns)}{unreplayable}"
        )
        _echo_examples(summary.examples, summary.messages - len(summary.examples))


@deadletter_app.command("replay")
def deadletter_replay(
    config: ConfigOption = None,
    reason: ReasonOption = None,
    since: SinceOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen; write nothing.")] = False,
) -> None:
    """Run the rejected messages kept in the journal through the current config; store what now passes, once."""
    loaded = load_or_exit(config)
    since_ns = _since_ns(since)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        report = replay(loaded, reason, since_ns, dry_run=dry_run)
    except ReplayError as exc:
        exit_with_error(exc, 1)
    _echo_replay(report, loaded.journal.path, _filters_text(reason, since))


def _echo_replay(report: ReplayReport, path: Path, filters: str) -> None:
    if report.matched == 0:
        typer.echo(f"nothing to replay: no rejected messages in {path}{filters}")
        return
    matched = counted(report.matched, "rejected message")
    duplicates = counted(report.duplicates, "duplicate reading")
    if report.dry_run:
        typer.echo(
            f"dry run, nothing written: of {matched} in {path}{filters}, {report.replayed:,} would be stored as "
            f"{counted(report.readings_stored, 'reading')} ({duplicates} dropped)"
        )
    else:
        typer.echo(
            f"replayed {report.replayed:,} of {matched} in {path}{filters} -> "
            f"{counted(report.readings_stored, 'reading')} stored ({', '.join(report.sinks)}), {duplicates} dropped"
            + ("; the replayed messages are removed from the journal" if report.replayed else "")
        )
    if report.not_replayable:
        typer.echo(
            f"skipped {counted(report.not_replayable, 'message')} larger than validation.max_payload_bytes: only "
            "their first bytes are kept, so they cannot be replayed"
        )
    still = sum(report.still_rejected.values())
    if not still:
        typer.echo("still rejected: none")
        return
    verb = "would stay" if report.dry_run else "kept"
    typer.echo(f"still rejected ({verb} in the journal, with the reason the current config gives): {still:,}")
    for reason, count in report.still_rejected.most_common():
        typer.echo(f"  {reason}: {count:,}")
        examples = report.examples.get(reason, [])
        _echo_examples(examples, count - len(examples))
