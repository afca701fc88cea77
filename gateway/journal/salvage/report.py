"""What a salvage kept and what it lost, table by table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# The journal's tables in the order they are salvaged; `outbox_sizes` is rebuilt from what the outbox yields.
TABLES = ("cursors", "outbox", "dedup", "deadletters", "alert_state", "rejected")


@dataclass
class SalvageReport:
    damage: str
    source: str = "the damaged file"  # or a copy of it with a rebuilt first page
    readings: int = 0  # readings salvaged: acknowledged, not yet stored by every sink
    chunks: int = 0
    unlinked: int = 0  # of `readings`, those read from pages no longer linked to any row
    rows: Counter[str] = field(default_factory=Counter)  # rows salvaged, by table
    lost: Counter[str] = field(default_factory=Counter)  # readings of the outbox, rows of the other tables
    estimated_chunks: int = 0  # lost chunks whose reading count was not readable (their share of lost is a guess)
    kept_as: Path | None = None

    def summary(self) -> str:
        guess = f" (partly a guess: {self.estimated_chunks} chunks of unreadable size)" if self.estimated_chunks else ""
        unlinked = f", {self.unlinked:,} of them from pages cut off their chunk" if self.unlinked else ""
        others = ", ".join(
            f"{table} {self.rows[table]:,}" + (f" ({self.lost[table]:,} lost)" if self.lost[table] else "")
            for table in TABLES
            if table != "outbox"
        )
        return (
            f"salvaged {self.readings:,} readings not yet stored ({self.chunks:,} chunks{unlinked}) and lost "
            f"{self.lost['outbox']:,}{guess}; rows kept: {others}; read from {self.source}"
        )
