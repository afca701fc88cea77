"""Command line: `gateway run` and the offline tools (rules, query, dead-letter replay)."""
