"""Generated MQTT messages for fuzzing the gateway: topics and payloads for config/devices.example.yaml's mappings.

Topics follow a mapping's template, or nearly (one level off), or not at all (random levels, unicode, wildcard
characters, up to and beyond MQTT's 65,535-byte limit). Payloads are valid for the format the topic maps to, or
for another one, mutated, random JSON trees, deep nesting, huge numbers, NaN / Infinity, random bytes, invalid
UTF-8. About half the messages are drawn "clean" (names, values and times a correct device sends, but rich in
characters that need escaping) so that the accepted path is exercised as much as the rejecting one.

One generator, two sources of choices: `ByteSource` (bytes hypothesis draws: a property test whose failures
shrink) and `RandomSource` (a seeded, reproducible corpus for a running gateway).
"""

from __future__ import annotations

import json
import math
import random
import struct
import time
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from gateway.config.schema import load_config
from gateway.ingest.mapping import TopicRouter
from tests.support.gateway_proc import ROOT

T = TypeVar("T")
DEVICES_CONFIG = ROOT / "config" / "devices.example.yaml"
MAX_TOPIC_BYTES = 65_535  # MQTT's limit; paho refuses longer topics with ValueError


# --- where the choices come from ----------------------------------------------------------------------------------


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


# --- names and topics ---------------------------------------------------------------------------------------------

MAPPINGS = load_config(DEVICES_CONFIG).mappings
ROUTER = TopicRouter(MAPPINGS)
TEMPLATES = [m.topic for m in MAPPINGS]
FORMATS = ["native", "json", "value", "senml", "thingsboard", "line"]
PLAIN = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789"
DEVICE_CHARS = PLAIN + "_.:@-"
# Printable, and what line protocol and JSON treat specially, plus multi-byte characters.
PRINTABLE = PLAIN + ",= \"\\'_.:@-#$\u00e9\u00df\u4e2d\U0001f600"
HOSTILE = PRINTABLE + "\n\t\r\x00\x7f\x85\u00a0\u2028\u200b\ufeff\ufffe/+#\u0301"
DEVICE_POOL = ["sensor-1", "boiler.17", "plug:7", "d@x", "A", "kitchen_temp", "0"]
NAME_POOL = ["temperature", "humidity", "t", "Power", "state", "ENERGY", "Total", "rssi", "v", "value", "time"]
FIXED_LEVELS = ["devices", "telemetry", "zigbee2mqtt", "tele", "SENSOR", "sensor", "state", "senml", "v1", "lp"]


def gen_device(src: Source) -> str:
    kind = src.integer(0, 19)
    if kind < 12 or (src.clean and kind < 16):
        return pick(src, DEVICE_POOL)
    if kind < 16 or src.clean:
        return pick(src, PLAIN) + src.text(DEVICE_CHARS, 0, 12)
    if kind < 17:
        return src.text(HOSTILE, 0, 8)
    if kind < 19:
        return pick(src, ["", "+", "#", "a+b", "$dev", "-lead", "_lead", "dev\n", "\u00e9t\u00e9", "a b"])
    return "d" * pick(src, [128, 129, 300])


def gen_name(src: Source) -> str:
    kind = src.integer(0, 9)
    if kind < 5:
        return pick(src, NAME_POOL)
    if kind < 7:
        return src.text(PLAIN + "_", 1, 10)
    if kind < 9 or src.clean:
        return src.text(PRINTABLE, 1, 8) if src.clean else src.text(HOSTILE, 0, 8)
    return pick(src, ["", "device", "x" * 257, "a.b", "a_b", "StartTime", "TotalStartTime", "_x"])


def fill(template: str, device: str, metric: str) -> str:
    return template.replace("{device}", device).replace("{metric}", metric)


def gen_topic(src: Source) -> str:
    template = pick(src, TEMPLATES)
    kind = 0 if src.clean else src.integer(0, 99)
    if kind < 60:
        return fill(template, gen_device(src), gen_name(src) if dirty(src, 30) else pick(src, NAME_POOL))
    if kind < 75:  # near misses: one level off
        levels = fill(template, gen_device(src), pick(src, NAME_POOL)).split("/")
        at = src.integer(0, len(levels) - 1)
        how = src.integer(0, 5)
        if how == 0:
            levels[at] = levels[at].upper() if levels[at] != levels[at].upper() else levels[at].lower()
        elif how == 1:
            del levels[at]
        elif how == 2:
            levels.insert(at, pick(src, FIXED_LEVELS))
        elif how == 3:
            levels[at] += pick(src, ["s", " ", "/", "\u200b"])
        elif how == 4:
            return "/" + "/".join(levels)
        else:
            return "/".join(levels) + "/"
        return "/".join(levels)
    if kind < 85:  # random levels
        count = src.integer(1, 6)
        return "/".join(pick(src, FIXED_LEVELS) if chance(src, 60) else src.text(HOSTILE, 0, 5) for _ in range(count))
    if kind < 90:
        return src.text(HOSTILE + "/", 0, 20)
    if kind < 95:  # very long: up to MQTT's limit, and beyond
        size = pick(src, [200, 5_000, MAX_TOPIC_BYTES - 100, MAX_TOPIC_BYTES, MAX_TOPIC_BYTES + 1])
        if chance(src, 70):
            return fill(template, "d" * max(1, size - len(fill(template, "", "m"))), "m")
        return "/".join(["a"] * (size // 2))
    return fill(template, pick(src, ["+", "#", "a#", "+x"]), pick(src, ["+", "#", "t"]))


# --- JSON text, with what json.dumps will not write ---------------------------------------------------------------


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


# --- timestamps ---------------------------------------------------------------------------------------------------

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


# --- payloads, one generator a format -----------------------------------------------------------------------------


def gen_metrics(src: Source) -> Any:
    if dirty(src, 8):
        return pick(src, [{}, [], "x", None, 1])
    metrics = {}
    for _ in range(src.integer(1, 4)):
        value = gen_tree(src, 1) if dirty(src, 10) else gen_scalar(src)
        metrics[gen_name(src)] = value if value is not None or not src.clean else 1.5
    return metrics


def gen_tags(src: Source) -> Any:
    if dirty(src, 10):
        return pick(src, [[], {"a": 1}, "x", {"device": "other"}])
    return {gen_name(src): pick(src, ["plant-a", "b"]) if chance(src, 50) else gen_name(src) for _ in range(2)}


def gen_native_message(src: Source, device: str) -> Any:
    message: dict[str, Any] = {}
    if not dirty(src, 5):
        message["metrics"] = gen_metrics(src)
    if chance(src, 60):
        message["ts"] = gen_timestamp(src)
    if chance(src, 40):
        ids = ["m-1", "m-2", "m-3", f"{device}-{src.integer(0, 99)}"]
        message["id"] = pick(src, ids) if not dirty(src, 30) else pick(src, ["", "i" * 300, 7, gen_name(src)])
    if chance(src, 20):
        message["seq"] = src.integer(0, 50) if not dirty(src, 40) else pick(src, [-5, 2**70, 1.5, "3", None])
    if chance(src, 35):
        message["tags"] = gen_tags(src)
    if chance(src, 10):
        message["device_id"] = device if not dirty(src, 50) else gen_device(src)
    if dirty(src, 5):
        message[gen_name(src)] = gen_scalar(src)
    return message


def gen_native(src: Source, device: str) -> str:
    if chance(src, 20):
        return dump([gen_native_message(src, device) for _ in range(src.integer(0 if not src.clean else 1, 3))])
    return dump(gen_native_message(src, device))


def gen_flat_json(src: Source, tasmota: bool) -> Any:
    obj: dict[str, Any] = {gen_name(src): gen_tree(src, 3) for _ in range(src.integer(1 if src.clean else 0, 5))}
    if src.clean:
        obj[pick(src, NAME_POOL)] = gen_number(src)  # at least one field
    if tasmota and chance(src, 70):
        obj["Time"] = pick(src, [*DATES[:2], "2024-06-10T06:13:20"]) if not dirty(src, 40) else gen_timestamp(src)
        if chance(src, 50):
            obj["ENERGY"] = {"TotalStartTime": "2024-01-01T00:00:00", "Total": gen_number(src), "Power": 45}
    return obj


def gen_shelly(src: Source, device: str) -> Any:
    """A Shelly Gen2 notification: the fields under params, the time at params.ts, the device id at src."""
    message: dict[str, Any] = {"method": pick(src, ["NotifyStatus", "NotifyEvent"])}
    if not dirty(src, 15):
        message["src"] = device if not dirty(src, 20) else pick(src, [gen_device(src), 7, None, ""])
    params = gen_flat_json(src, tasmota=False) if not dirty(src, 10) else gen_scalar(src)
    if isinstance(params, dict) and chance(src, 70):
        params["ts"] = gen_epoch_s(src) if not dirty(src, 20) else gen_timestamp(src)
    if not dirty(src, 5):
        message["params"] = params
    return message


def gen_json(src: Source, tasmota: bool) -> str:
    if chance(src, 15):
        return dump([gen_flat_json(src, tasmota) for _ in range(src.integer(1 if src.clean else 0, 3))])
    return dump(gen_flat_json(src, tasmota))


VALUE_WORDS = ["37.5", "-3", "1e3", " 12 ", "+.5", "1.", "ON", "off", "true", "open", "Closed", "0"]
VALUE_WORDS_BAD = ["1e309", "-1e400", "nan", "NaN", "inf", "-Infinity", "hello", "", "  ", "0x10", "1_000", "\u0661"]


def gen_value(src: Source) -> bytes:
    kind = src.integer(0, 9)
    if kind < 5 or src.clean:
        return pick(src, VALUE_WORDS).encode() if kind % 2 or not src.clean else repr(gen_number(src)).encode()
    if kind < 7:
        return pick(src, VALUE_WORDS_BAD).encode()
    if kind < 8:
        return repr(src.real()).encode()
    if kind < 9:
        return src.text(HOSTILE, 0, 8).encode()
    return src.binary(0, 8)


def gen_senml_value(src: Source, key: str) -> Any:
    if dirty(src, 10):
        return gen_scalar(src)
    if key in ("bn", "n", "u", "bu", "vs", "vd"):
        names = ["urn:dev:ow:10e2073a01080063:", "temp", "a/b", "%RH", "Cel"]
        return pick(src, names) if chance(src, 60) or src.clean else pick(src, ["", "x\ny", gen_name(src)])
    if key in ("bt", "t"):
        if chance(src, 60) or src.clean:
            return gen_epoch_s(src) if key == "bt" else pick(src, [-5, 0, 1.5, -60])
        return pick(src, [2**28, 1e303, -1e303, 10**30, 1e18])
    if key == "vb":
        return pick(src, [True, False])
    if key == "bver":
        return pick(src, [10, 5]) if not dirty(src, 50) else pick(src, [11, "10"])
    return gen_number(src)


def gen_senml_record(src: Source, first: bool) -> Any:
    record: dict[str, Any] = {}
    for key, percent in (("bn", 40 if not first or not src.clean else 100), ("bt", 25), ("bu", 10), ("bv", 10)):
        if chance(src, percent):
            record[key] = gen_senml_value(src, key)
    for key, percent in (("bs", 5), ("bver", 5), ("n", 80), ("u", 20), ("t", 30), ("ut", 5)):
        if chance(src, percent):
            record[key] = gen_senml_value(src, key)
    value_key = pick(src, ["v", "v", "v", "vb", "vs", "vd", "s", ""] if not src.clean else ["v", "v", "vb", "s"])
    if value_key:
        record[value_key] = gen_senml_value(src, value_key)
    if dirty(src, 5):
        record[pick(src, ["foo_", "v", "x"])] = gen_scalar(src)
    return record


def gen_senml(src: Source) -> str:
    if dirty(src, 8):
        return dump(gen_senml_record(src, True))
    return dump([gen_senml_record(src, i == 0) for i in range(src.integer(1 if src.clean else 0, 4))])


def gen_thingsboard_message(src: Source) -> Any:
    values = {gen_name(src): gen_tree(src, 2) for _ in range(src.integer(1 if src.clean else 0, 4))}
    if src.clean:
        values[pick(src, NAME_POOL)] = gen_number(src)
    if chance(src, 50):
        return values
    message: dict[str, Any] = {"ts": gen_epoch_s(src) * 1000 if not dirty(src, 30) else gen_timestamp(src)}
    message["values"] = values if not dirty(src, 10) else pick(src, [[], 1, None])
    if dirty(src, 5):
        message["extra"] = 1
    return message


def gen_thingsboard(src: Source) -> str:
    if chance(src, 25):
        return dump([gen_thingsboard_message(src) for _ in range(src.integer(1 if src.clean else 0, 3))])
    return dump(gen_thingsboard_message(src))


LP_ALPHABET = PLAIN + ',= "\\\n\t\x00\u2028\u00e9'
LP_PRINTABLE = PLAIN + ',= "\\\u00e9'
MEASUREMENT_ESCAPES = ", \\"
TAG_ESCAPES = ",= \\"
FIELD_ESCAPES = ',= "\\'


def gen_lp_token(src: Source, escapes: str) -> str:
    if chance(src, 60):
        return pick(src, ["cpu", "telemetry", "t", "site", "a b", "m"]).replace(" ", "\\ ")
    if src.clean:
        text = src.text(LP_PRINTABLE, 1, 6)
        return "".join("\\" + c if c in escapes else c for c in text)
    text = src.text(LP_ALPHABET, 0, 6)
    if chance(src, 70):  # escaped as a sender should; else raw
        text = "".join("\\" + c if c in escapes else c for c in text)
    return text


LP_VALUES = ["1", "-1.5", "1e+16", "12i", "-5i", "18446744073709551615u", "1u", "t", "F", "TRUE", "true", '"s"']
LP_VALUES += ['"a\\"b\\\\"', '"\u4e2d"']
LP_VALUES_BAD = ["9223372036854775808i", '"multi\nline"', '"unterminated', "1e400", "nan", "1.2.3", "", "-"]


def gen_line(src: Source, device: str) -> str:
    lines = []
    for _ in range(src.integer(1, 3)):
        if dirty(src, 5):
            lines.append(pick(src, ["", "# comment", "   ", "\r"]))
            continue
        line = gen_lp_token(src, MEASUREMENT_ESCAPES)
        if line.startswith("#"):
            line = "m" + line
        for _ in range(src.integer(0, 2)):
            key = "device" if chance(src, 15) else gen_lp_token(src, TAG_ESCAPES)
            same = key == "device" and not dirty(src, 50)
            line += f",{key}={device if same else gen_lp_token(src, TAG_ESCAPES)}"
        fields = []
        for _ in range(src.integer(1, 3)):
            value = pick(src, LP_VALUES) if not dirty(src, 20) else pick(src, LP_VALUES_BAD)
            fields.append(f"{gen_lp_token(src, FIELD_ESCAPES)}={value}")
        line += " " + ",".join(fields)
        if chance(src, 60):
            stamp = str(int(gen_epoch_s(src) * 10**9))
            line += " " + (stamp if not dirty(src, 20) else pick(src, ["-1", "9223372036854775808", "1.5", "x"]))
        lines.append(line)
    return pick(src, ["\n", "\r\n", "\n\n"]).join(lines)


# --- any payload --------------------------------------------------------------------------------------------------

INVALID_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\xe2\x82"]


def format_payload(src: Source, fmt: str, device: str, shelly: bool = False) -> bytes:
    if fmt == "native":
        return gen_native(src, device).encode()
    if fmt == "json":
        if chance(src, 80 if shelly else 10):
            return dump(gen_shelly(src, device)).encode()
        return gen_json(src, tasmota=chance(src, 50)).encode()
    if fmt == "value":
        return gen_value(src)
    if fmt == "senml":
        return gen_senml(src).encode()
    if fmt == "thingsboard":
        return gen_thingsboard(src).encode()
    return gen_line(src, device).encode()


def mutate(src: Source, payload: bytes) -> bytes:
    at = src.integer(0, len(payload))
    how = src.integer(0, 5)
    if how == 0:
        return payload[:at]
    if how == 1:
        inserted = pick(src, [b'"', b"{", b"}", b"[", b",", b":", b"\\", b"\n", b"\x00", b"\xff"])
        return payload[:at] + inserted + payload[at:]
    if how == 2:
        return payload[:at] + payload[at + 1 :]
    if how == 3:
        return payload[:at] + payload[at:] * 2
    if how == 4:
        return payload[:at] + pick(src, INVALID_UTF8) + payload[at:]
    return payload.replace(b"1", b"9" * 400, 1)


def generic_payload(src: Source) -> bytes:
    kind = src.integer(0, 9)
    if kind < 3:
        return dump(gen_tree(src, 5)).encode()
    if kind < 5:  # deep nesting, within and far beyond the limit of 32
        depth = pick(src, [31, 32, 33, 100, 5_000])
        if chance(src, 50):
            return b'{"a":' * depth + b"1" + b"}" * depth
        return b'{"metrics": ' + b"[" * depth + b"]" * depth + b"}"
    if kind < 6:
        return src.binary(0, 40)
    if kind < 7:
        return pick(src, INVALID_UTF8) + src.text(PLAIN, 0, 5).encode()
    if kind < 8:  # beyond validation.max_payload_bytes, and just within it
        size = pick(src, [256 * 1024 + 1, 256 * 1024 - 40, 300_000])
        return b'{"metrics": {"t": 1}, "pad": "' + b"x" * size + b'"}'
    return pick(src, [b"", b" ", b"null", b"1", b'"s"', b"[]", b"{}", b"[[]]", b"[{}]", b"NaN", b"\xef\xbb\xbf{}"])


def gen_payload(src: Source, topic: str) -> bytes:
    match = ROUTER.route(topic)
    fmt = match.mapping.format if match is not None and not dirty(src, 15) else pick(src, FORMATS)
    device = match.device if match is not None and match.device is not None else gen_device(src)
    shelly = match is not None and match.mapping.device_field is not None
    kind = 0 if src.clean else src.integer(0, 99)
    if kind < 70:
        return format_payload(src, fmt, device, shelly)
    if kind < 85:
        return mutate(src, format_payload(src, fmt, device, shelly))
    return generic_payload(src)


def gen_message(src: Source) -> tuple[str, bytes]:
    """One (topic, payload); about half of them clean."""
    src.clean = chance(src, 50)
    try:
        topic = gen_topic(src)
        return topic, gen_payload(src, topic)
    finally:
        src.clean = False
