"""InfluxSink, in process and in its child process, against a small HTTP double: what it sends, and how it
classifies the InfluxDB HTTP answers (a real server cannot be made to answer 429, 503 or 400 on demand).
"""

from __future__ import annotations

import email.utils
import gzip
import time
from collections.abc import Iterator

import pytest

from gateway.errors import PermanentSinkError, RetryableSinkError
from gateway.sinks import Sink
from gateway.sinks.influx import InfluxSink
from gateway.sinks.lineprotocol import LineEncoder
from tests.support.http_double import Answer, HttpDouble
from tests.support.sink_batches import fleet_batch
from tests.support.store_readers import influx_config, influx_process_sink


@pytest.fixture
def double() -> Iterator[HttpDouble]:
    """The InfluxDB write endpoint's double: records each request and gives the answer it is told to."""
    server = HttpDouble("influx-double")
    yield server
    server.close()


@pytest.fixture(params=["in-process", "child-process"])
def influx(double: HttpDouble, request: pytest.FixtureRequest) -> Iterator[Sink]:
    """The sink itself, and the sink as `gateway run` builds it: in a child process, whose answers must be the
    sink's own (the error's class, message and Retry-After cross the pipe)."""
    config = influx_config(double.url)
    sink: Sink = InfluxSink(config) if request.param == "in-process" else influx_process_sink(config)
    yield sink
    sink.close()


def _write_and_catch(sink: Sink, double: HttpDouble, answer: Answer) -> RetryableSinkError | PermanentSinkError:
    double.answer = answer
    with pytest.raises((RetryableSinkError, PermanentSinkError)) as raised:
        sink.write(fleet_batch())
    assert len(double.requests) == 1, "exactly one request: retrying is the pipeline's job"
    assert isinstance(raised.value, RetryableSinkError | PermanentSinkError)
    return raised.value


def test_influx_sends_gzipped_line_protocol_to_bucket_and_org_in_ns(influx: Sink, double: HttpDouble) -> None:
    influx.write([])
    assert double.requests == [], "an empty batch sends nothing"

    batch = fleet_batch()
    influx.write(batch)
    (request,) = double.requests
    assert request.path == "/api/v2/write"
    assert request.query == {"org": ["iot"], "bucket": ["telemetry"], "precision": ["ns"]}
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["authorization"] == "Token test-token"
    body = gzip.decompress(request.body)
    assert body == LineEncoder().encode(batch)
    lines = body.decode().split("\n")
    assert len(lines) == len(batch)
    # precision=ns matches what the lines carry: full nanosecond timestamps.
    assert [int(line.rsplit(" ", 1)[1]) for line in lines] == [r.time_ns for r in batch]


@pytest.mark.parametrize(
    ("answer", "error", "retry_after"),
    [
        pytest.param(Answer(429, {"Retry-After": "7"}), RetryableSinkError, 7.0, id="429-retry-after-seconds"),
        pytest.param(Answer(500, {}, b'{"code":"internal error"}'), RetryableSinkError, None, id="500-no-header"),
        pytest.param(
            Answer(
                401, {"Content-Type": "application/json"}, b'{"code":"unauthorized","message":"unauthorized access"}'
            ),
            RetryableSinkError,  # a wrong token is a config problem, not bad data: never dead-letter for it
            None,
            id="401",
        ),
        pytest.param(
            Answer(404, {}, b'{"code":"not found","message":"bucket not found"}'),
            RetryableSinkError,
            None,
            id="404-bucket",
        ),
        pytest.param(Answer(422, {}, b'{"code":"unprocessable entity"}'), PermanentSinkError, None, id="422"),
    ],
)
def test_influx_status_classification(
    influx: Sink, double: HttpDouble, answer: Answer, error: type[Exception], retry_after: float | None
) -> None:
    exc = _write_and_catch(influx, double, answer)
    assert type(exc) is error
    assert f"HTTP {answer.status}" in str(exc)
    if isinstance(exc, RetryableSinkError):
        assert exc.retry_after == retry_after


def test_influx_503_retry_after_http_date(influx: Sink, double: HttpDouble) -> None:
    when = int(time.time()) + 30
    exc = _write_and_catch(influx, double, Answer(503, {"Retry-After": email.utils.formatdate(when, usegmt=True)}))
    assert isinstance(exc, RetryableSinkError)
    assert exc.retry_after is not None
    assert abs(exc.retry_after - (when - time.time())) < 1.0


def test_influx_400_is_permanent_and_names_the_stores_reason(influx: Sink, double: HttpDouble) -> None:
    body = b'{"code":"invalid","message":"partial write: unable to parse \'x\': bad"}'
    exc = _write_and_catch(influx, double, Answer(400, {"Content-Type": "application/json"}, body))
    assert isinstance(exc, PermanentSinkError)
    assert "HTTP 400" in str(exc)
    assert "partial write: unable to parse 'x': bad" in str(exc)
