"""Rule conditions compiled to small predicates, and the check that a clear condition cannot hold together
with the firing one (otherwise a single reading would both fire and clear).

Predicates are `functools.partial(operator.x, bound)`: calling one costs about as much as a comparison in a
lambda, and they need no per-rule code generation.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from typing import Any, Literal

from gateway.model import FieldValue

Op = Literal[">", ">=", "<", "<=", "==", "!="]
Predicate = Callable[[Any], bool]  # Any: a reading's value, or a rate
ORDERING_OPS = frozenset({">", ">=", "<", "<="})

# `value > bound` is `bound < value`: the bound is the first argument of the swapped operator.
_SWAPPED: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.lt,
    ">=": operator.le,
    "<": operator.gt,
    "<=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_DIRECT: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def comparison(op: str, bound: float | str) -> Predicate:
    """`value <op> bound` as a one-argument predicate. The engine never orders a string (it counts it instead)."""
    return functools.partial(_SWAPPED[op], bound)


def negation(predicate: Predicate) -> Predicate:
    def negated(value: FieldValue) -> bool:
        return not predicate(value)

    return negated


def outside(low: float | None, high: float | None) -> Predicate:
    """True when the value is below `low` or above `high` (a missing bound is no bound)."""
    if low is None:
        if high is None:
            raise ValueError("a range needs min or max")
        return functools.partial(operator.lt, high)
    if high is None:
        return functools.partial(operator.gt, low)

    def out(value: FieldValue) -> bool:
        return value < low or value > high  # type: ignore[operator]  # numbers only: the engine checks

    return out


def inside(low: float | None, high: float | None) -> Predicate:
    """True when low <= value <= high."""
    if low is None:
        return (lambda _value: True) if high is None else functools.partial(operator.ge, high)
    if high is None:
        return functools.partial(operator.le, low)

    def within(value: FieldValue) -> bool:
        return low <= value <= high  # type: ignore[operator]

    return within


def overlap(first: tuple[str, float | str], second: tuple[str, float | str]) -> float | str | None:
    """A value satisfying both comparisons, or None when they are disjoint.

    Each comparison holds on a union of intervals whose ends are the two bounds, so if they share any value
    they share one of a few candidates: a bound, the floats just beside it, a midpoint, or a far (finite) value.
    """
    (op1, b1), (op2, b2) = first, second
    candidates: list[float | str]
    if isinstance(b1, str) or isinstance(b2, str):
        candidates = [b1, b2, "\x00unlike-either-bound"]
    else:
        bounds = sorted({b1, b2})
        candidates = [-1e308, 1e308, *bounds, (bounds[0] + bounds[-1]) / 2]
        for b in bounds:
            candidates += [math.nextafter(b, -math.inf), math.nextafter(b, math.inf)]
    for value in candidates:
        try:
            if _DIRECT[op1](value, b1) and _DIRECT[op2](value, b2):
                return value
        except TypeError:
            continue
    return None
