"""Fuzzed device ids, metric names and topics for config/devices.example.yaml's mappings: a mapping's template, or
nearly, or not at all (random levels, unicode, wildcard characters, up to and beyond MQTT's 65,535-byte limit).
"""

from __future__ import annotations

from gateway.config.schema import load_config
from gateway.ingest.mapping import TopicRouter
from tests.support.fuzz.choices import Source, chance, dirty, pick
from tests.support.gateway_proc import ROOT

DEVICES_CONFIG = ROOT / "config" / "devices.example.yaml"
MAX_TOPIC_BYTES = 65_535  # MQTT's limit; paho refuses longer topics with ValueError


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
