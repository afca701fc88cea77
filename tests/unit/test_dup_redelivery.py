"""A DUP copy of a message is recognised as a duplicate under its own packet id, within the dedup window only
(the Ingestor in process; a real broker's redelivery after kill -9: integration/test_redelivery.py)."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.config.schema import GatewayConfig
from gateway.ingest.ingestor import Ingestor
from gateway.model import RawMessage

NS = 1_000_000_000


def _raw(payload: bytes, packet_id: int, dup: bool = False, received_at_ns: int | None = None) -> RawMessage:
    received = time.time_ns() if received_at_ns is None else received_at_ns
    return RawMessage(
        "devices/thermostat/telemetry", payload, 1, received, (1, packet_id), dup, delivery_slot=packet_id
    )


def test_a_dup_copy_is_recognised_under_its_own_packet_id_only(tmp_path: Path) -> None:
    ingestor = Ingestor(GatewayConfig(sqlite={"path": tmp_path / "g.db"}))
    same = b'{"metrics": {"t": 21.5}}'
    assert ingestor.process(_raw(same, 7)).readings  # first delivery
    assert ingestor.process(_raw(same, 8)).readings  # the sensor repeats itself: a new message, a new reading
    assert ingestor.process(_raw(same, 9, dup=True)).readings  # a DUP copy of a message never seen: new
    assert ingestor.process(_raw(b'{"metrics": {"t": 22}}', 7, dup=True)).readings  # other bytes: not packet 7
    # The message last seen as packet 8, sent again: the one redelivery that is a duplicate.
    again = ingestor.process(_raw(same, 8, dup=True))
    assert (again.readings, again.duplicates) == ([], 1)
    # The same bytes without the DUP flag are a new message, never a redelivery.
    assert ingestor.process(_raw(same, 8)).readings


def test_a_dup_copy_is_recognised_within_the_dedup_window_only(tmp_path: Path) -> None:
    ingestor = Ingestor(GatewayConfig(sqlite={"path": tmp_path / "g.db"}, dedup={"window_s": 60}))
    payload = b'{"metrics": {"t": 21.5}}'
    now = time.time_ns()
    assert ingestor.process(_raw(payload, 7, received_at_ns=now - 120 * NS)).readings
    assert ingestor.process(_raw(payload, 7, dup=True, received_at_ns=now)).readings
