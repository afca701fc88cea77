"""Load runs of the device simulator against a private Mosquitto, measured from the outside: for the
connection benchmark and test (10,000 devices, a connection each) and the throughput benchmark.

The simulator runs as its own process (`python -m device_sim run ... --report`), so its CPU time and memory
are its own; the broker's come from /proc. Used by tests and by scripts under bench/, so no pytest here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from tests.support.servers import Mosquitto

_TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class LoadResult(NamedTuple):
    report: dict[str, Any]  # the simulator's --report
    wall_s: float
    broker_cpu_s: float
    broker_rss_mb: float
    steady_rate_per_s: float  # acknowledged per second while every device was online
    target_rate_per_s: float

    @property
    def deviation(self) -> float:
        return self.steady_rate_per_s / self.target_rate_per_s - 1.0

    def lines(self) -> list[str]:
        run = self.report["run"]
        return [
            f"target       {self.target_rate_per_s:,.0f} msg/s",
            f"achieved     {self.steady_rate_per_s:,.0f} msg/s acknowledged while all devices were online "
            f"({100 * self.deviation:+.2f}%); {run['acknowledged']:,} of {run['published']:,} in all, "
            f"{run['errors']} errors",
            f"connections  peak {run['peak_connected']:,} of {run['devices']:,}",
            f"simulator    {run['cpu_s']:.1f} s CPU over {run['elapsed_s']:.1f} s "
            f"({100 * run['cpu_s'] / run['elapsed_s']:.0f}% of one core), max RSS {run['max_rss_mb']:.0f} MB",
            f"mosquitto    {self.broker_cpu_s:.1f} s CPU ({100 * self.broker_cpu_s / self.wall_s:.0f}% of one core), "
            f"max RSS {self.broker_rss_mb:.0f} MB",
        ]


def steady_rate(history: list[list[float]], start_s: float, end_s: float) -> float:
    """Acknowledged messages per second between two times of the run's history ([elapsed, published, acked])."""
    inside = [h for h in history if start_s <= h[0] <= end_s]
    if len(inside) < 2:
        raise ValueError(f"no history between {start_s} s and {end_s} s")
    first, last = inside[0], inside[-1]
    return (last[2] - first[2]) / (last[0] - first[0])


def connections_run(
    workdir: Path,
    *,
    devices: int = 10_000,
    rate: float = 1.0,
    duration_s: float = 60.0,
    ramp_up_s: float = 10.0,
    qos: int = 1,
    protocol: str = "5",
    persistence: bool = True,
) -> LoadResult:
    """Every device on its own connection at `rate` messages/s for `duration_s`, paced in real time."""
    with Mosquitto(workdir / "mosquitto", persistence=persistence, max_open_files=devices + 1024) as broker:
        assert broker.pid is not None
        cpu_before = proc_cpu_s(broker.pid)
        report_path = workdir / "report.json"
        args = ["--devices", str(devices), "--rate", str(rate), "--duration", str(duration_s)]
        args += ["--ramp-up", str(ramp_up_s), "--qos", str(qos), "--protocol", protocol, "--format", "native"]
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "device_sim", "run", "--broker", broker.url, *args, "--report", str(report_path)],
            capture_output=True,
            text=True,
            timeout=duration_s + ramp_up_s + 300,
            check=False,
        )
        wall = time.monotonic() - started
        if not report_path.exists():
            raise RuntimeError(f"device-sim failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        broker_cpu = proc_cpu_s(broker.pid) - cpu_before
        broker_rss = proc_peak_rss_mb(broker.pid)
    report = orjson.loads(report_path.read_bytes())
    # Every device samples from (its connect time + a phase under one interval) for duration_s: all of them
    # are online and sending from ramp_up + 1 interval until duration_s.
    interval = 1.0 / rate
    rate_seen = steady_rate(report["run"]["history"], ramp_up_s + 2 * interval + 1.0, duration_s - 0.5)
    return LoadResult(report, wall, broker_cpu, broker_rss, rate_seen, devices * rate)


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy so far (every process on the machine), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _TICKS


class ThroughputResult(NamedTuple):
    rate_per_s: float  # acknowledged (QoS 0: written) per second
    elapsed_s: float  # first publish to last acknowledgement
    sim_cpu_s: float  # every simulator process, while sending
    broker_cpu_s: float
    machine_busy_s: float  # all cores, every process: shows load from elsewhere
    processes: int

    def limit(self, cores: int) -> str:
        """What held the rate down, from CPU time while sending."""
        sim = self.sim_cpu_s / self.elapsed_s
        broker = self.broker_cpu_s / self.elapsed_s
        machine = self.machine_busy_s / self.elapsed_s
        figures = (
            f"simulator {sim:.2f} cores ({100 * sim / self.processes:.0f}% of a core per process), "
            f"Mosquitto {100 * broker:.0f}% of its one core, machine {machine:.2f} of {cores} cores busy "
            f"({max(0.0, machine - sim - broker):.2f} by other processes)"
        )
        if broker >= 0.9:
            verdict = "the broker (single-threaded)"
        elif machine >= 0.85 * cores:
            verdict = "the machine's cores"
        elif sim / self.processes >= 0.85:
            verdict = "the simulator's processes"
        else:
            verdict = "neither CPU: waiting on round trips"
        return f"{verdict}: {figures}"


class _Sampler(threading.Thread):
    """(wall time, machine busy s, broker CPU s) every 50 ms, to cut out exactly the sending window."""

    def __init__(self, broker_pid: int) -> None:
        super().__init__(daemon=True)
        self._pid = broker_pid
        self.samples: list[tuple[float, float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), machine_busy_s(), proc_cpu_s(self._pid)))
            self.stop.wait(0.05)

    def window(self, start: float, end: float) -> tuple[float, float]:
        inside = [s for s in self.samples if start <= s[0] <= end] or self.samples[-1:]
        first = max((s for s in self.samples if s[0] <= start), default=inside[0])
        last = inside[-1]
        return last[1] - first[1], last[2] - first[2]


def throughput_run(
    workdir: Path, *, messages: int, devices: int, processes: int, connections: int, qos: int
) -> ThroughputResult:
    """`device-sim run --no-pace --preload` into a fresh Mosquitto (no subscriber): the publisher's top speed."""
    with Mosquitto(workdir / "mosquitto", extra_conf="autosave_interval 30\n") as broker:
        assert broker.pid is not None
        report_path = workdir / "report.json"
        args = ["--devices", str(devices), "--messages", str(messages), "--no-pace", "--preload", "--qos", str(qos)]
        args += ["--processes", str(processes), "--connections", str(connections), "--format", "native"]
        sampler = _Sampler(broker.pid)
        sampler.start()
        done = subprocess.run(
            [sys.executable, "-m", "device_sim", "run", "--broker", broker.url, *args, "--report", str(report_path)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        sampler.stop.set()
        sampler.join()
    if done.returncode != 0 or not report_path.exists():
        raise RuntimeError(f"device-sim failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    run = orjson.loads(report_path.read_bytes())["run"]
    busy, broker_cpu = sampler.window(run["started_at"], run["started_at"] + run["elapsed_s"])
    return ThroughputResult(
        rate_per_s=run["rate_per_s"],
        elapsed_s=run["elapsed_s"],
        sim_cpu_s=run["cpu_s"],
        broker_cpu_s=broker_cpu,
        machine_busy_s=busy,
        processes=processes,
    )
