"""The two accounting identities, with real Mosquitto, VictoriaMetrics and gateway processes: messages and
readings are counted apart (a message may carry several readings, or none to store), and each adds up."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from tests.support.gateway_proc import publish, sqlite_gateway, sqlite_rows
from tests.support.servers import Mosquitto, VictoriaMetrics
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration


def _native(device: str, readings: list[tuple[str, int]]) -> tuple[str, bytes]:
    """One message carrying several readings (a JSON array), each with an id and a device timestamp (ms)."""
    body = [{"id": rid, "ts": ts, "metrics": {"t": ts % 100}} for rid, ts in readings]
    return f"devices/{device}/telemetry", orjson.dumps(body)


def _total(metrics: dict[str, float], family: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(f"{family}{{"))


def test_messages_and_readings_each_add_up(tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics) -> None:
    base_ms = int(time.time() * 1000) - 60_000
    originals = [_native("dev-1", [(f"m{n}-{k}", base_ms + 3 * n + k) for k in range(3)]) for n in range(20)]
    messages = [
        *originals,  # 20 messages, 60 new readings
        *originals[:5],  # 5 messages whose 15 readings were all seen: duplicate messages
        _native("dev-1", [("m0-0", base_ms), ("late-1", base_ms + 500)]),  # accepted: 1 new, 1 duplicate
        *[("devices/dev-1/telemetry", b"{not json")] * 3,  # 3 rejected
        *[("v/dev-2/rssi", b"-70")] * 2,  # 2 valid, nothing to store: the mapping excludes rssi
        *[("v/dev-2/temp", b"%d" % n) for n in range(4)],  # 4 accepted, one reading each
    ]
    workdir = tmp_path / "gw"
    gateway = sqlite_gateway(
        workdir,
        mosquitto.url,
        "gw-accounting",
        influx={"url": victoria.url, "token": "t", "flush_interval_ms": 20},
        mappings=[
            {"topic": "devices/{device}/telemetry", "format": "native"},
            {"topic": "v/{device}/{metric}", "format": "value", "exclude": ["rssi"]},
        ],
    )
    with gateway:
        publish(mosquitto.url, messages)
        assert gateway.wait_for("gateway_messages_received", len(messages), 20) == len(messages)
        wait_until(lambda: sqlite_rows(workdir / "gateway.db") == 65, 20, "65 readings in SQLite", gateway.log_tail)
        assert victoria.wait_for_samples(65, timeout=20) == 65
        wait_until(lambda: gateway.metrics()['gateway_readings_stored{sink="influx"}'] == 65, 10, "influx counted")
        metrics = gateway.metrics()

    # Messages: each counted once, by what became of it.
    assert {
        "received": metrics["gateway_messages_received"],
        "accepted": metrics["gateway_messages_accepted"],
        "duplicate": metrics["gateway_messages_duplicate"],
        "empty": metrics["gateway_messages_empty"],
        "rejected": _total(metrics, "gateway_messages_rejected"),
        "ignored": _total(metrics, "gateway_messages_ignored"),
    } == {"received": 35, "accepted": 25, "duplicate": 5, "empty": 2, "rejected": 3, "ignored": 0}
    assert metrics["gateway_messages_received"] == (
        metrics["gateway_messages_accepted"]
        + metrics["gateway_messages_duplicate"]
        + metrics["gateway_messages_empty"]
        + _total(metrics, "gateway_messages_rejected")
        + _total(metrics, "gateway_messages_ignored")
    )
    # Readings: accepted = stored + refused, in every sink, once the journal is drained.
    assert (metrics["gateway_readings_accepted"], metrics["gateway_readings_duplicate"]) == (65, 16)
    for sink in ("influx", "sqlite"):
        stored = metrics[f'gateway_readings_stored{{sink="{sink}"}}']
        refused = metrics[f'gateway_readings_refused{{sink="{sink}"}}']
        assert (stored, refused) == (65, 0), sink
        assert metrics["gateway_readings_accepted"] == stored + refused
