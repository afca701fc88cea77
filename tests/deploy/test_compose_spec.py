"""The docker-compose file, checked without Docker: against the Compose Specification's JSON schema, and every
variable it uses documented in .env.example (placeholders, not secrets).
"""

from __future__ import annotations

import json

import jsonschema

from tests.support import ROOT
from tests.support.compose_files import SCHEMA, compose, env_example, env_values, variables_used


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_bad_compose_file() -> None:
    """The vendored schema really constrains services (a typo'd key, a wrong depends_on condition)."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    bad = compose()
    bad["services"]["gateway"]["healthchek"] = {}
    bad["services"]["mosquitto"]["depends_on"]["mosquitto-init"]["condition"] = "service_done"
    assert len(list(validator.iter_errors(bad))) == 2


def test_every_variable_the_compose_file_uses_is_documented_in_env_example_and_vice_versa() -> None:
    used = variables_used()
    documented = env_example()
    assert sorted(set(used) - set(documented)) == [], "used in docker-compose.yml, missing from .env.example"
    assert sorted(set(documented) - set(used)) == [], "in .env.example, used nowhere in docker-compose.yml"
    for name, var in documented.items():
        assert var.comment, f".env.example: {name} has no comment line above it"
        for use in used[name]:
            if use.op in ("?", ":?"):
                assert var.value, f".env.example: {name} is required by docker-compose.yml and must have a value"
            if use.op in ("-", ":-") and use.arg:  # an empty default: optional, the example shows a use
                assert use.arg == var.value, f"{name}: compose default {use.arg!r}, .env.example says {var.value!r}"


def test_env_example_holds_placeholders_not_secrets() -> None:
    env = env_values()
    secrets = {name: value for name, value in env.items() if "PASSWORD" in name or "TOKEN" in name}
    assert len(secrets) >= 5
    for name, value in secrets.items():
        assert value.startswith("change-me"), f"{name} must be an obvious placeholder, got {value!r}"
    for entry in env["MQTT_DEVICES"].split():
        assert entry.partition(":")[2].startswith("change-me"), entry
    assert len(env["INFLUXDB_PASSWORD"]) >= 8, "InfluxDB refuses passwords shorter than 8 characters"


def test_env_file_stays_out_of_git_and_of_the_image() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()
