"""One verb, `process`: a RawMessage becomes new readings, duplicates, or a rejection. Pure but for the window."""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

from gateway.config.schema import GatewayConfig
from gateway.errors import PayloadRejected
from gateway.ingest import mapping, topics
from gateway.ingest.dedup import DedupKey, DedupWindow, delivery_key, key_for
from gateway.ingest.mapping import TopicMatch, TopicRouter
from gateway.ingest.sequence import SequenceEvent, SequenceTracker
from gateway.ingest.validate import Validator
from gateway.model import RawMessage, Reading, Rejection, new_tuple
from gateway.reasons import Ignored, Reason

log = logging.getLogger(__name__)
_KNOWN_TOPICS_MAX = 200_000


class Outcome(NamedTuple):
    readings: list[Reading]  # new, valid readings to store
    duplicates: int  # readings dropped as already seen
    rejection: Rejection | None = None
    receive_timestamped: int = 0  # readings that carried no timestamp and got the receive time
    late: int = 0  # readings older than validation.max_late_s, accepted (late: accept)
    sequence_events: tuple[SequenceEvent, ...] = ()  # gaps, late arrivals, resets among the new readings
    delivery_key: DedupKey | None = None  # to commit with the readings, when they have no device time
    ignored: str | None = None  # why the message is not input at all (the gateway's own output): no dead letter


class Ingestor:
    def __init__(self, config: GatewayConfig) -> None:
        self._router = TopicRouter(config.mappings)
        # A mapping as broad as `+/+/{device}` also matches what the gateway publishes itself; ingesting that
        # would dead-letter the dead letters, for ever.
        self._own_outputs = own_output_filters(config)
        self._known_topics: dict[str, TopicMatch] = {}
        # One validator a mapping (its own limits over the top-level ones), found by the mapping's identity.
        self._validators = {id(m): Validator(config.validation.merged(m.validation)) for m in config.mappings}
        self.sequences = SequenceTracker()
        self._dedup = (
            DedupWindow(config.dedup.max_entries, int(config.dedup.window_s * 1e9)) if config.dedup.enabled else None
        )

    def _remember(self, topic: str, match: TopicMatch) -> None:
        """Devices publish to the same topics over and over: remember each one's mapping and checked device."""
        if len(self._known_topics) >= _KNOWN_TOPICS_MAX:
            self._known_topics.clear()
        self._known_topics[topic] = match

    @property
    def topic_filters(self) -> list[str]:
        return self._router.filters

    @property
    def dedup_window(self) -> DedupWindow | None:
        return self._dedup

    def process(self, raw: RawMessage) -> Outcome:
        device: str | None = None
        late = 0
        if raw.stale_retained:
            return Outcome([], 0, ignored=Ignored.RETAINED)
        try:
            match = self._known_topics.get(raw.topic)
            if match is None:
                if any(topics.filter_matches(f, raw.topic) for f in self._own_outputs):
                    return Outcome([], 0, ignored=Ignored.OWN_OUTPUT)
                match = self._router.route(raw.topic)
                if match is None:
                    raise PayloadRejected(Reason.NO_MAPPING, f"no mapping matches topic {raw.topic[:200]!r}")
                device = match.device
                if device is not None:
                    self._validators[id(match.mapping)].check_device(device)
                self._remember(raw.topic, match)
            device = match.device
            validator = self._validators[id(match.mapping)]
            validator.check_payload_size(len(raw.payload))
            expected_unit = validator.expected_unit if validator.config.metrics else None
            readings = mapping.decode(match, raw.payload, raw.received_at_ns, validator.config.max_depth, expected_unit)
            validator.check_field_count(readings)
            now_ns = time.time_ns()
            untimed = 0
            for reading in readings:
                if device is None:  # named by the payload: checked per reading
                    validator.check_device(reading.device)
                late += validator.check_reading(reading, now_ns)
                if not reading.time_from_device:
                    untimed += 1
        except PayloadRejected as exc:
            rejection = Rejection(exc.reason, exc.detail, raw.topic, raw.payload, raw.received_at_ns, device)
            return Outcome([], 0, rejection)
        except Exception as exc:  # a bug must cost one message, not the pipeline
            log.exception("internal error on a message from %s", raw.topic[:200])
            detail = f"{type(exc).__name__}: {exc}"[:500]
            return Outcome(
                [], 0, Rejection(Reason.INTERNAL_ERROR, detail, raw.topic, raw.payload, raw.received_at_ns, device)
            )
        window = self._dedup
        delivery = None
        if window is None:
            fresh = readings
        else:
            # Readings stamped with the receive time have ids a redelivery does not share: recognise the message.
            delivery = delivery_key(raw) if untimed else None
            if delivery is not None and raw.dup and window.is_redelivery(delivery, raw.received_at_ns):
                fresh = []
            else:
                fresh = [r for r in readings if not window.check_and_add(key_for(r), raw.received_at_ns)]
                if delivery is not None and fresh:
                    window.remember_delivery(delivery, raw.received_at_ns)
                else:
                    delivery = None
        events: tuple[SequenceEvent, ...] = ()
        observe = self.sequences.observe
        for reading in fresh:
            event = observe(reading)
            if event is not None:
                events += (event,)
        return new_tuple(Outcome, (fresh, len(readings) - len(fresh), None, untimed, late, events, delivery, None))


def own_output_filters(config: GatewayConfig) -> list[str]:
    """Filters matching every topic the gateway publishes to: dead letters, and alerts when rules are loaded."""
    filters = [topics.template_filter(config.mqtt.deadletter_topic)]
    if config.alerts.rules_file is not None:
        filters.append(topics.template_filter(config.alerts.topic))
    return filters
