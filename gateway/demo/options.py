"""What `gateway demo` is asked to do: the options of one run, and their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from gateway.demo.brokers.base import BrokerKind

DEFAULT_DB = Path("data/demo.db")
DEFAULT_DEVICES = 50
DEFAULT_RATE = 5.0  # messages per second per device


@dataclass
class DemoOptions:
    db: Path = DEFAULT_DB
    duration_s: float | None = None
    devices: int = DEFAULT_DEVICES
    rate_per_device: float = DEFAULT_RATE
    seed: int = 1
    log_level: str = "WARNING"
    broker: BrokerKind = "amqtt"
    dashboard: bool | None = None  # None: a live dashboard when the output is a terminal
    stream: TextIO | None = field(default=None, repr=False)
