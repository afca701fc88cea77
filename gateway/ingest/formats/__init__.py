"""Payload formats: pure functions from bytes to readings. One module a format."""
