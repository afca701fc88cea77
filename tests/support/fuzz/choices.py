"""Where a fuzz generator's choices come from: `ByteSource` (bytes hypothesis draws, so failures shrink) or
`RandomSource` (a seeded, reproducible corpus), and the small choices built on them.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class Source(Protocol):
    clean: bool  # draw what a correct device sends

    def integer(self, lo: int, hi: int) -> int: ...
    def text(self, alphabet: str, lo: int, hi: int) -> str: ...
    def binary(self, lo: int, hi: int) -> bytes: ...
    def real(self) -> float: ...


def pick(src: Source, options: Sequence[T]) -> T:
    return options[src.integer(0, len(options) - 1)]


def chance(src: Source, percent: int) -> bool:
    return src.integer(0, 99) < percent


def dirty(src: Source, percent: int) -> bool:
    """Whether to break something here: never in a clean message."""
    return not src.clean and chance(src, percent)


class ByteSource:
    """Choices read from bytes that hypothesis draws, one draw a stream: structure-aware fuzzing, as with
    libFuzzer's FuzzedDataProvider. Drawing each choice through hypothesis cost 3 ms a message; this costs
    next to nothing, and hypothesis still shrinks a failure, towards zero bytes, i.e. towards first options.
    Beyond the end of the bytes every choice is the first option."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self.clean = False

    def _bytes(self, n: int) -> bytes:
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk.ljust(n, b"\0")

    def integer(self, lo: int, hi: int) -> int:
        span = hi - lo
        if span <= 0:
            return lo
        return lo + int.from_bytes(self._bytes((span.bit_length() + 7) // 8), "big") % (span + 1)

    def text(self, alphabet: str, lo: int, hi: int) -> str:
        return "".join(alphabet[self.integer(0, len(alphabet) - 1)] for _ in range(self.integer(lo, hi)))

    def binary(self, lo: int, hi: int) -> bytes:
        return self._bytes(self.integer(lo, hi))

    def real(self) -> float:
        if self.integer(0, 1):
            result: float = struct.unpack("<d", self._bytes(8))[0]  # any double: NaN, infinities, subnormals
            return result
        return self.integer(-(10**6), 10**6) / float(10 ** self.integer(0, 6))


class RandomSource:
    """Choices from a seeded generator: the same corpus on every run."""

    def __init__(self, seed: int) -> None:
        self._rnd = random.Random(seed)
        self.clean = False

    def integer(self, lo: int, hi: int) -> int:
        return self._rnd.randint(lo, hi)

    def text(self, alphabet: str, lo: int, hi: int) -> str:
        return "".join(self._rnd.choice(alphabet) for _ in range(self._rnd.randint(lo, hi)))

    def binary(self, lo: int, hi: int) -> bytes:
        return self._rnd.randbytes(self._rnd.randint(lo, hi))

    def real(self) -> float:
        if self._rnd.randint(0, 9) == 0:
            return self._rnd.choice([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308])
        return self._rnd.uniform(-1, 1) * 10.0 ** self._rnd.randint(-320, 308)
