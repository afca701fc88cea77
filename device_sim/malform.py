"""Turn a well-formed message body into one the gateway must reject, broken in exactly one way.

Each breaker starts from a body that would be accepted and changes only what its reason names, so a
rejection for any other reason points at a gateway bug rather than at a sloppy test message.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, NamedTuple

from device_sim.wire import MAX_PAYLOAD_BYTES, encode, epoch_ms, rfc3339_ms

Body = dict[str, Any]

FUTURE_SHIFT_NS = 86_400 * 1_000_000_000  # one day: far past any clock-skew allowance
_NON_FINITE_LITERALS = (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999")
_SENTINEL = "\x00non-finite\x00"  # cannot occur in a real body, so replacing it is unambiguous
_OVERSIZE_PADDING = MAX_PAYLOAD_BYTES + 1024


class BreakContext(NamedTuple):
    """What a breaker may need beyond the body: the message's nominal time and a different device."""

    time_ns: int
    other_device: str


def _malformed_json(body: Body, rng: random.Random, ctx: BreakContext) -> bytes:
    whole = encode(body)
    # Any proper prefix of a JSON object leaves a brace open, so it can never parse.
    return whole[: rng.randint(1, len(whole) - 1)]


def _non_finite(body: Body, rng: random.Random, ctx: BreakContext) -> bytes:
    metrics = dict(body["metrics"])
    metrics[_numeric_metric(metrics, rng)] = _SENTINEL
    # orjson cannot emit NaN or infinity, so the literal is spliced into the encoded bytes.
    return encode({**body, "metrics": metrics}).replace(encode(_SENTINEL), rng.choice(_NON_FINITE_LITERALS), 1)


def _empty_metrics(body: Body, rng: random.Random, ctx: BreakContext) -> bytes:
    return encode({**body, "metrics": {}})


def _wrong_type(body: Body, rng: random.Random, ctx: BreakContext) -> bytes:
    metrics = dict(body["metrics"])
    name = rng.choice(sorted(metrics))
    value = metrics[name]
    metrics[name] = {"value": value} if rng.random() < 0.5 else [value, value]
    return encode({**body, "metrics": metrics})


def _device_mismatch(body: Body, rng: random.Random, ctx: BreakContext) -> bytes:
    return encode({**body, "device_id": ctx.other_device})


def _oversized(body: Body, rng: random.Random, ctx: BreakContext) -> bytes:
    # A legal string metric: the size is the only thing wrong with this message.
    metrics = {**body["metrics"], "firmware_dump": "x" * _OVERSIZE_PADDING}
    return encode({**body, "metrics": metrics})


def _future_ts(body: Body, rng: random.Random, ctx: BreakContext) -> bytes:
    future_ns = ctx.time_ns + FUTURE_SHIFT_NS
    ts = rfc3339_ms(future_ns) if isinstance(body["ts"], str) else epoch_ms(future_ns)
    return encode({**body, "ts": ts})


def _numeric_metric(metrics: dict[str, Any], rng: random.Random) -> str:
    numeric = sorted(k for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool))
    return rng.choice(numeric)


_BREAKERS: dict[str, Callable[[Body, random.Random, BreakContext], bytes]] = {
    "malformed_json": _malformed_json,
    "non_finite": _non_finite,
    "empty_metrics": _empty_metrics,
    "wrong_type": _wrong_type,
    "device_mismatch": _device_mismatch,
    "oversized": _oversized,
    "future_ts": _future_ts,
}


def break_body(reason: str, body: Body, rng: random.Random, ctx: BreakContext) -> bytes:
    """The payload for `body` broken for `reason` (one of wire.MALFORMED_REASONS)."""
    try:
        breaker = _BREAKERS[reason]
    except KeyError:
        raise ValueError(f"unknown malformed reason: {reason!r}") from None
    return breaker(body, rng, ctx)
