"""Fuzzed values a payload carries: JSON text with what json.dumps will not write (huge numbers, NaN, Infinity),
scalars, trees, and timestamps (epoch numbers, RFC 3339 text, bad dates).
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.fuzz.choices import Source, chance, dirty, pick
from tests.support.fuzz.topics import HOSTILE, PRINTABLE, gen_name


class Raw(str):
    """JSON text inserted verbatim: numbers beyond a double, NaN, Infinity."""


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)  # NaN, Infinity, -Infinity for the non-finite floats
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ",".join(f"{dump(k)}:{dump(v)}" for k, v in value.items()) + "}"
    return "[" + ",".join(dump(v) for v in value) + "]"


HUGE = ["1e309", "-1e400", "1" + "0" * 400, "123456789012345678901234567890", "1e-400", "-0", "1E5", "NaN"]
HUGE += ["Infinity", "-Infinity", "1.7976931348623157e308", "9223372036854775808", "18446744073709551616"]
STRINGS = ["", "12.5", "online", 'say "hi"\\', "tab\tcr\r", "\u2028", "x" * 300, "a,b=c d", "\u4e2d\U0001f600"]


def gen_number(src: Source) -> Any:
    kind = src.integer(0, 9)
    if kind < 5 or (src.clean and kind < 9):
        return src.integer(-100_000, 100_000) / pick(src, [1, 4, 10, 1000, 3])
    if src.clean:
        return pick(src, [0, -0.0, 2**53 + 1, 1e308, 5e-324, 123456789012.345, 1e-300])
    if kind < 7:
        return src.real()
    if kind < 9:
        return Raw(pick(src, HUGE))
    return pick(src, [2**63, -(2**63) - 1, 2**64, -0.0])


def gen_scalar(src: Source) -> Any:
    kind = src.integer(0, 9)
    if kind < 5:
        return gen_number(src)
    if kind < 7:
        return pick(src, [True, False, "ON", "off", "On", None])
    if kind < 9:
        return pick(src, STRINGS) if dirty(src, 50) else pick(src, STRINGS[:4])
    return src.text(PRINTABLE if src.clean else HOSTILE, 0, 6)


def gen_tree(src: Source, depth: int) -> Any:
    if depth <= 0 or chance(src, 45):
        return gen_scalar(src)
    if chance(src, 25):
        return [gen_tree(src, depth - 1) for _ in range(src.integer(0, 3))]
    return {gen_name(src): gen_tree(src, depth - 1) for _ in range(src.integer(0, 4))}


PAST_S = 1_718_000_000  # 2024-06-10: a device clock in the past
DATES = ["2024-06-10T06:13:20Z", "2024-06-10T06:13:20.123456789+02:00", "2016-12-31T23:59:60Z"]
BAD_DATES = ["2024-06-10 06:13:20", "2024-13-01T00:00:00Z", "2024-06-10T24:00:00Z", "2024-06-10T06:13:20+25:99"]
BAD_DATES += ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z", "1677-09-21T00:12:43Z", "garbage", ""]


def gen_epoch_s(src: Source) -> int | float:
    """Seconds well inside or well outside max_future_s (3600 s): never near that edge, where the gateway's
    clock and the generator's could disagree."""
    now_s = int(time.time())  # read now, not at import: a long test session must not age the future times
    kind = src.integer(0, 9)
    if kind < 4:
        seconds: int | float = now_s - src.integer(0, 30 * 86_400)
    elif kind < 8:
        seconds = PAST_S + src.integer(0, 1000)
    elif kind < 9 or src.clean:
        seconds = now_s + 600
    else:
        seconds = pick(src, [now_s + 7_200, now_s + 86_400 * 365, 0, -1, -(10**9), 10**11 - 1])
    return seconds + src.integer(0, 999) / 1000 if chance(src, 30) else seconds


def gen_timestamp(src: Source) -> Any:
    kind = src.integer(0, 19)
    if kind < 13 or (src.clean and kind < 18):
        seconds = gen_epoch_s(src)
        scaled = seconds * pick(src, [1, 1000, 1_000_000, 1_000_000_000])
        return round(scaled) if isinstance(scaled, float) and chance(src, 50) else scaled
    if kind < 16 or src.clean:
        return pick(src, DATES) if chance(src, 50) or src.clean else pick(src, BAD_DATES)
    if kind < 19:
        edges = [2**63 - 1, 2**63, -(2**63), 10**19, 10**30, 1.5e300, 1e306, -1e306, 10**14, 10**17]
        return pick(src, [*edges, Raw("1e400"), Raw("NaN"), Raw("-Infinity")])
    return pick(src, [True, None, [1], {"s": 1}, "1718000000"])
