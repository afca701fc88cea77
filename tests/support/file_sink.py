"""A sink for ProcessSink's own tests, built in the child process from its module path: it appends each reading
to a JSON-lines file the test reads, and raises what a reading's device asks for (`retry`, `refuse`, `bug`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson

from gateway.errors import PermanentSinkError, RetryableSinkError
from gateway.model import Reading


class FileSink:
    name = "file"

    def __init__(self, path: str, fail_to_start: bool = False) -> None:
        if fail_to_start:
            raise RuntimeError("this sink cannot start")
        self._path = Path(path)

    def write(self, readings: Sequence[Reading]) -> None:
        devices = {r.device for r in readings}
        if "retry" in devices:
            raise RetryableSinkError("the store is busy", 3.5)
        if "refuse" in devices:
            raise PermanentSinkError("HTTP 400: the store refuses it")
        if "bug" in devices:
            raise ValueError("a bug in the sink")
        with self._path.open("ab") as out:
            out.writelines(orjson.dumps(list(r)) + b"\n" for r in readings)

    def close(self) -> None:
        with self._path.open("ab") as out:
            out.write(b"closed\n")
