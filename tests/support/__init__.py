"""Helpers the tests (and bench/) share: real servers, gateway processes, taps, doubles and waits."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
DATA = Path(__file__).resolve().parent / "data"  # sample payloads, the compose schema
