"""Test messages built the same way everywhere: distinct native readings as (topic, payload)."""

from __future__ import annotations

import orjson


def native_messages(
    device: str, count: int, start: int = 0, *, devices: int = 1, ts_ms: int | None = None
) -> list[tuple[str, bytes]]:
    """`count` distinct native readings n = start, start + 1, ... (id `<device>-<n>`, metric t = n), each one
    sample and one row: from `device`, or spread over `<device>-0` ... `<device>-<devices - 1>` when `devices` > 1;
    with device timestamps `ts_ms + n` when given (else the gateway's receive time)."""
    messages = []
    for n in range(start, start + count):
        name = device if devices == 1 else f"{device}-{n % devices}"
        body: dict[str, object] = {"id": f"{name}-{n}", "metrics": {"t": n}}
        if ts_ms is not None:
            body["ts"] = ts_ms + n
        messages.append((f"devices/{name}/telemetry", orjson.dumps(body)))
    return messages
