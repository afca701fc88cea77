"""Raw throughput: a scenario's devices dealt over several processes, each with its own event loop and
connections, since one Python process tops out at one core. Each child runs the ordinary `Runner` on its
share and reports snapshots through a pipe; the parent adds them up for the live view and the summary.

Which device runs where changes nothing in what it sends, so the manifest is the same for any number of
processes.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import fields
from multiprocessing.connection import Connection as Pipe
from multiprocessing.connection import wait
from multiprocessing.synchronize import Barrier

from device_sim.runner import Runner, RunResult, Snapshot
from device_sim.scenario import Scenario, Tally

_COUNTERS = ("published", "acked", "refused", "resent", "connected", "peak_connected", "connects", "drops", "devices")


def shard(scenario: Scenario, k: int, processes: int) -> Scenario:
    """Every processes-th device from the k-th; shared connections get ids of their own per process."""
    broker = scenario.fleet.broker
    if broker.connections:
        broker = broker.model_copy(update={"client_id_prefix": f"{broker.client_id_prefix}p{k}-"})
    fleet = scenario.fleet.model_copy(update={"broker": broker})
    return scenario._replace(fleet=fleet, plans=scenario.plans[k::processes])


def _child(scenario: Scenario, pipe: Pipe, barrier: Barrier) -> None:
    import asyncio  # noqa: PLC0415 - a fresh event loop in the child

    # Every process starts its clock together, once all have generated (and preloaded) their messages.
    def start_together() -> None:
        barrier.wait(600)

    runner = Runner(scenario, on_tick=lambda s: pipe.send(("tick", s)), before_start=start_together)
    result = asyncio.run(runner.run())
    pipe.send(("done", result))
    pipe.close()


def run_sharded(scenario: Scenario, processes: int, on_tick: Callable[[Snapshot], None] | None = None) -> RunResult:
    context = multiprocessing.get_context("fork")  # the children inherit the scenario as built
    pipes: list[Pipe] = []
    children = []
    barrier = context.Barrier(processes)
    for k in range(processes):
        parent_end, child_end = context.Pipe(duplex=False)
        share = shard(scenario, k, processes)
        child = context.Process(target=_child, args=(share, child_end, barrier), daemon=True)
        child.start()
        child_end.close()
        pipes.append(parent_end)
        children.append(child)
    latest: dict[int, Snapshot] = {}
    results: dict[int, RunResult] = {}
    open_pipes = dict(enumerate(pipes))
    last_tick = time.monotonic()
    while open_pipes:
        ready = wait(list(open_pipes.values()), timeout=0.5)
        for k, pipe in list(open_pipes.items()):
            if pipe not in ready:
                continue
            try:
                kind, payload = pipe.recv()
            except EOFError:
                del open_pipes[k]
                continue
            if kind == "done":
                assert isinstance(payload, RunResult)
                results[k] = payload
                latest[k] = payload.snapshot
            else:
                assert isinstance(payload, Snapshot)
                latest[k] = payload
        if on_tick is not None and time.monotonic() - last_tick >= 0.5 and latest:
            on_tick(combine(list(latest.values())))
            last_tick = time.monotonic()
    for child in children:
        child.join(10)
    missing = [k for k in range(processes) if k not in results]
    if missing:
        raise RuntimeError(f"simulator process(es) {missing} died without a result")
    return merge([results[k] for k in range(processes)])


def combine(snapshots: list[Snapshot]) -> Snapshot:
    total = Snapshot(elapsed_s=max(s.elapsed_s for s in snapshots), done=all(s.done for s in snapshots))
    for name in _COUNTERS:
        setattr(total, name, sum(getattr(s, name) for s in snapshots))
    total.rate_per_s = sum(s.rate_per_s for s in snapshots)
    longest = max(len(s.history) for s in snapshots)
    for i in range(longest):
        rows = [s.history[min(i, len(s.history) - 1)] for s in snapshots]
        total.history.append((max(r[0] for r in rows), sum(r[1] for r in rows), sum(r[2] for r in rows)))
    return total


def merge(results: list[RunResult]) -> RunResult:
    tally = Tally()
    for result in results:
        for f in fields(Tally):
            value = getattr(result.tally, f.name)
            if isinstance(value, int):
                setattr(tally, f.name, getattr(tally, f.name) + value)
            else:
                getattr(tally, f.name).update(value)
    return RunResult(
        snapshot=combine([r.snapshot for r in results]),
        tally=tally,
        elapsed_s=max(r.elapsed_s for r in results),
        unacknowledged=sum(r.unacknowledged for r in results),
        failure=next((r.failure for r in results if r.failure), None),
        cpu_s=sum(r.cpu_s for r in results),
        max_rss_mb=sum(r.max_rss_mb for r in results),
        preload_s=max(r.preload_s for r in results),
        started_at=min(r.started_at for r in results),
    )
