"""Validation and the ingest step: a RawMessage becomes new readings, counted duplicates, or one rejection."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from gateway.config.schema import ValidationConfig
from gateway.errors import PayloadRejected
from gateway.ingest.ingestor import Ingestor, Outcome
from gateway.ingest.validate import Validator
from gateway.model import RawMessage, Reading

TOPIC = "devices/boiler-17/telemetry"
NS = 1_000_000_000

MakeIngestor = Callable[..., Ingestor]


def raw(
    payload: bytes | dict[str, Any] | list[Any], topic: str = TOPIC, received_at_ns: int | None = None
) -> RawMessage:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return RawMessage(topic, body, 1, time.time_ns() if received_at_ns is None else received_at_ns)


def rejected(outcome: Outcome) -> str:
    assert outcome.rejection is not None, f"expected a rejection, got {outcome}"
    assert outcome.readings == []
    assert outcome.duplicates == 0
    return outcome.rejection.reason


def accepted(outcome: Outcome) -> list[Reading]:
    assert outcome.rejection is None, f"unexpected rejection {outcome.rejection}"
    return outcome.readings


# --- the happy path ---------------------------------------------------------------------------------------


def test_valid_message_becomes_a_reading(ingestor: Ingestor) -> None:
    message = raw({"id": "m1", "ts": "2026-11-27T10:15:00Z", "metrics": {"t": 21.5}, "tags": {"site": "a"}})
    (reading,) = accepted(ingestor.process(message))
    assert reading.device == "boiler-17"
    assert reading.measurement == "telemetry"
    assert reading.fields == {"t": 21.5}
    assert reading.tags == {"site": "a"}
    assert reading.reading_id == "m1"


def test_mapping_names_the_measurement(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(
        mappings=[
            {"topic": "site/{device}/data", "measurement": "plant"},
            {"topic": "devices/{device}/telemetry"},
        ]
    )
    (reading,) = accepted(ingestor.process(raw({"metrics": {"t": 1}}, topic="site/pump-3/data")))
    assert (reading.device, reading.measurement) == ("pump-3", "plant")
    (reading,) = accepted(ingestor.process(raw({"metrics": {"t": 1}}, topic=TOPIC)))
    assert (reading.device, reading.measurement) == ("boiler-17", "telemetry")
    assert ingestor.topic_filters == ["site/+/data", "devices/+/telemetry"]


def test_receive_timestamped_readings_are_counted(ingestor: Ingestor) -> None:
    outcome = ingestor.process(
        raw([{"metrics": {"t": 1}}, {"metrics": {"t": 2}, "ts": time.time()}, {"metrics": {"t": 3}}])
    )
    assert len(accepted(outcome)) == 3
    assert outcome.receive_timestamped == 2


# --- rejections -------------------------------------------------------------------------------------------


def test_rejection_keeps_the_message(ingestor: Ingestor) -> None:
    message = raw(b"{not json", received_at_ns=123)
    outcome = ingestor.process(message)
    assert rejected(outcome) == "malformed_json"
    assert outcome.rejection is not None
    assert outcome.rejection.topic == TOPIC
    assert outcome.rejection.payload == b"{not json"
    assert outcome.rejection.received_at_ns == 123
    assert outcome.rejection.device == "boiler-17"
    assert outcome.rejection.detail


def test_payload_size_limit(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(validation={"max_payload_bytes": 64})

    def payload_of(size: int) -> bytes:
        head, tail = b'{"metrics": {"t": 1}, "tags": {"pad": "', b'"}}'
        return head + b"x" * (size - len(head) - len(tail)) + tail

    assert len(payload_of(64)) == 64
    accepted(ingestor.process(raw(payload_of(64))))
    outcome = ingestor.process(raw(payload_of(65)))
    assert rejected(outcome) == "payload_too_large"
    assert outcome.rejection is not None
    assert "65" in outcome.rejection.detail


def test_oversized_payload_is_not_parsed(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(validation={"max_payload_bytes": 64})
    assert rejected(ingestor.process(raw(b"x" * 1000))) == "payload_too_large"  # not malformed_json


@pytest.mark.parametrize(
    "device",
    [
        pytest.param("dev 1", id="space"),
        pytest.param("dev+1", id="plus"),
        pytest.param("dev#1", id="hash"),
        pytest.param("dev,1", id="comma"),
        pytest.param("dev=1", id="equals"),
        pytest.param("dev\\1", id="backslash"),
        pytest.param('dev"1', id="quote"),
        pytest.param("dev\n", id="trailing-newline"),
        pytest.param("dev\nx", id="inner-newline"),
        pytest.param("-dev", id="leading-dash"),
        pytest.param("", id="empty"),
        pytest.param("a" * 129, id="too-long"),
        pytest.param("d\u00e9v", id="non-ascii"),
    ],
)
def test_bad_device_id_is_rejected(ingestor: Ingestor, device: str) -> None:
    outcome = ingestor.process(raw({"metrics": {"t": 1}}, topic=f"devices/{device}/telemetry"))
    assert rejected(outcome) == "invalid_device_id"
    assert outcome.rejection is not None
    assert outcome.rejection.device == device


@pytest.mark.parametrize("device", ["a", "boiler-17", "x.y:z@w_v-1", "A" * 128, "0"])
def test_good_device_id_is_accepted(ingestor: Ingestor, device: str) -> None:
    (reading,) = accepted(ingestor.process(raw({"metrics": {"t": 1}}, topic=f"devices/{device}/telemetry")))
    assert reading.device == device


def test_device_id_pattern_from_config(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(validation={"device_id_pattern": r"dev-\d+"})  # unanchored: the whole id must match
    accepted(ingestor.process(raw({"metrics": {"t": 1}}, topic="devices/dev-12/telemetry")))
    for device in ("dev-x", "dev-12x", "xdev-12"):
        assert rejected(ingestor.process(raw({"metrics": {"t": 1}}, topic=f"devices/{device}/telemetry"))) == (
            "invalid_device_id"
        )


def test_validator_device_check_uses_the_whole_id() -> None:
    validator = Validator(ValidationConfig())
    validator.check_device("boiler-17")
    for device in ("boiler-17\n", "boiler-17\n\n", "boiler-17 "):
        with pytest.raises(PayloadRejected):
            validator.check_device(device)


def test_timestamp_far_in_the_future(ingestor: Ingestor) -> None:
    outcome = ingestor.process(raw({"metrics": {"t": 1}, "ts": "2099-01-01T00:00:00Z"}))
    assert rejected(outcome) == "timestamp_in_future"


def test_future_limit_from_config(make_ingestor: MakeIngestor) -> None:
    soon = {"metrics": {"t": 1}, "ts": time.time() + 600}  # ten minutes ahead
    assert rejected(make_ingestor(validation={"max_future_s": 60}).process(raw(soon))) == "timestamp_in_future"
    accepted(make_ingestor(validation={"max_future_s": 3600}).process(raw(soon)))


def test_slightly_ahead_and_old_timestamps_are_fine(ingestor: Ingestor) -> None:
    accepted(ingestor.process(raw({"metrics": {"t": 1}, "ts": time.time() + 5})))  # device clock a bit fast
    accepted(ingestor.process(raw({"metrics": {"t": 1}, "ts": "2001-01-01T00:00:00Z"})))  # buffered for years


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'{"metrics": {"t": 1}, "ts": "0001-01-01T00:00:00Z"}', id="year-1"),
        pytest.param(b'{"metrics": {"t": 1}, "ts": "1677-09-21T00:00:00Z"}', id="before-int64-ns"),
        pytest.param(b'{"metrics": {"t": 1}, "ts": -10000000000000000000000000000000000000000}', id="huge-negative"),
        pytest.param(b'{"metrics": {"t": 1}, "ts": 1' + b"0" * 400 + b"}", id="huge-positive-int"),
        pytest.param(b'{"metrics": {"t": 1}, "ts": -1e300}', id="huge-negative-float"),
    ],
)
def test_timestamp_outside_what_a_store_can_hold(ingestor: Ingestor, payload: bytes) -> None:
    # One such reading would fail a whole batch at the sink; a huge int once raised OverflowError here.
    assert rejected(ingestor.process(raw(payload))) in {"timestamp_out_of_range", "timestamp_in_future"}


def test_earliest_storable_day_is_accepted(ingestor: Ingestor) -> None:
    # The earliest instant every store keeps alike (gateway.ingest.validate.MIN_TIME_NS); earlier is out of range.
    accepted(ingestor.process(raw({"metrics": {"t": 1}, "ts": "2000-01-01T00:00:00Z"})))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param({"metrics": {"t": 1}, "tags": {"device": "other"}}, "reserved_tag", id="reserved-device-tag"),
        pytest.param({"metrics": {"a\nb": 1}}, "invalid_name", id="metric-name-newline"),
        pytest.param({"metrics": {"a\rb": 1}}, "invalid_name", id="metric-name-carriage-return"),
        pytest.param({"metrics": {"a\x00b": 1}}, "invalid_name", id="metric-name-nul"),
        pytest.param({"metrics": {"": 1}}, "invalid_name", id="metric-name-empty"),
        pytest.param({"metrics": {"m" * 257: 1}}, "invalid_name", id="metric-name-too-long"),
        pytest.param({"metrics": {"t": 1}, "tags": {"a\nb": "x"}}, "invalid_name", id="tag-name-newline"),
        pytest.param({"metrics": {"t": 1}, "tags": {"": "x"}}, "invalid_name", id="tag-name-empty"),
        pytest.param({"metrics": {"t": 1}, "tags": {"site": "a\nb"}}, "invalid_name", id="tag-value-newline"),
        pytest.param({"metrics": {"t": 1}, "tags": {"site": "a\tb"}}, "invalid_name", id="tag-value-tab"),
        pytest.param({"metrics": {"t": 1}, "tags": {"site": ""}}, "invalid_name", id="tag-value-empty"),
        pytest.param({"metrics": {"note": "line1\nline2"}}, "invalid_value", id="string-value-newline"),
        pytest.param(
            [{"metrics": {"t": 1}}, {"metrics": {"bad\nname": 1}}],
            "invalid_name",
            id="one-bad-reading-in-array",
        ),
    ],
)
def test_names_and_tags_that_cannot_be_stored(ingestor: Ingestor, payload: Any, reason: str) -> None:
    assert rejected(ingestor.process(raw(payload))) == reason


def test_names_with_line_protocol_specials_are_fine(ingestor: Ingestor) -> None:
    # The encoder escapes these; rejecting them would lose real data. (A double quote in a metric name is refused:
    # VictoriaMetrics cannot take it, test_input_fidelity.py; in a tag it is fine.)
    payload = {"metrics": {"temp, C=": 1, "say \\hi": "a \\ b"}, "tags": {"site name": 'a,b=c "d"'}}
    (reading,) = accepted(ingestor.process(raw(payload)))
    assert reading.tags == {"site name": 'a,b=c "d"'}
    assert ingestor.process(raw({"metrics": {"m" * 256: 1}})).rejection is None


@pytest.mark.parametrize(
    "topic",
    [
        pytest.param("other/boiler-17/telemetry", id="other-prefix"),
        pytest.param("devices/boiler-17", id="too-few-levels"),
        pytest.param("devices/boiler-17/telemetry/extra", id="too-many-levels"),
        pytest.param("devices/boiler-17/status", id="other-suffix"),
        pytest.param("", id="empty"),
    ],
)
def test_topic_matching_no_mapping(ingestor: Ingestor, topic: str) -> None:
    outcome = ingestor.process(raw({"metrics": {"t": 1}}, topic=topic))
    assert rejected(outcome) == "no_mapping"
    assert outcome.rejection is not None
    assert outcome.rejection.device is None


def test_decode_rejections_pass_through(ingestor: Ingestor) -> None:
    assert rejected(ingestor.process(raw(b'{"metrics": {"t": NaN}}'))) == "non_finite_value"
    assert rejected(ingestor.process(raw({"metrics": {"t": 1}, "device_id": "boiler-99"}))) == "device_mismatch"


# --- duplicates -------------------------------------------------------------------------------------------


def test_redelivered_message_is_a_duplicate(ingestor: Ingestor) -> None:
    message = raw({"id": "m1", "metrics": {"t": 1}})
    first = ingestor.process(message)
    assert len(accepted(first)) == 1
    assert first.duplicates == 0
    again = ingestor.process(message._replace(received_at_ns=message.received_at_ns + NS))
    assert accepted(again) == []
    assert again.duplicates == 1
    other = ingestor.process(raw({"id": "m2", "metrics": {"t": 1}}))
    assert (len(accepted(other)), other.duplicates) == (1, 0)


def test_resent_seq_and_content_are_duplicates(ingestor: Ingestor) -> None:
    by_seq = {"seq": 7, "metrics": {"t": 1}}
    by_content = {"ts": "2026-11-27T10:15:00Z", "metrics": {"t": 1}}
    for payload in (by_seq, by_content):
        # As the broker resends a message: same packet id, DUP flag (without ts, seq alone cannot tell a resend
        # from a reboot; the redelivery is what is recognised).
        message = raw(payload)._replace(ack_token=(1, 7), delivery_slot=7)
        assert ingestor.process(message).duplicates == 0
        assert ingestor.process(message._replace(received_at_ns=time.time_ns(), dup=True)).duplicates == 1


def test_same_id_on_another_device_is_not_a_duplicate(ingestor: Ingestor) -> None:
    ingestor.process(raw({"id": "m1", "metrics": {"t": 1}}, topic="devices/a/telemetry"))
    outcome = ingestor.process(raw({"id": "m1", "metrics": {"t": 1}}, topic="devices/b/telemetry"))
    assert (len(accepted(outcome)), outcome.duplicates) == (1, 0)


def test_array_with_one_duplicate_among_new_readings(ingestor: Ingestor) -> None:
    ingestor.process(raw({"id": "r1", "metrics": {"t": 1}}))
    outcome = ingestor.process(
        raw(
            [
                {"id": "r1", "metrics": {"t": 1}},
                {"id": "r2", "metrics": {"t": 2}},
                {"id": "r3", "metrics": {"t": 3}},
            ]
        )
    )
    assert [r.reading_id for r in accepted(outcome)] == ["r2", "r3"]
    assert outcome.duplicates == 1


def test_duplicate_within_one_array(ingestor: Ingestor) -> None:
    outcome = ingestor.process(raw([{"id": "r1", "metrics": {"t": 1}}, {"id": "r1", "metrics": {"t": 1}}]))
    assert (len(accepted(outcome)), outcome.duplicates) == (1, 1)


def test_rejected_message_leaves_no_dedup_keys(ingestor: Ingestor) -> None:
    bad = raw([{"id": "r5", "metrics": {"t": 1}}, {"id": "r6", "metrics": {"bad\nname": 1}}])
    assert rejected(ingestor.process(bad)) == "invalid_name"
    # Had r5 been remembered, its corrected re-send would be dropped as a duplicate and lost.
    outcome = ingestor.process(raw([{"id": "r5", "metrics": {"t": 1}}, {"id": "r6", "metrics": {"ok": 1}}]))
    assert (len(accepted(outcome)), outcome.duplicates) == (2, 0)


def test_dedup_window_from_config(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(dedup={"window_s": 2})
    now = time.time_ns()
    message = raw({"id": "m1", "metrics": {"t": 1}}, received_at_ns=now)
    assert ingestor.process(message).duplicates == 0
    assert ingestor.process(message._replace(received_at_ns=now + 1 * NS)).duplicates == 1
    assert ingestor.process(message._replace(received_at_ns=now + 3 * NS)).duplicates == 0  # expired: new again
    window = ingestor.dedup_window
    assert window is not None
    assert window.window_ns == 2 * NS


def test_dedup_max_entries_from_config(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(dedup={"max_entries": 2})
    for n in range(5):
        ingestor.process(raw({"id": f"m{n}", "metrics": {"t": 1}}))
    window = ingestor.dedup_window
    assert window is not None
    assert len(window) == 2


def test_dedup_disabled(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(dedup={"enabled": False})
    message = raw({"id": "m1", "metrics": {"t": 1}})
    for _ in range(2):
        outcome = ingestor.process(message)
        assert (len(accepted(outcome)), outcome.duplicates) == (1, 0)
    assert ingestor.dedup_window is None
