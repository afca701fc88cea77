"""The gateway's one exception hierarchy.

GatewayError
 +-- ConfigError          bad configuration; names the key and the value; exit status 2
 |    +-- JournalInUse         another gateway holds the journal (journal.path given to two)
 +-- PayloadRejected      a message cannot become readings; carries a stable reason code
 +-- SinkError            a sink failed to accept a batch
      +-- RetryableSinkError   try again later (connection refused, 5xx, 429)
      +-- PermanentSinkError   the store refused the data itself (4xx other than 429)
 +-- DemoError            `gateway demo` or `gateway query` cannot go on; carries the exit status
 +-- ReplayError          `gateway deadletter replay` cannot go on (a sink stays down, the journal fails)
 +-- JournalError         the journal cannot be written (disk full, I/O error) or salvaged
 +-- SnapshotError        saved alert engine state that cannot be read back

Library exceptions (urllib3, sqlite3) and the MQTT client's own (gateway/mqtt/errors.py) are translated into
these at the adapter's edge.
"""

from __future__ import annotations

from gateway.reasons import Reason


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid; the message names the key and the offending value."""


class JournalInUse(ConfigError):
    """Another process holds the journal: two gateways were given one journal.path (exit status 2)."""


class PayloadRejected(GatewayError):
    """A message was refused. `reason` is a stable code for counters, `detail` is for humans."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SinkError(GatewayError):
    """A sink could not accept a batch."""


class RetryableSinkError(SinkError):
    """Transient failure; `retry_after` (seconds) is set when the store said how long to wait."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentSinkError(SinkError):
    """The store refused the data; retrying the same request cannot succeed."""


EXIT_FAILED = 1
EXIT_NO_BROKER = 2


class DemoError(GatewayError):
    """Ends the demo with a message and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ReplayError(GatewayError):
    """`gateway deadletter replay` stopped; what was replayed before is already out of the journal."""


class JournalError(GatewayError):
    """The journal cannot be written (disk full, I/O error), or is damaged beyond salvage."""


class SnapshotError(GatewayError):
    """Saved alert engine state cannot be restored (damaged, or written by an incompatible version)."""
