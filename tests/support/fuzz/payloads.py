"""Fuzzed payloads, one generator a format: native, JSON (flat, Tasmota, Shelly), value, SenML, ThingsBoard and
line protocol; clean ones are what a correct device sends, rich in characters that need escaping.
"""

from __future__ import annotations

from typing import Any

from tests.support.fuzz.choices import Source, chance, dirty, pick
from tests.support.fuzz.topics import HOSTILE, NAME_POOL, PLAIN, gen_device, gen_name
from tests.support.fuzz.values import DATES, dump, gen_epoch_s, gen_number, gen_scalar, gen_timestamp, gen_tree


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
