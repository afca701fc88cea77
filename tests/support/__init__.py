"""Helpers the tests (and bench/) share: real servers, gateway processes, taps, doubles and waits."""
