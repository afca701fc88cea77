"""The gateway's own MQTT 3.1.1 / 5 client for its ingest session: `packets` (the wire format, pure) and
`client` (one blocking, single-threaded session over TCP or TLS). No third-party MQTT code."""

from gateway.mqtt.client import ConfirmCallback, MqttClient
from gateway.mqtt.errors import ConnectionClosed, ConnectionRefused, MqttError, ProtocolError, SubscribeRefused
from gateway.mqtt.packets import MQTT_5, MQTT_311, Publish, RetainHandling
from gateway.mqtt.transport import TlsOptions

__all__ = [
    "MQTT_5",
    "MQTT_311",
    "ConfirmCallback",
    "ConnectionClosed",
    "ConnectionRefused",
    "MqttClient",
    "MqttError",
    "ProtocolError",
    "Publish",
    "RetainHandling",
    "SubscribeRefused",
    "TlsOptions",
]
