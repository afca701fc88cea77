"""The compose Grafana: its provisioning, and the dashboards' Flux queries using only the measurements, fields and
tags the gateway writes.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from device_sim.cli import app as device_sim_app
from gateway.config.schema import SELF_MEASUREMENT, GatewayConfig
from gateway.telemetry import self_metrics
from tests.support.compose_files import DASHBOARD_PROVIDER, DASHBOARDS, DATASOURCE, mounts, simulator_argv

# The gateway's own counters in InfluxDB (issue 7: "the same counters are written every N seconds to the sinks
# as measurement `gateway`"): one point per interval, tag `instance`, float fields named after the Prometheus
# metrics without the `gateway_` prefix; labelled counters are summed over their labels. The dashboards use
# exactly these; the writer must write at least these.
GATEWAY_MEASUREMENT = SELF_MEASUREMENT
GATEWAY_TAGS = frozenset({"instance"})
# What gateway/telemetry/self_metrics.py writes as measurement `gateway`; the dashboards must use exactly these.
GATEWAY_FIELDS = frozenset(self_metrics.FIELDS)


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in DASHBOARDS}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # inside rows


def flux_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, Flux) for every panel target and every query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"{dashboard['title']} / {panel['title']}", target["query"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"{dashboard['title']} / variable {variable['name']}", variable["query"]


_COMPARISON = r"""r(?:\.{col}|\["{col}"\])\s*(?P<op>==|!=|=~|!~)\s*(?P<value>"[^"]*"|\S+)"""
_MEASUREMENT = re.compile(_COMPARISON.format(col="_measurement"))
_FIELD = re.compile(_COMPARISON.format(col="_field"))
_COLUMN = re.compile(r"""\br(?:\.([A-Za-z_][A-Za-z0-9_]*)|\["([^"]+)"\])""")
_COLUMN_LISTS = re.compile(r"columns:\s*\[([^\]]*)\]")


@dataclass(frozen=True)
class FluxNames:
    measurements: frozenset[str]
    fields: frozenset[str]
    columns: frozenset[str]


def flux_names(flux: str) -> FluxNames:
    """The measurements and fields a query compares with (only `== "literal"`), and every column it names."""
    found: dict[str, set[str]] = {"measurements": set(), "fields": set()}
    for key, pattern in (("measurements", _MEASUREMENT), ("fields", _FIELD)):
        for match in pattern.finditer(flux):
            op, value = match["op"], match["value"]
            assert op == "==" and value.startswith('"'), f'only == "literal" can be checked, got {match.group()}'
            found[key].add(value.strip('"'))
    columns = {a or b for a, b in _COLUMN.findall(flux)}
    for listed in _COLUMN_LISTS.findall(flux):
        columns |= {name.strip().strip('"') for name in listed.split(",") if name.strip()}
    return FluxNames(frozenset(found["measurements"]), frozenset(found["fields"]), frozenset(columns))


@dataclass(frozen=True)
class SimulatedData:
    fields: dict[str, set[str]]  # measurement -> field names
    tags: set[str]


def simulated_data() -> SimulatedData:
    """What the compose simulator sends, from its own manifest: its command, as a short dry run."""
    with tempfile.TemporaryDirectory() as scratch:
        manifest = Path(scratch) / "manifest.jsonl"
        args = [*simulator_argv(), "--messages", "500", "--dry-run", "--manifest", str(manifest)]
        result = CliRunner().invoke(device_sim_app, args)
        assert result.exit_code == 0, result.output
        data = SimulatedData({}, set())
        for line in manifest.read_text().splitlines():
            record = json.loads(line)
            if record["type"] == "reading":
                data.fields.setdefault(record.get("measurement", "telemetry"), set()).update(record["fields"])
                data.tags.update(record["tags"])
        return data


def test_grafana_provisions_the_datasource_the_dashboards_use_and_loads_them_from_the_mount() -> None:
    datasource = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]
    provider = yaml.safe_load(DASHBOARD_PROVIDER.read_text())["providers"][0]
    grafana = mounts("grafana")
    assert grafana[provider["options"]["path"]] == "./config/grafana/dashboards"
    assert grafana["/etc/grafana/provisioning"] == "./config/grafana/provisioning"
    assert {path.stem for path in DASHBOARDS} == {"fleet-overview", "device", "gateway-health"}
    uids = [d["uid"] for d in dashboards().values()]
    assert len(set(uids)) == len(uids)
    for dashboard in dashboards().values():
        for panel in panels(dashboard):
            refs = [panel.get("datasource"), *(t.get("datasource") for t in panel.get("targets", []))]
            for ref in filter(None, refs):
                assert ref == {"type": "influxdb", "uid": datasource["uid"]}, panel["title"]


def test_dashboards_query_only_measurements_and_fields_the_gateway_writes(gateway_config: GatewayConfig) -> None:
    simulated = simulated_data()
    assert set(simulated.fields) <= {m.measurement for m in gateway_config.mappings}
    writes = {**simulated.fields, GATEWAY_MEASUREMENT: set(GATEWAY_FIELDS)}
    # Tags: the gateway's `device`, the payloads' (the simulator's), the mappings' static ones, `instance`.
    static_tags = {tag for m in gateway_config.mappings for tag in m.tags}
    columns = {"_measurement", "_field", "_value", "_time", "_start", "_stop", "device"}
    columns |= simulated.tags | static_tags | GATEWAY_TAGS
    used_gateway_fields: set[str] = set()
    queries = [q for d in dashboards().values() for q in flux_queries(d)]
    assert len(queries) >= 15
    for where, flux in queries:
        names = flux_names(flux)
        assert names.measurements, f"{where}: no r._measurement filter"
        assert names.measurements <= set(writes), f"{where}: unknown measurement in {sorted(names.measurements)}"
        allowed_fields = set().union(*(writes[m] for m in names.measurements))
        assert names.fields <= allowed_fields, f"{where}: {sorted(names.fields - allowed_fields)} not written"
        if names.measurements == {GATEWAY_MEASUREMENT}:
            used_gateway_fields |= names.fields
        # A projection's output names (field, value) are not data columns; r.<name> and columns: [...] are.
        unknown = names.columns - columns - {"field", "value"}
        assert not unknown, f"{where}: columns {sorted(unknown)} are not tags or columns the gateway writes"
        assert "v.defaultBucket" in flux, f"{where}: use the data source's bucket, not a fixed one"
    assert used_gateway_fields == GATEWAY_FIELDS, "every field of the gateway measurement is on a dashboard"


def test_device_dashboard_is_templated_by_device() -> None:
    board = dashboards()["device"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"device"}
    assert '"device"' in variables["device"]["query"]
    for where, flux in flux_queries(board):
        if "variable" not in where:
            assert 'r.device == "${device}"' in flux, f"{where}: not filtered by the chosen device"


@pytest.mark.parametrize(
    ("flux", "message"),
    [
        pytest.param('r._measurement =~ /tele.*/ and r._field == "x"', "only ==", id="regex-measurement"),
        pytest.param('r["_field"] != "temperature"', "only ==", id="not-equal-field"),
    ],
)
def test_flux_check_refuses_what_it_cannot_verify(flux: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        flux_names(flux)


def test_flux_check_reads_both_column_syntaxes() -> None:
    names = flux_names('filter(fn: (r) => r["_measurement"] == "gateway" and r._field == "journal_bytes")')
    assert names == FluxNames(
        frozenset({"gateway"}), frozenset({"journal_bytes"}), frozenset({"_measurement", "_field"})
    )
