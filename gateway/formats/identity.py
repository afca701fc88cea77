"""Reading ids for readings whose device gave neither an id nor a sequence number."""

from __future__ import annotations

import hashlib

import orjson

from gateway.model import FieldValue


def content_id(device: str, time_ns: int, fields: dict[str, FieldValue]) -> str:
    """Same device, instant and values -> same id, so an exact re-send is recognised as a duplicate."""
    content = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    return f"{device}@{time_ns}:{hashlib.blake2b(content, digest_size=6).hexdigest()}"
