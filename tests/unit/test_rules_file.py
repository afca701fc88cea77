"""The rules file: errors name the rule and the key; the example parses; `gateway rules check` and `test`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from gateway.alerts import load_rules, parse_rules
from gateway.alerts.conditions import overlap
from gateway.alerts.durations import format_duration, parse_duration
from gateway.alerts.rules import (
    Band,
    Comparison,
    DeadmanRule,
    RangeRule,
    RateRule,
    RuleSet,
    Selector,
    SequenceRule,
    ThresholdRule,
)
from gateway.errors import ConfigError
from gateway.tools.rules import rules_app
from tests.support import ROOT

EXAMPLE = ROOT / "config" / "rules.example.yaml"
RULE_MODELS = [RuleSet, Selector, Comparison, Band, ThresholdRule, RangeRule, RateRule, DeadmanRule, SequenceRule]


def hot(**extra: Any) -> dict[str, Any]:
    return {"name": "hot", "kind": "threshold", "metric": "temp", "op": ">", "value": 90, **extra}


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        pytest.param([hot(**{"for": "5"})], "rules[0] (name 'hot'): for: not a duration: '5'", id="bare-number"),
        pytest.param([hot(**{"for": 30})], "rules[0] (name 'hot'): for: a duration is a string", id="int-duration"),
        pytest.param([hot(fore="1m")], "rules[0] (name 'hot'): fore: unknown key", id="typo"),
        pytest.param([hot(), hot()], "rules[1] (name 'hot'): name: already used by rules[0]", id="duplicate"),
        pytest.param([{"kind": "deadman", "for": "1m"}], "rules[0]: name: required key is missing", id="no-name"),
        pytest.param([hot(kind="treshold")], "rules[0] (name 'hot'): kind: must be one of threshold", id="bad-kind"),
        pytest.param([hot(op="=>")], "rules[0] (name 'hot'): op: Input should be '>'", id="bad-op"),
        pytest.param([hot(value="warm")], "rules[0] (name 'hot'): value: '>' needs a number", id="string-order"),
        pytest.param(
            [hot(clear={"op": "<", "value": 95})],
            "rules[0] (name 'hot'): clear: `< 95.0` holds together with the firing condition `> 90.0`",
            id="clear-overlaps",
        ),
        pytest.param(
            [hot(clear={"op": "<", "value": 85, "for": "1m"})],
            "rules[0] (name 'hot'): clear.for: unknown key",
            id="nested-key",
        ),
        pytest.param(
            [hot(), {"name": "h", "kind": "range", "metric": "h", "min": 80, "max": 40}],
            "rules[1] (name 'h'): min: must be below max",
            id="range-inverted",
        ),
        pytest.param(
            [{"name": "h", "kind": "range", "metric": "h", "min": 40, "max": 80, "clear": {"max": 90}}],
            "rules[0] (name 'h'): clear.max: must be at most max",
            id="clear-band-outside",
        ),
        pytest.param(
            [{"name": "r", "kind": "rate", "metric": "t", "max": 2, "clear": 3}],
            "rules[0] (name 'r'): clear: must be at most max",
            id="rate-clear-above-max",
        ),
        pytest.param([{"name": "d", "kind": "deadman"}], "rules[0] (name 'd'): for: required key", id="deadman-for"),
        pytest.param(
            [{"name": "s", "kind": "sequence", "events": ["reboot"]}],
            "rules[0] (name 's'): events.0: Input should be 'gap', 'reset' or 'out_of_order'",
            id="sequence-event",
        ),
        pytest.param([hot(name="a/b")], "rules[0] (name 'a/b'): name: String should match pattern", id="topic-unsafe"),
    ],
)
def test_errors_name_rule_and_key(rules: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules({"rules": rules})
    assert message in str(caught.value)


def test_all_errors_are_listed() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules({"rules": [hot(fore="1m"), hot(name="cold", op="~")]})
    assert str(caught.value).splitlines()[1:] == [
        "  rules[0] (name 'hot'): fore: unknown key (value '1m')",
        "  rules[1] (name 'cold'): op: Input should be '>', '>=', '<', '<=', '==' or '!=' (value '~')",
    ]


@pytest.mark.parametrize("model", RULE_MODELS, ids=lambda m: m.__name__)
def test_every_field_has_a_description(model: type[BaseModel]) -> None:
    assert [name for name, field in model.model_fields.items() if not (field.description or "").strip()] == []


def test_example_file_has_every_kind_and_parses() -> None:
    ruleset = load_rules(EXAMPLE)
    assert sorted(rule.kind for rule in ruleset.rules) == ["deadman", "range", "rate", "sequence", "threshold"]


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_rules(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- name: x\n")
    with pytest.raises(ConfigError, match="must hold a mapping with a `rules` list"):
        load_rules(listed)


@pytest.mark.parametrize(
    ("text", "ns"),
    [("30s", 30 * 10**9), ("5m", 300 * 10**9), ("1h30m", 5400 * 10**9), ("250ms", 250 * 10**6), ("1.5s", 15 * 10**8)],
)
def test_durations(text: str, ns: int) -> None:
    assert parse_duration(text) == ns
    assert parse_duration(format_duration(ns)) == ns


@pytest.mark.parametrize(
    ("fire", "clear", "overlapping"),
    [
        ((">", 90.0), ("<", 85.0), False),
        ((">", 90.0), ("<=", 90.0), False),
        ((">=", 90.0), ("<=", 90.0), True),
        ((">", 90.0), ("<", 95.0), True),
        (("==", 1.0), ("==", 0.0), False),
        (("!=", 1.0), ("==", 0.0), True),
        (("==", "fault"), ("!=", "fault"), False),
        (("!=", "ok"), ("==", "fault"), True),
    ],
)
def test_clear_must_not_overlap(fire: tuple[str, float], clear: tuple[str, float], overlapping: bool) -> None:
    assert (overlap(fire, clear) is not None) == overlapping


# -- the command line ----------------------------------------------------------------------------------------

runner = CliRunner()


def test_check_prints_a_summary() -> None:
    result = runner.invoke(rules_app, ["check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{EXAMPLE}: 5 rules (1 deadman, 1 range, 1 rate, 1 sequence, 1 threshold)"
    assert "  boiler_hot [threshold, critical]: temperature > 90.0, clear < 85.0, for 30s; boiler-*" in lines


def test_check_names_rule_and_key_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text(yaml.safe_dump({"rules": [hot(), hot(name="cold", op="<", value=0, **{"for": "soon"})]}))
    result = runner.invoke(rules_app, ["check", str(bad)])
    assert result.exit_code == 2
    assert "rules[1] (name 'cold'): for: not a duration: 'soon'" in result.stderr


def _write_jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_test_replays_and_prints_transitions(tmp_path: Path) -> None:
    readings = _write_jsonl(
        tmp_path / "r.jsonl",
        [
            {"device": "boiler-1", "time": "2026-01-01T00:00:00Z", "fields": {"temperature": 91}, "id": "a", "seq": 1},
            {"device": "boiler-1", "time": "2026-01-01T00:00:40Z", "metric": "temperature", "value": 92, "seq": 2},
            {"device": "boiler-1", "time": 1767225700, "metrics": {"temperature": 80}, "id": "c", "seq": 3},
            {"device": "boiler-1", "time": "2026-01-01T00:04:00Z", "fields": {"temperature": 80}, "id": "d", "seq": 1},
            {"tick": "2026-01-01T00:05:00Z"},
        ],
    )
    result = runner.invoke(rules_app, ["test", str(EXAMPLE), "--readings", str(readings), "--at", "+10m"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "2026-01-01T00:00:40.000Z  firing     boiler_hot  device=boiler-1  value=92  threshold=90  reading=line 2  "
        "since=2026-01-01T00:00:00.000Z",
        "2026-01-01T00:04:00.000Z  resolved   boiler_hot  device=boiler-1  value=80  threshold=90  reading=d  "
        "since=2026-01-01T00:00:00.000Z  ended=2026-01-01T00:04:00.000Z",
        "2026-01-01T00:04:00.000Z  firing     device_rebooted  device=boiler-1  value=1  threshold=-  reading=d  "
        "since=2026-01-01T00:04:00.000Z",
        "2026-01-01T00:15:00.000Z  firing     device_silent  device=boiler-1  value=660  threshold=300  reading=-  "
        "since=2026-01-01T00:09:00.000Z",
        "2026-01-01T00:15:00.000Z  resolved   device_rebooted  device=boiler-1  value=1  threshold=-  reading=-  "
        "since=2026-01-01T00:04:00.000Z  ended=2026-01-01T00:15:00.000Z",
    ]
    assert "4 readings, 1 sequence events replayed up to 2026-01-01T00:15:00.000Z" in result.stderr


def test_test_jsonl_output_and_pending(tmp_path: Path) -> None:
    readings = _write_jsonl(
        tmp_path / "r.jsonl",
        [
            {"device": "boiler-1", "time": 0, "metric": "temperature", "value": 95},
            {"device": "boiler-1", "time": 10, "metric": "temperature", "value": 70},
            {"device": "boiler-1", "time": 20, "sequence": "reset", "id": "boot"},
        ],
    )
    result = runner.invoke(rules_app, ["test", str(EXAMPLE), "-r", str(readings), "--pending", "--output", "jsonl"])
    assert result.exit_code == 0, result.output
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["rule"], d["transition"], d["reading_id"]) for d in docs] == [
        ("boiler_hot", "pending", "line 1"),
        ("boiler_hot", "cancelled", "line 2"),
        ("device_rebooted", "firing", "boot"),
    ]
    assert docs[0]["labels"] == {"team": "heating"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param('{"device": "d", "fields": {"t": 1}}', "r.jsonl:4: needs `device` and `time`", id="no-time"),
        pytest.param('{"device": "d", "time": "today", "fields": {"t": 1}}', "r.jsonl:4: ts 'today'", id="time"),
        pytest.param('{"device": "d", "time": 0}', "r.jsonl:4: a reading needs exactly one of", id="no-fields"),
        pytest.param('{"device": "d", "time": 0, "metric": "t", "value": 1, "colour": 3}', "r.jsonl:4: colour: Extra",
                     id="unknown-key"),
        pytest.param('{"device": "d", "time": 0, "sequence": "boot"}', "r.jsonl:4: sequence: Input should be",
                     id="bad-event"),
        pytest.param("{not json", "r.jsonl:4: Invalid JSON", id="not-json"),
    ],
)  # fmt: skip
def test_test_names_the_bad_line(tmp_path: Path, line: str, message: str) -> None:
    readings = tmp_path / "r.jsonl"
    readings.write_text('# comment\n\n{"tick": 0}\n' + line + "\n")  # comments and blank lines are skipped
    result = runner.invoke(rules_app, ["test", str(EXAMPLE), "--readings", str(readings)])
    assert result.exit_code == 2
    assert message in result.stderr, result.stderr


def test_test_refuses_an_invalid_rules_file(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules:\n  - name: x\n    kind: deadman\n")
    readings = _write_jsonl(tmp_path / "r.jsonl", [{"tick": 0}])
    result = runner.invoke(rules_app, ["test", str(bad), "--readings", str(readings)])
    assert result.exit_code == 2
    assert "rules[0] (name 'x'): for: required key is missing" in result.stderr
