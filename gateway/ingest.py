"""One verb, `process`: a RawMessage becomes new readings, duplicates, or a rejection. Pure but for the window."""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

from gateway import mapping
from gateway.config import GatewayConfig
from gateway.dedup import DedupWindow, key_for
from gateway.errors import PayloadRejected
from gateway.mapping import TopicMatch, TopicRouter
from gateway.model import RawMessage, Reading, Rejection
from gateway.validate import Validator

log = logging.getLogger(__name__)
_KNOWN_TOPICS_MAX = 200_000


class Outcome(NamedTuple):
    readings: list[Reading]  # new, valid readings to store
    duplicates: int  # readings dropped as already seen
    rejection: Rejection | None = None
    receive_timestamped: int = 0  # readings that carried no timestamp and got the receive time


class Ingestor:
    def __init__(self, config: GatewayConfig) -> None:
        self._router = TopicRouter(config.mappings)
        self._known_topics: dict[str, TopicMatch] = {}
        self._validator = Validator(config.validation)
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
        try:
            match = self._known_topics.get(raw.topic)
            if match is None:
                match = self._router.route(raw.topic)
                if match is None:
                    raise PayloadRejected("no_mapping", f"no mapping matches topic {raw.topic[:200]!r}")
                device = match.device
                self._validator.check_device(device)
                self._remember(raw.topic, match)
            device = match.device
            self._validator.check_payload_size(len(raw.payload))
            readings = mapping.decode(match, raw.payload, raw.received_at_ns)
            now_ns = time.time_ns()
            for reading in readings:
                self._validator.check_reading(reading, now_ns)
        except PayloadRejected as exc:
            rejection = Rejection(exc.reason, exc.detail, raw.topic, raw.payload, raw.received_at_ns, device)
            return Outcome([], 0, rejection)
        except Exception as exc:  # a bug must cost one message, not the pipeline
            log.exception("internal error on a message from %s", raw.topic[:200])
            detail = f"{type(exc).__name__}: {exc}"[:500]
            return Outcome(
                [], 0, Rejection("internal_error", detail, raw.topic, raw.payload, raw.received_at_ns, device)
            )
        untimed = sum(1 for r in readings if not r.time_from_device)
        if self._dedup is None:
            return Outcome(readings, 0, None, untimed)
        fresh = [r for r in readings if not self._dedup.check_and_add(key_for(r), raw.received_at_ns)]
        return Outcome(fresh, len(readings) - len(fresh), None, untimed)
