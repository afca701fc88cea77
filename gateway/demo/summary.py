"""What `gateway demo` prints around the run: the header before it, the summary after."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from gateway.alerts import load_rules
from gateway.demo.brokers.base import DemoBroker
from gateway.demo.dashboard import Out, Snapshot, n, rejections_text
from gateway.demo.embedded_gateway import RULES_FILE, metrics_url
from gateway.demo.fleet import DUP_RATE, MALFORMED_RATE, FleetFeed, FleetPublisher
from gateway.demo.options import DemoOptions
from gateway.pipeline import Pipeline
from gateway.tools.query import format_number


def title_and_header(
    options: DemoOptions, feed: FleetFeed, broker: DemoBroker, pipeline: Pipeline
) -> tuple[str, list[str]]:
    """The title line and the lines under it: what runs, where the data goes, how to stop."""
    duration = f"for {options.duration_s:g} s" if options.duration_s is not None else "until Ctrl-C"
    title = (
        f"gateway demo: {options.devices} simulated devices, ~{feed.rate:g} msg/s "
        f"({DUP_RATE:.0%} duplicates, {MALFORMED_RATE:.0%} malformed), {duration}"
    )
    rules = load_rules(RULES_FILE).rules
    lines = [
        f"  broker   {escape(broker.describe())}",
        f"  store    SQLite {escape(str(options.db))}",
        f"  alerts   {', '.join(rule.name for rule in rules)} ({escape(str(shown_path(RULES_FILE)))})",
    ]
    if feed.script is not None:
        lines += [f"  script   {line}" for line in feed.script.lines(feed.devices)]
    lines.append(f"  metrics  {metrics_url(pipeline)}")
    lines.append("  Ctrl-C stops." if options.duration_s is None else "  Ctrl-C stops early.")
    return title, lines


def shown_path(path: Path) -> Path:
    """`path` relative to the working directory when it lies below it (as in a clone), else as it is."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def print_summary(
    out: Out,
    options: DemoOptions,
    pipeline: Pipeline,
    publisher: FleetPublisher,
    feed: FleetFeed,
    final: Snapshot,
) -> None:
    """What was published, received, stored, dropped and alerted, and how to look at the data."""
    stats = pipeline.stats
    kinds = publisher.kinds
    malformed = sum(k for kind, k in kinds.items() if kind.startswith("malformed:"))
    unstored = stats.readings_accepted - final.stored  # accepted but still queued when the gateway had to stop
    out.line()
    out.line(f"[bold]summary[/] after {final.elapsed_s:.1f} s")
    out.line(
        f"  published    {n(publisher.sent)} messages by {options.devices} simulated devices "
        f"({n(kinds['valid'])} new, {n(kinds['duplicate'])} resent, {n(malformed)} malformed; "
        f"{n(feed.held_back)} held back by silent devices)"
        + (f", [red]{n(publisher.errors)} failed[/]" if publisher.errors else "")
    )
    out.line(f"  received     {n(final.received)} messages")
    out.line(f"  stored       [green]{n(final.stored)}[/] readings from {final.devices} devices in {options.db}")
    out.line(f"  duplicates   [yellow]{n(final.duplicates)}[/] (dropped)")
    out.line(f"  rejected     [red]{escape(rejections_text(final.rejected))}[/]")
    fired = sum(1 for row in final.alerts if row.transition == "firing")
    resolved = sum(1 for row in final.alerts if row.transition == "resolved")
    out.line(f"  alerts       {fired} fired, {resolved} resolved, {len(final.firing)} still firing")
    for row in final.firing:
        out.line(
            f"               [red]{escape(row.rule)}[/] on {escape(row.device)} ({row.severity}), "
            f"value {format_number(row.value)}"
        )
    if unstored > 0:
        out.line(f"  [red]not stored   {n(unstored)} accepted readings (still queued at shutdown)[/]")
    if publisher.failure:
        out.line(f"  [red]fleet failed: {escape(publisher.failure)}[/]")
    out.line()
    out.line("Look at the data:")
    out.line(f"  gateway query --db {escape(str(options.db))}")
    out.line(f"  gateway query --db {escape(str(options.db))} --device dev-00007 --limit 10")
