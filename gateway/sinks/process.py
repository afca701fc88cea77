"""A sink that does its work in a child process of its own, so that the store's work runs on another core.

The gateway's busiest thread reads, decodes and validates every message while holding the GIL; a sink in the same
process competes with it for that lock (line protocol, compression, the HTTP client: a fifth of the GIL's time
while a backlog drains, measured with py-spy). Wrapped in a ProcessSink, the sink is built and run in a child
Python process: the gateway's process only encodes each batch once, as the journal encodes chunks (about a sixth
of what line protocol costs), writes it to a pipe and waits, without the GIL, for the answer. The child also
imports the sink's library (influxdb-client: 0.4 s) on the other core while the gateway starts.

Everything else stays where it was: the sink worker's batching, Delivery's retries and bisection, the counters.
An answer is the sink's own: stored, RetryableSinkError (with its Retry-After) or PermanentSinkError. A child that
exits (killed, out of memory) fails the write it had as retryable; the retry starts a new child.

Frames on the pipes: a 4-byte big-endian length, then the body. The parent sends the sink's spec first (pickled:
module, class, config), then one encoded batch a frame; an empty frame asks the child to exit. The child answers
each frame with a JSON list: ["ready"], ["stored"], ["retry", message, retry_after], ["refused", message], or
["error", traceback] for an exception the sink did not classify.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import IO, Any, NamedTuple

import orjson

from gateway.errors import PermanentSinkError, RetryableSinkError
from gateway.journal.chunks import decode_chunk, encode_readings
from gateway.model import Reading

log = logging.getLogger(__name__)
_HEADER = struct.Struct(">I")
_CLOSE_TIMEOUT_S = 10.0


class SinkSpec(NamedTuple):
    """How the child builds the sink: `getattr(import_module(module), name)(*args)`. Strings, so that the
    gateway's process never imports the sink's library."""

    module: str
    name: str
    args: tuple[Any, ...]


class ChildFailed(RuntimeError):
    """The sink raised something it does not classify: a bug, raised in the gateway's process as it would
    have been in process (it stops the sink worker, and the supervisor stops the gateway)."""


class ProcessSink:
    """The Sink protocol, run by a child process (started at once, so that its imports overlap start-up)."""

    def __init__(self, name: str, spec: SinkSpec, counts_readings: bool = True) -> None:
        self.name = name
        self.counts_readings = counts_readings
        self._spec = spec
        self._lock = threading.Lock()  # one batch in the pipe at a time
        self._child: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._start()

    def write(self, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        with self._lock:
            if self._child is None:
                self._start()
            answer = self._exchange(encode_readings(readings))
        kind = answer[0]
        if kind == "stored":
            return
        if kind == "retry":
            raise RetryableSinkError(answer[1], answer[2])
        if kind == "refused":
            raise PermanentSinkError(answer[1])
        raise ChildFailed(f"sink {self.name} failed in its process:\n{answer[1]}")

    def close(self) -> None:
        with self._lock:
            child, self._child = self._child, None
        if child is None:
            return
        try:
            _send(_stdin(child), b"")
            child.wait(_CLOSE_TIMEOUT_S)
        except OSError:
            pass
        except subprocess.TimeoutExpired:
            log.warning("sink %s: its process did not exit in %.0f s; killed", self.name, _CLOSE_TIMEOUT_S)
        _reap(child)

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def _start(self) -> None:
        # Its stderr is the gateway's: a traceback there lands in the gateway's log.
        self._child = subprocess.Popen(
            [sys.executable, "-m", "gateway.sinks.process"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self._ready = False
        _send(_stdin(self._child), pickle.dumps(self._spec))

    def _exchange(self, body: bytes) -> list[Any]:
        """Send one frame and read its answer (after the child's "ready", the first time)."""
        child = self._child
        assert child is not None
        try:
            if not self._ready:
                hello = orjson.loads(_receive(_stdout(child)))
                if hello[0] != "ready":
                    raise ChildFailed(f"sink {self.name} could not start in its process:\n{hello[1]}")
                self._ready = True
            _send(_stdin(child), body)
            answer: list[Any] = orjson.loads(_receive(_stdout(child)))
            return answer
        except (OSError, EOFError) as exc:
            code = child.poll()
            self._child = None
            _reap(child)
            why = f"exited with status {code}" if code is not None else f"broke its pipe ({exc})"
            raise RetryableSinkError(f"the sink's process {why}; a new one starts for the retry") from None


def _reap(child: subprocess.Popen[bytes]) -> None:
    """Kill the child if it still runs, wait for it, and close the pipes."""
    if child.poll() is None:
        child.kill()
    child.wait()
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):  # a broken pipe's unflushed bytes
                pipe.close()


def _stdin(child: subprocess.Popen[bytes]) -> IO[bytes]:
    assert child.stdin is not None
    return child.stdin


def _stdout(child: subprocess.Popen[bytes]) -> IO[bytes]:
    assert child.stdout is not None
    return child.stdout


def _send(stream: IO[bytes], body: bytes) -> None:
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def _receive(stream: IO[bytes]) -> bytes:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the other end closed the pipe")
    (size,) = _HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError("the other end closed the pipe mid-frame")
    return body


def _answer(sink: Any, body: bytes) -> list[Any]:
    try:
        sink.write(decode_chunk(body))
    except RetryableSinkError as exc:
        return ["retry", str(exc), exc.retry_after]
    except PermanentSinkError as exc:
        return ["refused", str(exc)]
    except Exception:
        return ["error", traceback.format_exc()]
    return ["stored"]


def child_main(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The child: build the sink, then answer each batch until an empty frame or the end of the pipe."""
    # The parent decides when this process ends (an empty frame, or its own end closing the pipe): a Ctrl-C or a
    # SIGTERM sent to the whole process group must not cut a write the parent will wait for.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        spec: SinkSpec = pickle.loads(_receive(requests))  # from our own parent, through a pipe
        try:
            sink = getattr(importlib.import_module(spec.module), spec.name)(*spec.args)
        except Exception:
            _send(answers, orjson.dumps(["error", traceback.format_exc()]))
            return
        _send(answers, orjson.dumps(["ready"]))
        try:
            while body := _receive(requests):
                _send(answers, orjson.dumps(_answer(sink, body)))
        finally:
            sink.close()
    except (EOFError, BrokenPipeError):  # the parent has gone
        pass


if __name__ == "__main__":
    # The answers go out on a copy of stdout, and stdout itself becomes stderr: a library that prints cannot
    # corrupt a frame.
    answers_fd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    child_main(sys.stdin.buffer, os.fdopen(answers_fd, "wb"))
