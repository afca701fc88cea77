"""Webhook sink: posts the alert points (measurement `alerts`) of each batch as one JSON request.

It sees every reading of the outbox and skips all but alerts. A retried batch is posted again, so a receiver
that must not notify twice deduplicates on `alert_id` (the alert point's reading id, stable across retries).
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Sequence
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError

from gateway.config.schema import ALERTS_MEASUREMENT, WebhookConfig
from gateway.errors import PermanentSinkError, RetryableSinkError
from gateway.model import FieldValue, Reading

# Same policy as the influx sink: 401/403/404 mean a wrong token or URL, which the operator fixes while the
# alerts wait in the journal, instead of dead-lettering them.
_RETRYABLE_STATUS = frozenset({401, 403, 404, 408, 429})
_RETRY_AFTER_STATUS = frozenset({429, 503})
_OWN_TAGS = frozenset({"rule", "severity", "kind"})


class WebhookSink:
    name = "webhook"
    counts_readings = False  # it stores no device readings: gateway_readings_stored{sink} stays out of it

    def __init__(self, config: WebhookConfig, http: urllib3.PoolManager | None = None) -> None:
        self._url = config.url
        self._headers = {name: value.get_secret_value() for name, value in config.headers.items()}
        self._headers["Content-Type"] = "application/json"
        self._timeout = urllib3.Timeout(total=config.timeout_s)
        self._http = http or urllib3.PoolManager(maxsize=1)

    def write(self, readings: Sequence[Reading]) -> None:
        alerts = [alert_json(r) for r in readings if r.measurement == ALERTS_MEASUREMENT]
        if not alerts:
            return
        body = json.dumps({"alerts": alerts}, separators=(",", ":")).encode()
        try:
            # retries=False: the sink worker's loop, with the journal behind it, owns retrying.
            response = self._http.request(
                "POST",
                self._url,
                body=body,
                headers=self._headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
        except (HTTPError, OSError) as exc:
            # The message names the host and the error, never the headers.
            raise RetryableSinkError(f"{type(exc).__name__}: {exc}") from None
        status = response.status
        if 200 <= status < 300:
            return
        reason = response.data.decode(errors="replace").strip()[:200] or (response.reason or "")
        retry_after = _retry_after(response.headers.get("Retry-After")) if status in _RETRY_AFTER_STATUS else None
        if status in _RETRYABLE_STATUS or status >= 500:
            raise RetryableSinkError(f"HTTP {status}: {reason}", retry_after)
        # 3xx (redirects are not followed: a POST body must not be resent elsewhere unasked) and other 4xx.
        raise PermanentSinkError(f"HTTP {status}: {reason}")

    def close(self) -> None:
        self._http.clear()


def alert_json(reading: Reading) -> dict[str, Any]:
    """One alert point as the webhook's JSON object."""
    fields, tags = reading.fields, reading.tags
    trigger = fields.get("trigger_id")
    return {
        "rule": tags.get("rule"),
        "device": reading.device,
        "severity": tags.get("severity"),
        "kind": tags.get("kind"),
        "labels": {k: v for k, v in tags.items() if k not in _OWN_TAGS},
        "state": fields.get("state"),
        "transition": fields.get("transition"),
        "value": _number(fields.get("value")),
        "threshold": _number(fields.get("threshold")),
        "reading_id": trigger if isinstance(trigger, str) else None,
        "alert_id": reading.reading_id,
        "starts_at": _rfc3339(fields.get("starts_at_ns")),
        "ends_at": _rfc3339(fields.get("ends_at_ns")),
        "at": _rfc3339(reading.time_ns),
    }


def _number(value: FieldValue | None) -> float | None:
    """A finite number or None: NaN and infinities are not JSON."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _rfc3339(ns: FieldValue | None) -> str | None:
    """Nanoseconds since the epoch as e.g. 2024-06-10T06:13:20.123Z (UTC, milliseconds)."""
    if isinstance(ns, bool) or not isinstance(ns, int | float) or not math.isfinite(ns):
        return None
    seconds, millis = divmod(int(ns) // 1_000_000, 1000)
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
    except (OverflowError, OSError, ValueError):  # beyond what the platform's gmtime takes
        return None


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds or as an HTTP date (RFC 9110 allows both)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - time.time())
