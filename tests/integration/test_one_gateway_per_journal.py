"""Two gateways where one belongs, with real processes (Mosquitto, VictoriaMetrics, gateways).

1. Two gateways on one journal file (`docker compose --scale gateway=2` with a shared volume): the second is
   refused at start (exit status 2, a message naming the journal and the pid holding it) while the first keeps
   running and stores every reading exactly once. `gateway deadletter list` still opens the journal meanwhile.
2. Two gateways with one mqtt.client_id (separate journals) take the session from each other again and again:
   the takeovers are counted and logged as what they most likely are.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from device_sim.blast import blast, encode_all
from device_sim.fleet import FleetSpec, generate
from tests.support.gateway_proc import GatewayProcess
from tests.support.servers import Mosquitto, VictoriaMetrics, free_port
from tests.support.storecheck import compare
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration

TAKEOVERS = "gateway_session_takeovers"


def _env(broker: Mosquitto, influx_url: str, client_id: str, journal: Path) -> dict[str, str]:
    return {
        "GATEWAY_MQTT__URL": broker.url,
        "GATEWAY_MQTT__CLIENT_ID": client_id,
        "GATEWAY_INFLUX__URL": influx_url,
        "GATEWAY_INFLUX__TOKEN": "test-token",
        "GATEWAY_JOURNAL__PATH": str(journal),
    }


def _command(gateway: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m gateway <args>` with that gateway's environment; at most 20 s."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=gateway.env,
        cwd=gateway.workdir,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_a_second_gateway_on_the_same_journal_exits_2_and_the_first_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    total = 4000
    fleet = generate(FleetSpec(devices=40, messages=total, seed=21))
    packets = encode_all(fleet.outgoing)
    journal = tmp_path / "shared" / "journal.db"
    first = GatewayProcess(tmp_path / "gw1", _env(mosquitto, victoria.url, "gw-shared-1", journal), config=None)
    with first:
        assert blast(packets[: total // 2], mosquitto.url, client_id="pub-1").acknowledged == total // 2
        second = GatewayProcess(tmp_path / "gw2", _env(mosquitto, victoria.url, "gw-shared-2", journal), config=None)
        second.workdir.mkdir(parents=True)
        # On main this second gateway runs (and the test times out here): it must be refused at once.
        refused = _command(second, "run")
        message = refused.stderr.strip().splitlines()[-1]
        print(f"\nsecond gateway: exit {refused.returncode}: {message}")
        assert refused.returncode == 2, refused.stderr
        assert message.startswith(f"error: journal.path {str(journal)!r} is in use by another gateway (pid ")
        assert f"pid {first.proc.pid if first.proc else -1} on host " in message
        assert "Traceback" not in refused.stderr

        # The offline tools still open the journal while the gateway holds it.
        listed = _command(second, "deadletter", "list")
        assert listed.returncode == 0, listed.stderr
        assert f"no rejected messages in {journal}" in listed.stdout

        assert blast(packets[total // 2 :], mosquitto.url, client_id="pub-2").acknowledged == total - total // 2
        stored = first.wait_for('gateway_readings_stored{sink="influx"}', total, timeout_s=30)
        assert stored == total, first.log_tail()
        assert first.proc is not None and first.proc.poll() is None
        assert first.metrics()["gateway_journal_bytes"] >= 0
    victoria.wait_for_samples(total * 4, '{__name__=~"telemetry_.*"}', timeout=20)
    result = compare(fleet.manifest, victoria)
    assert (result.missing, result.extra, result.mismatched, result.duplicated_samples) == ([], [], [], 0)
    assert result.stored == total


def test_two_gateways_with_one_client_id_log_the_session_takeovers_and_count_them(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # no readings flow here: the store is never written
    fast_reconnects = {"GATEWAY_MQTT__RECONNECT_MIN_S": "0.1", "GATEWAY_MQTT__RECONNECT_MAX_S": "0.3"}
    twins = [
        GatewayProcess(
            tmp_path / f"gw{i}",
            {**_env(mosquitto, nowhere, "gw-twin", tmp_path / f"gw{i}" / "journal.db"), **fast_reconnects},
            config=None,
        )
        for i in range(2)
    ]
    # Mosquitto 2.0 closes the older connection without a reason (no MQTT 5 reason 142).
    pattern = re.compile(
        r"the broker closed this gateway's connection (\d+) times in \d+ s \((session taken over|without a reason)\): "
        r"most likely another client uses mqtt.client_id 'gw-twin'"
    )
    try:
        for twin in twins:
            twin.start()
        found: list[re.Match[str] | None] = []

        def a_takeover_logged() -> bool:
            found[:] = [pattern.search(twin.log_text()) for twin in twins]
            return any(found)

        wait_until(
            a_takeover_logged, 20, "a session takeover in either log", lambda: "\n".join(t.log_tail(10) for t in twins)
        )
        counted = [twin.metrics()[TAKEOVERS] for twin in twins]
        print(f"\ntakeovers counted: {counted}")
        for match, takeovers in zip(found, counted, strict=True):
            if match:
                assert int(match[1]) >= 3
                assert takeovers >= int(match[1])
    finally:
        for twin in twins:
            twin.kill()
