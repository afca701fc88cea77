"""Topic templates: subscription filters and what a topic means."""

from __future__ import annotations

import pytest

from gateway.config.schema import MappingConfig
from gateway.ingest.mapping import TopicRouter, TopicTemplate


@pytest.mark.parametrize(
    ("template", "topic_filter", "topic", "device", "metric"),
    [
        pytest.param("zigbee2mqtt/{device}", "zigbee2mqtt/+", "zigbee2mqtt/lamp", "lamp", None, id="one-level"),
        pytest.param("zigbee2mqtt/{device}", "zigbee2mqtt/+", "zigbee2mqtt/bridge/state", None, None, id="too-deep"),
        pytest.param("tele/{device}/SENSOR", "tele/+/SENSOR", "tele/plug/STATE", None, None, id="fixed-level"),
        pytest.param(
            "{device}/sensor/{metric}/state", "+/sensor/+/state", "gh/sensor/soil/state", "gh", "soil", id="metric"
        ),
        pytest.param("site/+/{device}", "site/+/+", "site/a/d1", "d1", None, id="plus"),
        pytest.param("fleet/{device}/#", "fleet/+/#", "fleet/d1/x/y/z", "d1", None, id="hash-rest"),
        pytest.param("fleet/{device}/#", "fleet/+/#", "fleet/d1", "d1", None, id="hash-matches-parent"),
        pytest.param("fleet/{device}/#", "fleet/+/#", "other/d1/x", None, None, id="hash-prefix-differs"),
    ],
)
def test_template(template: str, topic_filter: str, topic: str, device: str | None, metric: str | None) -> None:
    compiled = TopicTemplate(MappingConfig(topic=template, format="json"))
    assert compiled.filter == topic_filter
    match = compiled.match(topic)
    assert (match.device if match else None) == device
    if match:
        assert match.metric == metric


def test_router_tries_mappings_in_order_and_deduplicates_filters() -> None:
    first = MappingConfig(topic="a/{device}", format="json", measurement="first")
    second = MappingConfig(topic="a/{device}", format="native", measurement="second")
    other = MappingConfig(topic="b/{device}/x", format="json")
    router = TopicRouter([first, second, other])
    assert router.filters == ["a/+", "b/+/x"]
    routed = router.route("a/d")
    assert routed is not None and routed.mapping.measurement == "first"
    assert router.route("c/d") is None
