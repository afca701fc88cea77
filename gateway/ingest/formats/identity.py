"""Reading ids for readings whose device gave neither an id nor a sequence number."""

from __future__ import annotations

import hashlib

import orjson

from gateway.model import FieldValue


def content_id(
    device: str, time_ns: int, fields: dict[str, FieldValue], series: tuple[str, dict[str, str]] | None = None
) -> str:
    """Same device, instant and values -> same id, so an exact re-send is recognised as a duplicate.

    A format whose payload names the measurement and tags (line protocol) passes them as `series`: two points
    of one device with equal values at one instant but in different series are different readings."""
    content = orjson.dumps(fields if series is None else [*series, fields], option=orjson.OPT_SORT_KEYS)
    return f"{device}@{time_ns}:{hashlib.blake2b(content, digest_size=6).hexdigest()}"
