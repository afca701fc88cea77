"""Readiness probe for the MQTT brokers the interop tests start: an MQTT 3.1.1 CONNECT answered by a CONNACK that
accepts it. Through gateway/mqtt's own client (no third-party code). Must not import pytest: ``bench/`` may use it."""

from __future__ import annotations

from gateway.mqtt import MQTT_311, MqttClient, MqttError


def mqtt_answers(host: str, port: int, client_id: str = "tests-servers-probe") -> bool:
    """True when a clean MQTT 3.1.1 session can connect (and is then closed with DISCONNECT)."""
    probe = MqttClient(host, port, client_id=client_id, protocol=MQTT_311, clean_start=True, keepalive=10, timeout=0.5)
    try:
        probe.connect()
    except MqttError:  # ConnectionClosed (nothing listens yet), ConnectionRefused, ProtocolError
        return False
    probe.disconnect()
    return True
