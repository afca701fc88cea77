"""Store outages, end to end, with real processes: Mosquitto, the gateway (influx sink only), VictoriaMetrics.

1. VictoriaMetrics away for 60 s under a steady load: the journal buffers, acknowledgements go on, the outbox
   drains once the store is back, memory stays flat, and every reading is stored exactly once.
2. The same with the smallest journal (1 MiB): acknowledgements stop once it is full (back-pressure), the broker
   keeps the rest, and everything is stored exactly once when the store is back.
3. A scripted HTTP double in front of VictoriaMetrics: 429 with Retry-After, 503, and a 400 for one reading. The
   waits are honoured, the refused reading alone is dead-lettered, everything else is stored exactly once.

The gateway runs without a config file (`config=None`): the environment alone configures it, so only the influx
sink runs and the journal lives in `tmp_path`.
"""

from __future__ import annotations

import gzip
import itertools
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import orjson
import pytest

from device_sim.fleet import Fleet, FleetSpec, generate
from device_sim.manifest import Manifest
from device_sim.publisher import PublishStats, publish
from device_sim.wire import VALID, Outgoing, topic_for
from tests.support.gateway_proc import GatewayProcess
from tests.support.mqtt import MqttTap
from tests.support.servers import Mosquitto, VictoriaMetrics
from tests.support.storecheck import compare
from tests.support.waits import wait_until

pytestmark = pytest.mark.integration

ACKED = "gateway_messages_acknowledged"
RECEIVED = "gateway_messages_received"
JOURNAL_BYTES = "gateway_journal_bytes"
BACKPRESSURE = "gateway_backpressure"
CONNECTED = "gateway_broker_connected"
RETRIES = 'gateway_sink_retries{sink="influx"}'
STORED = 'gateway_readings_stored{sink="influx"}'
PENDING_CHUNKS = 'gateway_sink_pending_chunks{sink="influx"}'
TELEMETRY = '{__name__=~"telemetry_.*"}'
MIB = 1 << 20


# --- helpers ------------------------------------------------------------------------------------------------


def _gateway(tmp_path: Path, broker: Mosquitto, influx_url: str, **extra: str) -> GatewayProcess:
    """The gateway with the influx sink only (no config file, so no sqlite section), journal in tmp_path."""
    env = {
        "GATEWAY_MQTT__URL": broker.url,
        "GATEWAY_MQTT__CLIENT_ID": f"gw-outage-{broker.port}",
        "GATEWAY_INFLUX__URL": influx_url,
        "GATEWAY_INFLUX__TOKEN": "test-token",
        "GATEWAY_JOURNAL__PATH": str(tmp_path / "journal.db"),
        **extra,
    }
    return GatewayProcess(tmp_path / "gateway", env, config=None)


def _rss_mb(gateway: GatewayProcess) -> float:
    assert gateway.proc is not None
    for line in Path(f"/proc/{gateway.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/<pid>/status")


def _samples_expected(manifest: Manifest) -> int:
    return sum(sum(1 for v in r.fields.values() if not isinstance(v, str)) for r in manifest.readings)


def _assert_stored_exactly_once(manifest: Manifest, vm: VictoriaMetrics) -> None:
    expected = _samples_expected(manifest)
    samples = vm.wait_for_samples(expected, TELEMETRY, timeout=60)
    result = compare(manifest, vm)
    print(
        f"  store: {result.stored} readings, {samples} samples (expected {len(manifest.readings)} / {expected}); "
        f"missing {len(result.missing)}, extra {len(result.extra)}, mismatched {len(result.mismatched)}, "
        f"duplicated samples {result.duplicated_samples}"
    )
    assert result.missing == [], f"{len(result.missing)} lost, e.g. {result.missing[:5]}"
    assert result.extra == [] and result.mismatched == [], (result.extra[:5], result.mismatched[:5])
    assert result.duplicated_samples == 0
    assert result.stored == len(manifest.readings)
    assert samples == expected


class Publisher:
    """`publish()` in a thread; `join()` returns its stats or re-raises what it raised."""

    def __init__(self, outgoing: list[Outgoing], url: str, rate: float) -> None:
        self.stats: PublishStats | None = None
        self.error: BaseException | None = None
        self.started = time.monotonic()

        def run() -> None:
            try:
                self.stats = publish(outgoing, url, qos=1, rate=rate)
            except BaseException as exc:
                self.error = exc

        self._thread = threading.Thread(target=run, name="publisher", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float) -> PublishStats:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the publisher did not finish"
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats


@pytest.fixture
def taps() -> Iterator[list[MqttTap]]:
    opened: list[MqttTap] = []
    yield opened
    for tap in opened:
        tap.close()


# --- 1. a 60 s outage under load ------------------------------------------------------------------------------

RATE = 500  # messages a second, from 200 devices
OUTAGE_S = 60


def test_store_outage_is_buffered_in_the_journal_and_drained_exactly_once(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    fleet = generate(FleetSpec(devices=200, messages=RATE * 80, seed=31))
    total = len(fleet.outgoing)
    with _gateway(tmp_path, mosquitto, victoria.url) as gateway:
        sender = Publisher(fleet.outgoing, mosquitto.url, rate=RATE)
        assert gateway.wait_for(STORED, 2000, timeout_s=30) >= 2000, gateway.log_tail()
        before = gateway.metrics()
        rss = {"before": _rss_mb(gateway)}

        victoria.stop()  # SIGTERM: VictoriaMetrics keeps what it has
        down_at = time.monotonic()
        peak_rss = rss["before"]
        print(f"\n  VictoriaMetrics down at {down_at - sender.started:.1f} s, acked {before[ACKED]:.0f}")
        while time.monotonic() - down_at < OUTAGE_S:
            time.sleep(5)  # the outage itself, sampled every 5 s
            m = gateway.metrics()
            peak_rss = max(peak_rss, _rss_mb(gateway))
            print(
                f"  +{time.monotonic() - down_at:4.0f} s  acked {m[ACKED]:7.0f}"
                f"  journal {m[JOURNAL_BYTES] / MIB:5.1f} MiB  pending chunks {m[PENDING_CHUNKS]:5.0f}"
                f"  retries {m[RETRIES]:3.0f}  rss {_rss_mb(gateway):5.1f} MB"
            )
        during = gateway.metrics()
        rss["during"] = _rss_mb(gateway)
        victoria.start()
        up_at = time.monotonic()

        # While the store was away, messages went on being acknowledged: the journal held their readings.
        acked_while_down = during[ACKED] - before[ACKED]
        assert acked_while_down >= 0.8 * RATE * OUTAGE_S, (acked_while_down, gateway.log_tail())
        assert during[JOURNAL_BYTES] > before[JOURNAL_BYTES] + 2 * MIB
        assert during[RETRIES] >= before[RETRIES] + 3
        assert during[PENDING_CHUNKS] > 0

        stats = sender.join(120)
        assert (stats.sent, stats.errors) == (total, 0), stats

        def drained() -> bool:
            m = gateway.metrics()
            return m[ACKED] >= total and m[STORED] >= total and m[PENDING_CHUNKS] == 0

        wait_until(drained, 90, "the backlog drained", lambda: (gateway.metrics(), gateway.log_tail()), interval=0.2)
        drained_s = time.monotonic() - up_at
        after = gateway.metrics()
        rss["after"] = _rss_mb(gateway)
        peak_rss = max(peak_rss, rss["after"])
        assert gateway.proc is not None and gateway.proc.poll() is None

    print(
        f"  outage {OUTAGE_S} s: acked {acked_while_down:.0f} while down ({acked_while_down / OUTAGE_S:.0f}/s), "
        f"journal peak {during[JOURNAL_BYTES] / MIB:.1f} MiB -> {after[JOURNAL_BYTES] / 1024:.1f} KiB after, "
        f"retries {during[RETRIES]:.0f}, drained {drained_s:.1f} s after VictoriaMetrics came back, "
        f"published {stats.sent} in {stats.elapsed_s:.1f} s"
    )
    print(
        "  gateway RSS: "
        + ", ".join(f"{k} {v:.1f} MB" for k, v in rss.items())
        + f", peak {peak_rss:.1f} MB (backlog peak {during[JOURNAL_BYTES] / MIB:.1f} MiB)"
    )
    assert after[PENDING_CHUNKS] == 0
    assert after[JOURNAL_BYTES] < 64 * 1024
    assert after[STORED] == total
    # Memory is bounded: the backlog lives in the journal file, not in the process. What does grow is bounded
    # by design: the sink's cache of recently committed chunks (20,000 readings at most) and the dedup window.
    assert peak_rss < 300
    assert rss["during"] - rss["before"] < 64, rss
    _assert_stored_exactly_once(fleet.manifest, victoria)


# --- 2. a full journal back-pressures the broker ----------------------------------------------------------------

BP_MESSAGES = 15_000  # 30 s at RATE


def test_full_journal_stops_acknowledging_and_the_broker_keeps_the_rest(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics, taps: list[MqttTap]
) -> None:
    fleet = generate(FleetSpec(devices=200, messages=BP_MESSAGES, seed=32))
    total = len(fleet.outgoing)
    incoming = MqttTap(
        mosquitto, "devices/+/telemetry", f"tap-devices-{mosquitto.port}", qos=0
    )  # what the broker receives from the devices
    taps.append(incoming)
    with _gateway(tmp_path, mosquitto, victoria.url, GATEWAY_JOURNAL__MAX_BYTES=str(MIB)) as gateway:
        sender = Publisher(fleet.outgoing, mosquitto.url, rate=RATE)
        assert gateway.wait_for(STORED, 500, timeout_s=30) >= 500, gateway.log_tail()
        victoria.stop()
        down_at = time.monotonic()

        assert gateway.wait_for(BACKPRESSURE, 1, timeout_s=30) == 1, (gateway.metrics(), gateway.log_tail())
        full_at = time.monotonic()
        first, seen_first = gateway.metrics(), incoming.count()
        time.sleep(6)  # the scenario: 6 s of a full journal, in which acks must stand still while devices publish
        second, seen_second = gateway.metrics(), incoming.count()
        assert sender.alive()
        print(
            f"\n  journal full {full_at - down_at:.1f} s after VictoriaMetrics went down: "
            f"{first[JOURNAL_BYTES] / 1024:.0f} KiB, acked {first[ACKED]:.0f} -> {second[ACKED]:.0f} in 6 s "
            f"while the broker received {seen_second - seen_first} more"
        )
        assert second[ACKED] == first[ACKED], "acknowledgements must stop while the journal is full"
        assert second[RECEIVED] - first[RECEIVED] <= 2000  # at most the in-flight window (mqtt.receive_maximum)
        assert second[BACKPRESSURE] == 1 and second[JOURNAL_BYTES] >= MIB
        # The devices keep publishing and the broker keeps what the gateway has not acknowledged.
        assert seen_second - seen_first >= 0.8 * RATE * 6
        assert seen_second - second[ACKED] >= 0.8 * RATE * 6
        assert second[CONNECTED] == 1
        log = gateway.log_path.read_text(errors="replace")
        assert "not acknowledging until the sinks catch up" in log, gateway.log_tail()

        # The scenario: the store stays away 20 s in all (well below 2 x keepalive: the gateway stops reading the
        # socket).
        time.sleep(max(0.0, 20 - (time.monotonic() - down_at)))
        victoria.start()
        up_at = time.monotonic()
        stats = sender.join(120)
        assert (stats.sent, stats.errors) == (total, 0), stats

        def caught_up() -> bool:
            m = gateway.metrics()
            return m[ACKED] >= total and m[STORED] >= total and m[PENDING_CHUNKS] == 0 and m[BACKPRESSURE] == 0

        wait_until(
            caught_up, 90, "the gateway caught up", lambda: (gateway.metrics(), gateway.log_tail()), interval=0.2
        )
        after = gateway.metrics()
        log = gateway.log_path.read_text(errors="replace")
        print(
            f"  caught up {time.monotonic() - up_at:.1f} s after VictoriaMetrics came back; acked {after[ACKED]:.0f}, "
            f"stored {after[STORED]:.0f}, journal {after[JOURNAL_BYTES] / 1024:.1f} KiB, "
            f"back-pressure episodes {log.count('not acknowledging until')}"
        )
        assert after[BACKPRESSURE] == 0 and after[CONNECTED] == 1
        assert "acknowledging resumes" in log
        assert after[STORED] == total
    _assert_stored_exactly_once(fleet.manifest, victoria)


# --- 3. 429 / 503 / 400 from the store --------------------------------------------------------------------------

POISON_DETAIL = "unable to parse 'poison': refused"
POISON_BODY = orjson.dumps({"code": "invalid", "message": POISON_DETAIL})
_POISON_FIELD = re.compile(rb"[ ,]poison=")


class Exchange(NamedTuple):
    received: float  # time.monotonic()
    answered: float
    status: int
    lines: int
    poison: bool


class ScriptedStore:
    """A reverse proxy in front of VictoriaMetrics: the first write requests get the scripted answers (status,
    headers), a batch holding a `poison` field gets a 400, everything else is forwarded."""

    def __init__(self, upstream: str, script: list[tuple[int, dict[str, str]]]) -> None:
        self.exchanges: list[Exchange] = []
        self._script = list(script)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                gzipped = self.headers.get("Content-Encoding") == "gzip"
                text = gzip.decompress(body) if gzipped else body
                poison = bool(_POISON_FIELD.search(text))
                with proxy._lock:
                    scripted = proxy._script.pop(0) if proxy._script else None
                if scripted is not None:
                    status, headers, answer = *scripted, b'{"code":"unavailable","message":"scripted"}'
                elif poison:
                    status, headers, answer = 400, {"Content-Type": "application/json"}, POISON_BODY
                else:
                    status, headers, answer = self._forward(body)
                answered = time.monotonic()  # before the client can have the answer: waits are measured from here
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                self.wfile.flush()
                with proxy._lock:
                    lines = len(text.splitlines())
                    proxy.exchanges.append(Exchange(received, answered, status, lines, poison))

            def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
                keep = ("Content-Type", "Content-Encoding", "Authorization")
                headers = {k: v for k, v in self.headers.items() if k in keep}
                request = urllib.request.Request(upstream + self.path, data=body, headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=10) as resp:
                        return resp.status, {}, resp.read()
                except urllib.error.HTTPError as err:
                    return err.code, {}, err.read()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="scripted-store", daemon=True)
        self._thread.start()

    def snapshot(self) -> list[Exchange]:
        with self._lock:
            return list(self.exchanges)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@pytest.fixture
def scripted_store(victoria: VictoriaMetrics) -> Iterator[ScriptedStore]:
    retry_after = {"Retry-After": "2", "Content-Type": "application/json"}
    store = ScriptedStore(victoria.url, [(429, retry_after), (429, retry_after), (503, {})])
    yield store
    store.close()


def _poison_message(fleet: Fleet) -> tuple[Outgoing, str]:
    device = fleet.manifest.readings[0].device
    ts_ms = fleet.manifest.readings[0].time_ns // 1_000_000 - 500  # between two of the device's readings
    body = {"id": f"{device}-poison", "ts": ts_ms, "metrics": {"poison": 1.5}, "tags": {"site": "site-x"}}
    return Outgoing(topic_for(device), orjson.dumps(body), VALID), device


def test_store_answers_are_honoured_and_a_refused_reading_is_dead_lettered(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics, scripted_store: ScriptedStore, taps: list[MqttTap]
) -> None:
    fleet = generate(FleetSpec(devices=20, messages=400, seed=33))
    poison, poison_device = _poison_message(fleet)
    first_part = [*fleet.outgoing[:150], poison, *fleet.outgoing[150:300]]
    second_part = fleet.outgoing[300:]
    deadletters = MqttTap(mosquitto, "gateway/deadletter/#", f"tap-gateway-{mosquitto.port}")
    taps.append(deadletters)
    with _gateway(tmp_path, mosquitto, scripted_store.url) as gateway:
        started = time.monotonic()
        stats = publish(first_part, mosquitto.url, qos=1)
        assert stats.sent == len(first_part), stats
        deadletters.wait_for(1, timeout=30, what="the poison reading's dead letter")
        assert gateway.wait_for(STORED, 300, timeout_s=30) == 300, gateway.log_tail()

        # The pipeline goes on after the refusal.
        stats = publish(second_part, mosquitto.url, qos=1)
        assert stats.sent == len(second_part), stats
        assert gateway.wait_for(STORED, 400, timeout_s=30) == 400, gateway.log_tail()
        wait_until(lambda: gateway.metrics()[PENDING_CHUNKS] == 0, 10, "no pending chunks", gateway.log_tail)
        metrics = gateway.metrics()
        elapsed = time.monotonic() - started
        assert gateway.proc is not None and gateway.proc.poll() is None
        assert metrics[ACKED] == 401 and metrics[CONNECTED] == 1

    exchanges = scripted_store.snapshot()
    statuses = [e.status for e in exchanges]
    print(f"\n  {len(exchanges)} write requests in {elapsed:.1f} s, statuses {statuses}")
    for e in exchanges:
        print(f"    +{e.received - started:6.2f} s  {e.status}  {e.lines:4d} lines  {'poison' if e.poison else ''}")
    assert statuses[:3] == [429, 429, 503]
    # Retry-After: 2 is a floor for the next attempt.
    waits = [nxt.received - cur.answered for cur, nxt in itertools.pairwise(exchanges) if cur.status == 429]
    print(f"  waits after 429: {', '.join(f'{w:.3f} s' for w in waits)}")
    assert len(waits) == 2 and min(waits) >= 2.0, waits
    # The 400 is bisected down to the one reading, which alone is dead-lettered; everything else is stored.
    refused = [e for e in exchanges if e.status == 400]
    assert refused and all(e.poison for e in refused)
    assert refused[-1].lines == 1, "bisected down to the poison reading alone"
    assert all(e.status in (204, 429, 503, 400) for e in exchanges)
    assert sum(e.lines for e in exchanges if e.status == 204) == 400, "every other reading written exactly once"

    records = [{**m.json(), "published_on": m.topic} for m in deadletters.sync()]  # and none after the marker
    assert len(records) == 1, records
    record = records[0]
    print(f"  dead letter on {record['published_on']}: reason {record['reason']}, detail {record['detail']!r}")
    assert record["published_on"] == f"gateway/deadletter/{poison_device}"
    assert record["reason"] == "store_refused"
    assert record["device"] == poison_device
    assert POISON_DETAIL in str(record["detail"])
    assert orjson.loads(str(record["payload"]))["metrics"] == {"poison": 1.5}
    assert metrics['gateway_readings_refused{sink="influx"}'] == 1  # a reading; its message was accepted
    assert metrics[RETRIES] == 3

    assert victoria.count_samples('{__name__="telemetry_poison"}') == 0
    _assert_stored_exactly_once(fleet.manifest, victoria)
