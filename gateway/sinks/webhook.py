"""Webhook sink: posts the alert points (measurement `alerts`) of each batch as one JSON request.

It sees every reading of the outbox and skips all but alerts. A retried batch is posted again, so a receiver
that must not notify twice deduplicates on `alert_id` (the alert point's reading id, stable across retries).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import urllib3
from urllib3.exceptions import HTTPError

from gateway.alerts.rendering import alert_document, alert_from_point
from gateway.config.schema import ALERTS_MEASUREMENT, WebhookConfig
from gateway.errors import PermanentSinkError, RetryableSinkError
from gateway.model import Reading
from gateway.retry import retry_after_s

# Same policy as the influx sink: 401/403/404 mean a wrong token or URL, which the operator fixes while the
# alerts wait in the journal, instead of dead-lettering them.
_RETRYABLE_STATUS = frozenset({401, 403, 404, 408, 429})
_RETRY_AFTER_STATUS = frozenset({429, 503})


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
        alerts = []
        for point in readings:
            alert = alert_from_point(point) if point.measurement == ALERTS_MEASUREMENT else None
            if alert is not None:
                alerts.append(alert_document(alert, point.reading_id))
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
        retry_after = retry_after_s(response.headers.get("Retry-After")) if status in _RETRY_AFTER_STATUS else None
        if status in _RETRYABLE_STATUS or status >= 500:
            raise RetryableSinkError(f"HTTP {status}: {reason}", retry_after)
        # 3xx (redirects are not followed: a POST body must not be resent elsewhere unasked) and other 4xx.
        raise PermanentSinkError(f"HTTP {status}: {reason}")

    def close(self) -> None:
        self._http.clear()
