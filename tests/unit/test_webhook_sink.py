"""The webhook sink against a real local HTTP receiver: only alerts are posted, as one JSON body; errors classified."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.config.schema import ALERTS_MEASUREMENT, WebhookConfig
from gateway.errors import PermanentSinkError, RetryableSinkError
from gateway.model import Reading
from gateway.sinks.webhook import WebhookSink
from tests.support.http_double import Answer, HttpDouble
from tests.support.servers import free_port

T0 = 1_718_000_000_123_000_000  # 2024-06-10T06:13:20.123Z


@pytest.fixture
def receiver() -> Iterator[HttpDouble]:
    """A webhook receiver on a free port: records every request, answers with `answer` (204 by default)."""
    server = HttpDouble("webhook-receiver")
    yield server
    server.close()


def hook(receiver: HttpDouble) -> str:
    return f"{receiver.url}/hook"


@pytest.fixture
def sink(receiver: HttpDouble) -> Iterator[WebhookSink]:
    webhook = WebhookSink(WebhookConfig(url=hook(receiver), timeout_s=5))
    yield webhook
    webhook.close()


def alert(device: str = "boiler-1", transition: str = "firing", **fields: float | str) -> Reading:
    state = "resolved" if transition == "resolved" else "firing"
    return Reading(
        device,
        ALERTS_MEASUREMENT,
        T0,
        {"state": state, "transition": transition, "starts_at_ns": float(T0 - 60_000_000_000), **fields},
        {"rule": "too-hot", "severity": "critical", "kind": "threshold", "site": "plant-2"},
        f"alert/{device}/{transition}",
    )


def telemetry(device: str = "boiler-1") -> Reading:
    return Reading(device, "telemetry", T0, {"temperature": 21.5}, {}, f"{device}/1")


def posted(receiver: HttpDouble) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = []
    for request in receiver.requests:
        alerts += json.loads(request.body)["alerts"]
    return alerts


def test_posts_only_alerts_in_one_request(receiver: HttpDouble, sink: WebhookSink) -> None:
    sink.write([telemetry(), alert("boiler-1"), telemetry("boiler-2"), alert("boiler-2", "resolved")])
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert [(a["device"], a["transition"]) for a in posted(receiver)] == [
        ("boiler-1", "firing"),
        ("boiler-2", "resolved"),
    ]


def test_body_shape(receiver: HttpDouble, sink: WebhookSink) -> None:
    firing = alert(value=97.5, threshold=90.0, trigger_id="boiler-1/42")
    resolved = alert(transition="resolved", ends_at_ns=float(T0 + 1_000_000_000))
    sink.write([firing, resolved])
    first, second = posted(receiver)
    assert first == {
        "rule": "too-hot",
        "device": "boiler-1",
        "severity": "critical",
        "kind": "threshold",
        "labels": {"site": "plant-2"},
        "state": "firing",
        "transition": "firing",
        "value": 97.5,
        "threshold": 90.0,
        "reading_id": "boiler-1/42",
        "alert_id": "alert/boiler-1/firing",
        "starts_at": "2024-06-10T06:12:20.123Z",
        "ends_at": None,
        "at": "2024-06-10T06:13:20.123Z",
    }
    assert (second["state"], second["value"], second["threshold"], second["reading_id"]) == (
        "resolved",
        None,
        None,
        None,
    )
    assert second["ends_at"] == "2024-06-10T06:13:21.123Z"


def test_configured_headers_are_sent(receiver: HttpDouble) -> None:
    config = WebhookConfig(
        url=hook(receiver), headers={"Authorization": SecretStr("Bearer t0ken"), "X-Team": SecretStr("ops")}
    )
    webhook = WebhookSink(config)
    try:
        webhook.write([alert()])
    finally:
        webhook.close()
    headers = receiver.requests[0].headers
    assert (headers["authorization"], headers["x-team"], headers["content-type"]) == (
        "Bearer t0ken",
        "ops",
        "application/json",
    )


def test_a_batch_without_alerts_sends_nothing(receiver: HttpDouble, sink: WebhookSink) -> None:
    sink.write([telemetry(), telemetry("boiler-2")])
    sink.write([])
    assert receiver.requests == []


def test_does_not_count_as_storing_readings() -> None:
    assert WebhookSink.counts_readings is False


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_success(status: int, receiver: HttpDouble, sink: WebhookSink) -> None:
    receiver.answer = Answer(status, body=b"" if status == 204 else b'{"ok": true}')
    sink.write([alert()])
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        pytest.param(503, {"Retry-After": "7"}, 7.0, id="503-retry-after"),
        pytest.param(429, {"Retry-After": "3"}, 3.0, id="429-retry-after"),
        pytest.param(500, {"Retry-After": "9"}, None, id="500-ignores-retry-after"),
        pytest.param(502, {}, None, id="502"),
        pytest.param(408, {}, None, id="408"),
        pytest.param(401, {}, None, id="401-config-problem"),
        pytest.param(403, {}, None, id="403-config-problem"),
        pytest.param(404, {}, None, id="404-config-problem"),
    ],
)
def test_retryable_statuses(
    status: int, headers: dict[str, str], retry_after: float | None, receiver: HttpDouble, sink: WebhookSink
) -> None:
    receiver.answer = Answer(status, headers, b"try later")
    with pytest.raises(RetryableSinkError) as info:
        sink.write([alert()])
    assert info.value.retry_after == retry_after
    assert f"HTTP {status}" in str(info.value)


@pytest.mark.parametrize("status", [400, 413, 422])
def test_other_4xx_is_permanent_with_the_servers_message(status: int, receiver: HttpDouble, sink: WebhookSink) -> None:
    receiver.answer = Answer(status, body=b"bad alert: " + b"x" * 500)
    with pytest.raises(PermanentSinkError) as info:
        sink.write([alert()])
    message = str(info.value)
    assert message.startswith(f"HTTP {status}: bad alert: x")
    assert len(message) <= len(f"HTTP {status}: ") + 200


def test_connection_refused_is_retryable_and_keeps_headers_out() -> None:
    config = WebhookConfig(url=f"http://127.0.0.1:{free_port()}/hook", headers={"Authorization": SecretStr("tok-9")})
    webhook = WebhookSink(config)
    try:
        with pytest.raises(RetryableSinkError) as info:
            webhook.write([alert()])
    finally:
        webhook.close()
    assert info.value.retry_after is None
    assert "tok-9" not in str(info.value)


def test_timeout_is_retryable(receiver: HttpDouble) -> None:
    gate = threading.Event()
    original = receiver.server.RequestHandlerClass.do_POST  # type: ignore[attr-defined]

    def slow(handler: BaseHTTPRequestHandler) -> None:
        gate.wait(5)
        original(handler)

    receiver.server.RequestHandlerClass.do_POST = slow  # type: ignore[attr-defined]
    webhook = WebhookSink(WebhookConfig(url=hook(receiver), timeout_s=0.2))
    try:
        with pytest.raises(RetryableSinkError):
            webhook.write([alert()])
    finally:
        gate.set()
        webhook.close()
