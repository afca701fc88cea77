"""Every reason a message is rejected or ignored, named once: the values are the stable codes users see in
`gateway_messages_rejected_total{reason}`, dead-letter records and `gateway deadletter list`."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a message (or a reading a store refused) was rejected; the README lists what each means."""

    MALFORMED_JSON = "malformed_json"
    INVALID_SCHEMA = "invalid_schema"
    EMPTY_METRICS = "empty_metrics"
    NON_FINITE_VALUE = "non_finite_value"
    INVALID_TIMESTAMP = "invalid_timestamp"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    DEVICE_MISMATCH = "device_mismatch"
    INVALID_DEVICE_ID = "invalid_device_id"
    MISSING_DEVICE = "missing_device"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    TOO_MANY_READINGS = "too_many_readings"
    TOO_MANY_FIELDS = "too_many_fields"
    TOO_DEEP = "too_deep"
    RESERVED_TAG = "reserved_tag"
    RESERVED_MEASUREMENT = "reserved_measurement"
    INVALID_NAME = "invalid_name"
    INVALID_VALUE = "invalid_value"
    INVALID_TYPE = "invalid_type"
    INVALID_LINE_PROTOCOL = "invalid_line_protocol"
    OUT_OF_RANGE = "out_of_range"
    UNIT_MISMATCH = "unit_mismatch"
    NO_MAPPING = "no_mapping"
    STORE_REFUSED = "store_refused"  # a reading a store refused (4xx other than 429)
    PUBLISH_FAILED = "publish_failed"  # a dead letter or notification MQTT cannot carry
    INTERNAL_ERROR = "internal_error"  # a bug: it costs one message, not the pipeline


class Ignored(StrEnum):
    """Why a message is acknowledged and not ingested at all (no dead letter): it is not input."""

    OWN_OUTPUT = "own_output"  # a topic the gateway publishes to
    RETAINED = "retained"  # a retained message the broker sent again on a resumed session
