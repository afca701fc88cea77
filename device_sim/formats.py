"""Payload formats: one sample of a device -> the MQTT messages it sends, and what a correct gateway makes of
each (a reading, or a rejection with the gateway's reason code).

The expected readings follow the gateway's mappings in `config/devices.example.yaml`: topic templates,
static tags (`source`), how JSON is flattened, which formats carry the device's clock. Formats without a
timestamp (zigbee2mqtt, esphome) are stored at the gateway's receive time, so a resend cannot be told from a
new reading there; such formats take no duplicates, out-of-order sends or clock skew (`Encoder.timed`).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple

import orjson

from device_sim.manifest import ExpectedReading, FieldValue
from device_sim.sensors import Value

MEASUREMENT = "telemetry"
FUTURE_MS = 86_400_000  # a day ahead: far past the gateway's max_future_s
RFC3339_SHARE = 0.2  # native: the rest of the timestamps are epoch milliseconds
DEVICE_ID_SHARE = 0.25  # native: valid messages that repeat their own device id in the body
_NS_PER_MS = 1_000_000
_NAN_TEXT = "@@device-sim-nan@@"  # a placeholder string, swapped for a bare NaN after encoding (orjson emits none)
_NAN = b'"' + _NAN_TEXT.encode() + b'"'
# A payload without the device's clock is stored at the receive time: a resend or a late message would be a new
# reading, and a clock error invisible.
_UNTIMED = frozenset({"duplicate", "out_of_order", "clock_skew", "spoofed_id"})
_TASMOTA_SECTION = {"temperature": "BME280_", "humidity": "BME280_", "pressure": "BME280_", "energy": "ENERGY_"}
_SENML_UNITS = {"temperature": "Cel", "humidity": "%RH", "pressure": "hPa", "battery": "%EL", "energy": "kWh"}


class Message(NamedTuple):
    topic: str
    payload: bytes
    kind: str  # "valid", "duplicate" or "rejected"
    reason: str | None = None  # rejected: the gateway's reason code
    reading: ExpectedReading | None = None  # valid: what the gateway must store


class Sample(NamedTuple):
    """One measurement of one device, and everything its messages need."""

    device: str
    values: dict[str, Value]
    kinds: dict[str, str]  # sensor name -> kind
    ts_ms: int  # the device's clock (skew included), epoch ms
    received_ms: int  # nominal time of sending, epoch ms: where receive-timed readings land
    boot: int
    seq: int
    tags: dict[str, str]


def encode_json(body: object) -> bytes:
    return orjson.dumps(body)


def _with_nan(body: object) -> bytes:
    return encode_json(body).replace(_NAN, b"NaN", 1)


def _field(value: Value) -> FieldValue:
    return value if isinstance(value, bool) else float(value)


def _switch(value: bool) -> str:
    return "ON" if value else "OFF"


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def _numeric(sample: Sample, rng: random.Random) -> str | None:
    names = [n for n, v in sample.values.items() if not isinstance(v, bool)]
    return rng.choice(names) if names else None


class Encoder:
    """Base of the formats. `encode` gives the valid messages of a sample; `broken` the messages when one of
    them is broken for `reason` (one of `reasons`); `oversized` and `spoofed` likewise."""

    name: ClassVar[str]
    timed: ClassVar[bool] = True  # the payload carries the device's clock
    # Faults the format cannot carry honestly: skipped for its devices (the README lists them).
    unsupported: ClassVar[frozenset[str]] = frozenset({"spoofed_id"})
    tags: ClassVar[dict[str, str]] = {}  # the example mapping's static tags
    reasons: ClassVar[tuple[str, ...]]

    def topic(self, device: str) -> str:
        raise NotImplementedError

    def body(self, sample: Sample, rng: random.Random) -> Any:
        raise NotImplementedError

    def fields(self, sample: Sample) -> dict[str, FieldValue]:
        raise NotImplementedError

    def encode(self, sample: Sample, rng: random.Random) -> list[Message]:
        payload = encode_json(self.body(sample, rng))
        return [Message(self.topic(sample.device), payload, "valid", None, self._reading(sample, self.fields(sample)))]

    def broken(self, sample: Sample, reason: str, rng: random.Random) -> list[Message]:
        payload = self.break_body(self.body(sample, rng), sample, reason, rng)
        return [Message(self.topic(sample.device), payload, "rejected", reason)]

    def break_body(self, body: Any, sample: Sample, reason: str, rng: random.Random) -> bytes:
        if reason == "malformed_json":
            whole = encode_json(body)
            return whole[: rng.randint(1, len(whole) - 1)]  # any proper prefix leaves a bracket open
        raise ValueError(f"{self.name} cannot break a message for {reason!r}")

    def oversized(self, sample: Sample, size: int, rng: random.Random) -> list[Message]:
        body = self.body(sample, rng)
        pad = max(0, size - len(encode_json(body)))
        payload = encode_json(self.pad(body, "x" * (pad + 64)))
        return [Message(self.topic(sample.device), payload, "rejected", "payload_too_large")]

    def pad(self, body: Any, filler: str) -> Any:
        return {**body, "firmware_dump": filler}

    def spoofed(self, sample: Sample, other: str, rng: random.Random) -> list[Message]:
        raise ValueError(f"{self.name} payloads cannot name a device")

    def _reading(self, sample: Sample, fields: dict[str, FieldValue], time_ms: int | None = None) -> ExpectedReading:
        received = not self.timed
        if time_ms is None:
            time_ms = sample.received_ms if received else sample.ts_ms
        return ExpectedReading(
            device=sample.device,
            time_ns=time_ms * _NS_PER_MS,
            fields=fields,
            tags={**sample.tags, **self.tags},
            id=f"{sample.boot}-{sample.seq}",
            seq=sample.seq,
            measurement=MEASUREMENT,
            received=received,
        )


class Native(Encoder):
    """The gateway's own schema on devices/{device}/telemetry: id, seq, ts, metrics, tags."""

    name = "native"
    unsupported = frozenset()
    reasons = (
        "malformed_json",
        "non_finite_value",
        "empty_metrics",
        "invalid_schema",
        "invalid_timestamp",
        "timestamp_in_future",
    )

    def topic(self, device: str) -> str:
        return f"devices/{device}/telemetry"

    def body(self, sample: Sample, rng: random.Random) -> Any:
        ts_ms = sample.ts_ms
        ts: str | int = rfc3339_ms(ts_ms) if rng.random() < RFC3339_SHARE else ts_ms
        body: dict[str, Any] = {"id": f"{sample.boot}-{sample.seq}", "seq": sample.seq, "ts": ts}
        if rng.random() < DEVICE_ID_SHARE:
            body["device_id"] = sample.device
        body["metrics"] = dict(sample.values)
        if sample.tags:
            body["tags"] = sample.tags
        return body

    def fields(self, sample: Sample) -> dict[str, FieldValue]:
        return {name: _field(value) for name, value in sample.values.items()}

    def break_body(self, body: Any, sample: Sample, reason: str, rng: random.Random) -> bytes:
        metrics = dict(body["metrics"])
        if reason == "non_finite_value":
            name = _numeric(sample, rng)
            if name is None:
                return encode_json({**body, "metrics": {"value": 1e308}}).replace(b"1e308", b"1e999")
            return _with_nan({**body, "metrics": {**metrics, name: _NAN_TEXT}})
        if reason == "empty_metrics":
            return encode_json({**body, "metrics": {}})
        if reason == "invalid_schema":
            name = rng.choice(sorted(metrics))
            metrics[name] = {"value": metrics[name]} if rng.random() < 0.5 else [metrics[name]]
            return encode_json({**body, "metrics": metrics})
        if reason == "invalid_timestamp":
            return encode_json({**body, "ts": "yesterday"})
        if reason == "timestamp_in_future":
            return encode_json({**body, "ts": sample.ts_ms + FUTURE_MS})
        return super().break_body(body, sample, reason, rng)

    def pad(self, body: Any, filler: str) -> Any:
        return {**body, "metrics": {**body["metrics"], "firmware_dump": filler}}

    def spoofed(self, sample: Sample, other: str, rng: random.Random) -> list[Message]:
        payload = encode_json({**self.body(sample, rng), "device_id": other})
        return [Message(self.topic(sample.device), payload, "rejected", "device_mismatch")]


class SenML(Encoder):
    """RFC 8428 packs on senml/{device}: base name and time in the first record; an energy counter is a sum."""

    name = "senml"
    reasons = (
        "malformed_json",
        "non_finite_value",
        "empty_metrics",
        "invalid_schema",
        "invalid_timestamp",
        "timestamp_in_future",
    )

    def topic(self, device: str) -> str:
        return f"senml/{device}"

    def body(self, sample: Sample, rng: random.Random) -> Any:
        records: list[dict[str, Any]] = []
        for name, value in sample.values.items():
            kind = sample.kinds[name]
            record: dict[str, Any] = {"n": name}
            if isinstance(value, bool):
                record["vb"] = value
            else:
                record["u"] = _SENML_UNITS[kind]
                record["s" if kind == "energy" else "v"] = value
            records.append(record)
        records[0] = {"bn": f"urn:dev:sim:{sample.device}:", "bt": sample.ts_ms / 1000, **records[0]}
        return records

    def fields(self, sample: Sample) -> dict[str, FieldValue]:
        return {
            f"{name}_sum" if sample.kinds[name] == "energy" else name: _field(value)
            for name, value in sample.values.items()
        }

    def break_body(self, body: Any, sample: Sample, reason: str, rng: random.Random) -> bytes:
        if reason == "non_finite_value":
            index = next((i for i, r in enumerate(body) if "v" in r or "s" in r), None)
            if index is not None:
                key = "v" if "v" in body[index] else "s"
                body[index] = {**body[index], key: _NAN_TEXT}
                return _with_nan(body)
            return encode_json([*body, {"n": "nan_value", "v": 1e308}]).replace(b"1e308", b"1e999")
        if reason == "empty_metrics":
            return b"[]"
        if reason == "invalid_schema":
            return encode_json([*body, {"n": "no_value", "u": "Cel"}])
        if reason == "invalid_timestamp":
            return encode_json([{**body[0], "bt": "now"}, *body[1:]])
        if reason == "timestamp_in_future":
            return encode_json([{**body[0], "bt": (sample.ts_ms + FUTURE_MS) / 1000}, *body[1:]])
        return super().break_body(body, sample, reason, rng)

    def pad(self, body: Any, filler: str) -> Any:
        return [*body, {"n": "firmware_dump", "vs": filler}]


class Zigbee2Mqtt(Encoder):
    """Flat JSON on zigbee2mqtt/{device}: no timestamp (stored at receive time), switches as "ON"/"OFF"."""

    name = "zigbee2mqtt"
    timed = False
    unsupported = _UNTIMED
    tags = {"source": "zigbee2mqtt"}
    reasons = ("malformed_json", "non_finite_value", "empty_metrics", "invalid_schema")

    def topic(self, device: str) -> str:
        return f"zigbee2mqtt/{device}"

    def body(self, sample: Sample, rng: random.Random) -> Any:
        body: dict[str, Any] = {n: _switch(v) if isinstance(v, bool) else v for n, v in sample.values.items()}
        body["linkquality"] = 40 + sample.seq * 7 % 200  # varies, and is a field like any other
        return body

    def fields(self, sample: Sample) -> dict[str, FieldValue]:
        fields = {name: _field(value) for name, value in sample.values.items()}
        fields["linkquality"] = float(40 + sample.seq * 7 % 200)
        return fields

    def break_body(self, body: Any, sample: Sample, reason: str, rng: random.Random) -> bytes:
        if reason == "non_finite_value":
            name = _numeric(sample, rng) or "linkquality"
            return _with_nan({**body, name: _NAN_TEXT})
        if reason == "empty_metrics":
            return encode_json({"action": ""})  # a remote's idle event: nothing to store
        if reason == "invalid_schema":
            return encode_json("online")  # JSON, but not an object
        return super().break_body(body, sample, reason, rng)


class Tasmota(Encoder):
    """tele/{device}/SENSOR: nested by sensor, "Time" local (the example mapping: UTC) in whole seconds."""

    name = "tasmota"
    unsupported = frozenset({"spoofed_id", "burst"})  # whole seconds: a burst would share its stamps
    tags = {"source": "tasmota"}
    reasons = ("malformed_json", "non_finite_value", "empty_metrics", "invalid_timestamp", "timestamp_in_future")

    def topic(self, device: str) -> str:
        return f"tele/{device}/SENSOR"

    def body(self, sample: Sample, rng: random.Random) -> Any:
        body: dict[str, Any] = {"Time": _local_time(sample.ts_ms)}
        for name, value in sample.values.items():
            kind = sample.kinds[name]
            if kind in ("temperature", "humidity", "pressure"):
                body.setdefault("BME280", {})[_cap(name)] = value
            elif kind == "energy":
                body.setdefault("ENERGY", {"TotalStartTime": "2026-01-01T00:00:00"})[_cap(name)] = value
            else:
                body[_cap(name)] = _switch(value) if isinstance(value, bool) else value
        body["TempUnit"] = "C"
        return body

    def fields(self, sample: Sample) -> dict[str, FieldValue]:
        fields: dict[str, FieldValue] = {}
        for name, value in sample.values.items():
            kind = sample.kinds[name]
            prefix = (
                "BME280_" if kind in ("temperature", "humidity", "pressure") else "ENERGY_" if kind == "energy" else ""
            )
            fields[prefix + _cap(name)] = _field(value)
        return fields

    def encode(self, sample: Sample, rng: random.Random) -> list[Message]:
        payload = encode_json(self.body(sample, rng))
        reading = self._reading(sample, self.fields(sample), sample.ts_ms // 1000 * 1000)
        return [Message(self.topic(sample.device), payload, "valid", None, reading)]

    def break_body(self, body: Any, sample: Sample, reason: str, rng: random.Random) -> bytes:
        if reason == "non_finite_value":
            section = body.get("BME280") or body.get("ENERGY")
            if section is not None:
                key = next(k for k in section if k != "TotalStartTime")
                section[key] = _NAN_TEXT
                return _with_nan(body)
            return _with_nan({**body, "Value": _NAN_TEXT})
        if reason == "empty_metrics":
            return encode_json({"Time": body["Time"], "TempUnit": "C"})
        if reason == "invalid_timestamp":
            return encode_json({**body, "Time": "2026-13-45T25:61:00"})
        if reason == "timestamp_in_future":
            return encode_json({**body, "Time": _local_time(sample.ts_ms + FUTURE_MS)})
        return super().break_body(body, sample, reason, rng)


class ESPHome(Encoder):
    """One bare value per sensor on {device}/sensor/{name}/state; no timestamp (stored at receive time)."""

    name = "esphome"
    timed = False
    unsupported = _UNTIMED
    tags = {"source": "esphome"}
    reasons = ("non_finite_value", "invalid_value")

    def topic(self, device: str, sensor: str = "") -> str:
        return f"{device}/sensor/{sensor}/state"

    def encode(self, sample: Sample, rng: random.Random) -> list[Message]:
        return [
            Message(
                self.topic(sample.device, name),
                _bare(value),
                "valid",
                None,
                self._reading(sample, {name: _field(value)}),
            )
            for name, value in sample.values.items()
        ]

    def broken(self, sample: Sample, reason: str, rng: random.Random) -> list[Message]:
        messages = self.encode(sample, rng)
        i = rng.randrange(len(messages))
        bad = b"nan" if reason == "non_finite_value" else b"unknown"
        messages[i] = Message(messages[i].topic, bad, "rejected", reason)
        return messages

    def oversized(self, sample: Sample, size: int, rng: random.Random) -> list[Message]:
        messages = self.encode(sample, rng)
        i = rng.randrange(len(messages))
        messages[i] = Message(messages[i].topic, b"1" * size, "rejected", "payload_too_large")
        return messages


def _bare(value: Value) -> bytes:
    return (_switch(value) if isinstance(value, bool) else repr(float(value))).encode()


ENCODERS: dict[str, Encoder] = {e.name: e for e in (Native(), SenML(), Zigbee2Mqtt(), Tasmota(), ESPHome())}


def rfc3339_ms(ms: int) -> str:
    seconds, rest = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:03d}Z"


def _local_time(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
