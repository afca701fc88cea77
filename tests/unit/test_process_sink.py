"""ProcessSink: a sink run in a child process answers as the sink itself would, and a child that dies costs a
retry, not a reading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from gateway.errors import PermanentSinkError, RetryableSinkError
from gateway.model import Reading
from gateway.sinks.process import ChildFailed, ProcessSink, SinkSpec
from tests.support.waits import wait_until


def reading(device: str, n: int = 0) -> Reading:
    return Reading(device, "telemetry", 1_796_000_000_000_000_000 + n, {"t": 21.5 + n, "on": True, "s": "x"},
                   {"site": "a"}, f"{device}-{n}", n, True)  # fmt: skip


def stored(path: Path) -> list[object]:
    if not path.exists():
        return []
    return [line if line == b"closed" else Reading(*orjson.loads(line)) for line in path.read_bytes().splitlines()]


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "stored.jsonl"


@pytest.fixture
def sink(out: Path) -> Iterator[ProcessSink]:
    sink = ProcessSink("file", SinkSpec("tests.support.file_sink", "FileSink", (str(out),)))
    yield sink
    sink.close()


def test_readings_cross_the_pipe_exactly_and_close_ends_the_child(sink: ProcessSink, out: Path) -> None:
    batch = [reading("dev-1", n) for n in range(3)] + [reading("dev-2")._replace(seq=None, time_from_device=False)]
    sink.write(batch)
    sink.write([])  # nothing is sent for an empty batch
    assert stored(out) == batch
    child = sink.pid
    assert child is not None
    sink.close()
    assert stored(out)[-1] == b"closed"  # the child closed its sink before it exited
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


@pytest.mark.parametrize(
    ("device", "error", "message"),
    [
        pytest.param("retry", RetryableSinkError, "the store is busy", id="retryable"),
        pytest.param("refuse", PermanentSinkError, "HTTP 400: the store refuses it", id="permanent"),
    ],
)
def test_the_sinks_errors_are_raised_in_the_parent_as_they_were_raised(
    sink: ProcessSink, device: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        sink.write([reading(device)])
    assert type(raised.value) is error
    assert str(raised.value) == message
    if isinstance(raised.value, RetryableSinkError):
        assert raised.value.retry_after == 3.5
    sink.write([reading("dev-1")])  # the same child goes on


def test_an_unclassified_exception_is_a_failure_with_the_childs_traceback(sink: ProcessSink) -> None:
    with pytest.raises(ChildFailed, match=r"(?s)sink file failed in its process.*ValueError: a bug in the sink"):
        sink.write([reading("bug")])


def test_a_killed_child_fails_one_write_as_retryable_and_the_retry_starts_a_new_one(
    sink: ProcessSink, out: Path
) -> None:
    sink.write([reading("dev-1", 0)])
    first = sink.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    with pytest.raises(RetryableSinkError, match="exited with status -9"):
        sink.write([reading("dev-1", 1)])
    sink.write([reading("dev-1", 1)])
    assert sink.pid not in (None, first)
    assert [r.reading_id for r in stored(out) if isinstance(r, Reading)] == ["dev-1-0", "dev-1-1"]


def test_a_sink_that_cannot_be_built_fails_its_first_write(tmp_path: Path) -> None:
    sink = ProcessSink("file", SinkSpec("tests.support.file_sink", "FileSink", (str(tmp_path / "x"), True)))
    try:
        with pytest.raises(ChildFailed, match=r"(?s)could not start in its process.*this sink cannot start"):
            sink.write([reading("dev-1")])
    finally:
        sink.close()


def test_the_child_ends_with_its_parent_even_after_kill_9(tmp_path: Path) -> None:
    """A parent killed outright closes its end of the pipe: the child reads the end and exits."""
    script = (
        "import sys, time\n"
        "from gateway.sinks.process import ProcessSink, SinkSpec\n"
        f"sink = ProcessSink('file', SinkSpec('tests.support.file_sink', 'FileSink', ({str(tmp_path / 'x')!r},)))\n"
        "print(sink.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=Path.cwd())
    assert parent.stdout is not None
    with parent.stdout:
        child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()

    def child_gone() -> bool:
        try:  # gone, or a zombie waiting for whoever inherited it
            return Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    wait_until(child_gone, 10, "the sink's child process exiting after its parent was killed")
