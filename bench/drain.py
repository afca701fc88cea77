"""The drain scenario: a backlog queued in persistent sessions, then drained, counted by the store.

What a gateway meets after an outage or a deploy: the broker holds what arrived while it was away. For each
consumer and round: a fresh Mosquitto (unlimited queue) and VictoriaMetrics; the consumer connects once to create
its persistent session and leaves; the backlog is published; the consumer starts again, and the clock runs from
process start to the moment the store holds the last reading (paho's bare loop, which stores nothing: to its
last acknowledgement). Used by `bench/e2e.py --scenario drain`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from device_sim.blast import blast
from tests.support.gateway_proc import GatewayProcess
from tests.support.servers import Mosquitto, VictoriaMetrics

ROOT = Path(__file__).resolve().parents[1]
# Mosquitto drops queued messages beyond max_queued_messages (default 1000): the backlog must all be kept.
BROKER_CONF = "autosave_interval 30\nmax_queued_messages 0\n"
CONSUMERS = ("baseline", "paho-bare", "gateway")
STORE_TIMEOUT_S = 600


def gateway_config(workdir: Path) -> Path:
    """The example config as a user who stores into InfluxDB runs it: its InfluxDB sink only, the example
    alert rules loaded; validation, dedup, sequence tracking and the journal as shipped."""
    config = yaml.safe_load((ROOT / "config" / "gateway.example.yaml").read_text())
    config.pop("sqlite", None)
    config["influx"].update({"org": "bench", "bucket": "bench"})
    config.setdefault("alerts", {})["rules_file"] = str(ROOT / "config" / "rules.example.yaml")
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _python(script: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "bench" / script), *args], stdout=out, stderr=out)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def one_round(
    kind: str, packets: list[bytes], readings: int, workdir: Path, wait_stored: Callable[..., tuple[float, int]]
) -> float:
    """Messages (paho-bare) or readings (the others) a second, from process start to the last one done."""
    workdir.mkdir(parents=True)
    log = workdir / f"{kind}.log"
    with Mosquitto(workdir / "mosquitto", extra_conf=BROKER_CONF) as broker, VictoriaMetrics(workdir / "vm") as vm:
        if kind == "paho-bare":
            register = _python("bare_drain.py", "--broker", broker.url, "--register", log=log)
            if register.wait(30) != 0:
                raise SystemExit(f"paho-bare: could not create its session\n{log.read_text()[-2000:]}")
            blast(packets, broker.url)
            start = time.perf_counter()
            drain = _python("bare_drain.py", "--broker", broker.url, "--expect", str(len(packets)), log=log)
            if drain.wait(STORE_TIMEOUT_S) != 0:
                raise SystemExit(f"paho-bare failed\n{log.read_text()[-2000:]}")
            elapsed = time.perf_counter() - start
            print(f"  {kind:9s} {len(packets) / elapsed:9,.0f} messages/s ({elapsed:5.2f} s)", flush=True)
            return len(packets) / elapsed
        if kind == "gateway":
            env = {
                "GATEWAY_MQTT__URL": broker.url,
                "GATEWAY_INFLUX__URL": vm.url,
                "GATEWAY_INFLUX__TOKEN": "bench",
                "GATEWAY_LOG__LEVEL": "WARNING",
            }
            gateway = GatewayProcess(workdir / "gateway", env, config=gateway_config(workdir))
            gateway.start().stop()  # its session now exists and is subscribed
            blast(packets, broker.url)
            start = time.perf_counter()
            gateway.start()
            try:
                end, stored = wait_stored(vm, readings, timeout_s=STORE_TIMEOUT_S)
            finally:
                gateway.stop()
            detail = gateway.log_tail
        else:
            args = ["--broker", broker.url, "--influx", vm.url]
            register = _python("naive_consumer.py", *args, log=log)
            time.sleep(2.0)  # connected and subscribed (it has no readiness endpoint; that is the point)
            _stop(register)
            blast(packets, broker.url)
            start = time.perf_counter()
            baseline = _python("naive_consumer.py", *args, log=log)
            try:
                end, stored = wait_stored(vm, readings, timeout_s=STORE_TIMEOUT_S)
            finally:
                _stop(baseline)

            def detail() -> str:
                return log.read_text()[-3000:]

        if stored != readings:
            raise SystemExit(f"{kind}: the store holds {stored} readings, expected {readings}\n{detail()}")
        elapsed = end - start
        print(f"  {kind:9s} {readings / elapsed:9,.0f} readings/s ({elapsed:5.2f} s)", flush=True)
        return readings / elapsed
