"""The journal: durable outbox of committed readings, its one writer thread, its lock and salvage."""
