"""`gateway rules check FILE` and `gateway rules test FILE --readings R.jsonl`: alert rules off-line.

R.jsonl holds one JSON object a line (blank lines and lines starting with # are skipped):

    {"device": "boiler-1", "time": "2026-01-01T00:00:00Z", "fields": {"temperature": 91.5}, "tags": {"site": "a"},
     "id": "r1", "seq": 7}                                  a reading ("metrics" may stand for "fields")
    {"device": "boiler-1", "time": 1767225600, "metric": "temperature", "value": 91.5}    the same, one field
    {"device": "boiler-1", "time": "2026-01-01T00:05:00Z", "sequence": "reset", "value": 1}  a sequence event
    {"tick": "2026-01-01T00:10:00Z"}                        move the wall clock (deadman, repeats)

`time` is the device time: RFC 3339 with a zone, or epoch seconds / ms / us / ns (told apart by magnitude).
`id` defaults to `line N`. `received` (same forms) is the wall time the gateway got the line; it defaults to
`time`, as if every reading arrived when it was measured. Readings with a `seq` also go through the gateway's
sequence tracking, which may produce gap, reset and out-of-order events, as in the running gateway.

The replay keeps a wall clock: before each line it moves to the line's `received` time (never backwards) and
runs the timers due by then; `--at` runs them once more at the end (e.g. `--at +10m` to see deadman alerts
fire after the last reading).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

import orjson
import typer
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, model_validator

from gateway.alerts import Alert, AlertEngine, RuleSet, load_rules
from gateway.alerts.durations import parse_duration
from gateway.alerts.rendering import alert_document
from gateway.alerts.rules import describe_rule
from gateway.errors import ConfigError, PayloadRejected
from gateway.ingest.formats.timestamps import to_ns
from gateway.ingest.sequence import SequenceTracker
from gateway.model import FieldValue, Reading
from gateway.rfc3339 import rfc3339
from gateway.tools.commandline import exit_with_error

EXIT_INVALID = 2

rules_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Alert rules: check a rules file, replay readings through it."
)

RulesFile = Annotated[Path, typer.Argument(help="The rules file (YAML), e.g. config/rules.example.yaml.")]
Value = StrictBool | float | StrictStr
Stamp = StrictInt | float | StrictStr


class ReplayLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    device: str | None = Field(None, min_length=1)
    time: Stamp | None = None
    fields: dict[str, Value] | None = None
    metrics: dict[str, Value] | None = None
    metric: str | None = Field(None, min_length=1)
    value: Value | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    id: str | None = Field(None, min_length=1)
    seq: StrictInt | None = None
    received: Stamp | None = None
    sequence: Literal["gap", "reset", "out_of_order"] | None = None
    tick: Stamp | None = None

    @model_validator(mode="after")
    def _shape(self) -> ReplayLine:
        if self.tick is not None:
            if self.device is not None or self.time is not None:
                raise ValueError("a tick line has only `tick`")
            return self
        if self.device is None or self.time is None:
            raise ValueError("needs `device` and `time` (or is a `tick` line)")
        if self.sequence is not None:
            return self
        given = [key for key in ("fields", "metrics", "metric") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError("a reading needs exactly one of `fields`, `metrics`, or `metric` with `value`")
        if self.metric is not None and self.value is None:
            raise ValueError("`metric` needs a `value`")
        return self

    def field_values(self) -> dict[str, FieldValue]:
        if self.metric is not None and self.value is not None:
            return {self.metric: self.value}
        return dict(self.fields or self.metrics or {})


def _stamp(value: int | float | str, now_ns: int | None = None) -> int:
    if isinstance(value, str) and value.startswith("+") and now_ns is not None:
        return now_ns + parse_duration(value[1:])
    try:
        return to_ns(value)
    except PayloadRejected as exc:
        raise ValueError(exc.detail) from None


def read_replay(path: Path) -> list[tuple[int, ReplayLine]]:
    """(line number, line) for every non-blank line; ValueError names the line and the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            line = ReplayLine.model_validate_json(raw)
            for stamp in (line.time, line.received, line.tick):
                if stamp is not None:
                    _stamp(stamp)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            key = ".".join(str(p) for p in err["loc"])
            message = str(err.get("ctx", {}).get("error")) if err["type"] == "value_error" else err["msg"]
            raise ValueError(f"{path}:{number}: {key + ': ' if key else ''}{message}") from None
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
        lines.append((number, line))
    return lines


class Replay:
    """Feeds replay lines to an engine the way the pipeline feeds it readings, keeping a wall clock."""

    def __init__(self, engine: AlertEngine) -> None:
        self.engine = engine
        self.tracker = SequenceTracker()
        self.wall_ns: int | None = None
        self.readings = 0
        self.events = 0

    def advance(self, wall_ns: int) -> list[Alert]:
        self.wall_ns = wall_ns if self.wall_ns is None else max(self.wall_ns, wall_ns)
        return self.engine.tick(self.wall_ns)

    def feed(self, number: int, line: ReplayLine) -> list[Alert]:
        if line.tick is not None:
            return self.advance(_stamp(line.tick))
        assert line.device is not None and line.time is not None
        time_ns = _stamp(line.time)
        out = self.advance(_stamp(line.received) if line.received is not None else time_ns)
        reading_id = line.id or f"line {number}"
        if line.sequence is not None:
            self.events += 1
            value = None if isinstance(line.value, str) else line.value
            out += self.engine.on_sequence_event(
                line.device, line.sequence, reading_id, time_ns, value=value, tags=line.tags, now_ns=self.wall_ns
            )
            return out
        self.readings += 1
        reading = Reading(line.device, "telemetry", time_ns, line.field_values(), line.tags, reading_id, line.seq)
        out += self.engine.on_reading(reading, self.wall_ns)
        event = self.tracker.observe(reading)
        if event is not None:
            self.events += 1
            out += self.engine.on_sequence_event(
                event.device, event.kind, event.reading_id, event.time_ns, value=event.n, tags=reading.tags,
                now_ns=self.wall_ns,
            )  # fmt: skip
        return out


def _load(file: Path) -> RuleSet:
    try:
        return load_rules(file)
    except ConfigError as exc:
        exit_with_error(exc, EXIT_INVALID)


@rules_app.command()
def check(file: RulesFile) -> None:
    """Validate a rules file: print one line a rule, or every error naming the rule and the key (exit 2)."""
    ruleset = _load(file)
    kinds = Counter(rule.kind for rule in ruleset.rules)
    counted = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    typer.echo(f"{file}: {len(ruleset)} rule{'' if len(ruleset) == 1 else 's'}" + (f" ({counted})" if counted else ""))
    for rule in ruleset.rules:
        typer.echo(f"  {describe_rule(rule)}")


def _show(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_alert(alert: Alert) -> str:
    """One transition as `promtool test rules` would think of it: when, what, which, why."""
    parts = [
        rfc3339(alert.at_ns),
        f"{alert.transition:<9}",
        alert.rule,
        f"device={alert.device}",
        f"value={_show(alert.value)}",
        f"threshold={_show(alert.threshold)}",
        f"reading={_show(alert.reading_id)}",
        f"since={rfc3339(alert.starts_at_ns)}",
    ]
    if alert.ends_at_ns is not None:
        parts.append(f"ended={rfc3339(alert.ends_at_ns)}")
    return "  ".join(parts)


@rules_app.command()
def test(
    file: RulesFile,
    readings: Annotated[Path, typer.Option("--readings", "-r", help="Readings to replay, JSON lines (format above).")],
    at: Annotated[
        str | None,
        typer.Option(help="Run the timers once more at this wall time: RFC 3339, epoch, or +DURATION after the end."),
    ] = None,
    pending: Annotated[bool, typer.Option(help="Also show pending and cancelled transitions.")] = False,
    output: Annotated[Literal["text", "jsonl"], typer.Option(help="text, or one JSON object a transition.")] = "text",
) -> None:
    """Replay recorded readings through the rules and print every transition, like `promtool test rules`.

    R.jsonl holds one JSON object a line. A reading:
    {"device": "boiler-1", "time": "2026-01-01T00:00:00Z", "fields": {"temperature": 91.5}}
    with optional "tags", "id", "seq" and "received" (wall time; default: "time"),
    or "metric" and "value" instead of "fields".

    A sequence event: {"device": "boiler-1", "time": 1767225600, "sequence": "reset"}.

    A wall-clock step: {"tick": "2026-01-01T00:10:00Z"}. Times are RFC 3339 or epoch numbers.
    """
    ruleset = _load(file)
    try:
        lines = read_replay(readings)
    except ValueError as exc:
        exit_with_error(exc, EXIT_INVALID)
    replay = Replay(AlertEngine(ruleset, report_pending=pending, clock=lambda: replay.wall_ns or 0))
    transitions: Counter[str] = Counter()

    def emit(alerts: list[Alert]) -> None:
        for alert in alerts:
            transitions[alert.transition] += 1
            if output == "jsonl":
                sys.stdout.buffer.write(orjson.dumps(alert_document(alert)) + b"\n")
                sys.stdout.flush()
            else:
                typer.echo(format_alert(alert))

    for number, line in lines:
        emit(replay.feed(number, line))
    if at is not None:
        try:
            end = _stamp(at, replay.wall_ns or 0)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--at") from None
        emit(replay.advance(end))
    stats = replay.engine.stats
    counted = ", ".join(f"{n} {kind}" for kind, n in sorted(transitions.items())) or "none"
    typer.echo(
        f"# {replay.readings} readings, {replay.events} sequence events replayed"
        + (f" up to {rfc3339(replay.wall_ns)}" if replay.wall_ns is not None else "")
        + f"; transitions: {counted}; stale (not newer than the last evaluated) {stats.stale}"
        + f", non-numeric {stats.non_numeric}",
        err=True,
    )
