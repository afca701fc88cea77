"""InfluxDB line protocol, escaped so that no device-controlled name can add a tag, a field or a point."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.model import Reading

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ ", "\\": "\\\\"})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\\": "\\\\"})
# Quotes in field keys are legal unescaped, but VictoriaMetrics then takes them for a string value and corrupts
# the point (and the line's other fields); InfluxDB's own encoder escapes them and InfluxDB reads `\"` back as
# `"`, but VictoriaMetrics keeps the backslash. So the validator refuses metric names with a quote
# (invalid_name) and none reaches this encoder from a device; the escape stays for InfluxDB's sake.
_FIELD_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\\": "\\\\", '"': '\\"'})
_STRING_ESCAPES = str.maketrans({'"': '\\"', "\\": "\\\\"})


def _field(value: float | bool | str) -> str:
    kind = type(value)
    if kind is float:
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    return f'"{str(value).translate(_STRING_ESCAPES)}"'


class LineEncoder:
    """Encodes readings; remembers the escaped series prefix of recent devices, which rarely change."""

    def __init__(self, cache_size: int = 100_000) -> None:
        self._prefixes: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = {}
        self._cache_size = cache_size
        self._field_keys: dict[str, str] = {}

    def series(self, reading: Reading) -> str:
        tags = tuple(sorted(reading.tags.items())) if reading.tags else ()
        key = (reading.measurement, reading.device, tags)
        prefix = self._prefixes.get(key)
        if prefix is None:
            # Tags sorted by key, as InfluxDB recommends; `device` is the gateway's, never the payload's.
            pairs = sorted([("device", reading.device), *((k, v) for k, v in tags if k != "device")])
            escaped = ",".join(f"{k.translate(_KEY_ESCAPES)}={v.translate(_KEY_ESCAPES)}" for k, v in pairs)
            prefix = f"{reading.measurement.translate(_MEASUREMENT_ESCAPES)},{escaped}"
            if len(self._prefixes) >= self._cache_size:
                self._prefixes.clear()
            self._prefixes[key] = prefix
        return prefix

    def line(self, reading: Reading) -> str:
        keys = self._field_keys
        if len(keys) > self._cache_size:
            keys.clear()
        fields = ",".join(
            f"{keys.get(k) or keys.setdefault(k, k.translate(_FIELD_KEY_ESCAPES))}={_field(v)}"
            for k, v in reading.fields.items()
        )
        return f"{self.series(reading)} {fields} {reading.time_ns}"

    def encode(self, readings: Sequence[Reading]) -> bytes:
        return "\n".join([self.line(r) for r in readings]).encode()
