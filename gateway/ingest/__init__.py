"""Ingest: a message becomes readings (mapping, format, validation, dedup, sequence) or a dead letter."""
