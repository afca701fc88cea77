"""What `device-sim run` shows: the live view on a terminal and the plain lines of the summary."""

from __future__ import annotations

import io

from device_sim.fleetfile import load_fleet
from device_sim.progress import LiveView, header_lines, target_rate
from device_sim.runner import Snapshot
from device_sim.scenario import build


def test_live_view_shows_sent_rate_errors_and_connected_devices() -> None:
    stream = io.StringIO()
    with LiveView(build(load_fleet(None, {"devices": 40})), stream) as view:
        view.update(
            Snapshot(elapsed_s=3.0, published=120, acked=118, refused=2, connected=39, devices=40, rate_per_s=39.5)
        )
    text = stream.getvalue()
    for part in ("39 / 40 devices", "120 messages, 118 acknowledged", "40 msg/s (target 40)", "2 refused"):
        assert part in text, text


def test_header_says_how_to_repeat_the_run_and_target_counts_esphome_messages() -> None:
    scenario = build(load_fleet(None, {"devices": 10, "run.seed": 9, "run.start": "2026-11-27T10:00:00Z"}))
    assert "repeat with --seed 9 --start 1795773600000" in "\n".join(header_lines(scenario))
    esphome = build(load_fleet(None, {"devices": 10, "groups.*.format": "esphome", "groups.*.rate": 0.5}))
    assert target_rate(esphome) == 10 * 0.5 * 4  # four sensors: a message each
