"""InfluxDB 2.x sink: line protocol we encode ourselves, one synchronous gzip'd request a batch.

influxdb-client's batching WriteApi keeps its buffer in memory and reports failures only to a callback, so
the gateway batches itself (from the journal) and calls the write service directly. It compresses the body
itself, at level 1: the client's own gzip runs at level 9, which cost more CPU than the rest of the write.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService
from urllib3.exceptions import HTTPError

from gateway.config.schema import InfluxConfig
from gateway.errors import PermanentSinkError, RetryableSinkError
from gateway.model import Reading
from gateway.retry import retry_after_s
from gateway.sinks.lineprotocol import LineEncoder

# 401/403/404 mean a wrong token, permission or bucket: the data is fine and a fixed config will take it,
# so they are retried (and logged) like an outage instead of dead-lettering every reading.
_RETRYABLE_STATUS = frozenset({401, 403, 404, 408, 429, 500, 502, 503, 504})


class InfluxSink:
    name = "influx"

    def __init__(self, config: InfluxConfig) -> None:
        self._config = config
        token = config.token.get_secret_value() if config.token else ""
        # retries=False: our own retry loop, with the journal of batches behind it, owns retrying.
        self._client = InfluxDBClient(
            url=config.url,
            token=token,
            org=config.org,
            enable_gzip=False,  # see the module docstring
            timeout=int(config.timeout_s * 1000),
            verify_ssl=config.verify_ssl,
            retries=False,
        )
        self._write_service = WriteService(self._client.api_client)  # type: ignore[no-untyped-call]
        self._encoder = LineEncoder()

    def write(self, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        body = self._encoder.encode(readings)
        encoding = "identity"
        if self._config.gzip:
            body, encoding = gzip.compress(body, compresslevel=1), "gzip"
        try:
            self._write_service.post_write(  # type: ignore[no-untyped-call]
                org=self._config.org,
                bucket=self._config.bucket,
                body=body,
                precision="ns",
                content_encoding=encoding,
                content_type="text/plain; charset=utf-8",
            )
        except ApiException as exc:
            status = exc.status or 0
            reason = _reason(exc)
            if status in _RETRYABLE_STATUS or status == 0:
                raise RetryableSinkError(f"HTTP {status}: {reason}", _retry_after(exc)) from None
            raise PermanentSinkError(f"HTTP {status}: {reason}") from None
        except (HTTPError, OSError) as exc:
            raise RetryableSinkError(f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def _reason(exc: ApiException) -> str:
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or exc.reason)
    return body.strip()[:500]


def _retry_after(exc: ApiException) -> float | None:
    headers: dict[str, str] = dict(exc.headers or {})
    return retry_after_s(headers.get("Retry-After") or headers.get("retry-after"))
