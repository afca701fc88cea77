"""Field selection shared by the payload formats: include / exclude globs, then renames.

A format decodes every field it understands, then passes the result through `select_fields`, so a mapping's
`include`, `exclude` and `rename` mean the same thing whatever the payload format:

* globs (fnmatch syntax, matched case-sensitively on every platform) see the names as decoded, before renames;
* `include` empty keeps every field, otherwise a field is kept when any include glob matches it;
* `exclude` drops a field when any exclude glob matches it, and wins over `include`;
* `rename` maps a decoded name to the stored name; fields not named in it keep their name.

Two fields ending up with one name (a rename onto another kept field) would silently lose a value, so that
raises PayloadRejected(Reason.INVALID_SCHEMA). An empty result is returned as is: the caller decides what a
message whose fields were all filtered out means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import TypeVar

from gateway.errors import PayloadRejected
from gateway.ingest.formats.base import DecodeContext
from gateway.reasons import Reason

V = TypeVar("V")


def select_fields(fields: Mapping[str, V], context: DecodeContext) -> dict[str, V]:
    """Apply context.include, context.exclude and context.rename to decoded fields; order is kept."""
    include, exclude, rename = context.include, context.exclude, context.rename
    if not include and not exclude and not rename:
        return dict(fields)
    selected: dict[str, V] = {}
    for name, value in fields.items():
        if include and not any(fnmatchcase(name, glob) for glob in include):
            continue
        if exclude and any(fnmatchcase(name, glob) for glob in exclude):
            continue
        stored = rename.get(name, name)
        if not stored:
            raise PayloadRejected(Reason.INVALID_SCHEMA, f"field {name[:128]!r} is renamed to an empty name")
        if stored in selected:
            raise PayloadRejected(
                Reason.INVALID_SCHEMA, f"fields {name[:128]!r} and another both end up named {stored[:128]!r}"
            )
        selected[stored] = value
    return selected


def finite_float(value: float | int, where: str) -> float:
    """A JSON number as the float it is stored as; NaN, infinities and ints beyond a double are refused."""
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise PayloadRejected(Reason.NON_FINITE_VALUE, f"{where[:128]} is NaN, infinite or too large for a double")
    return result
