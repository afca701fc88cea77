"""IoT telemetry ingestion gateway: MQTT in, validated and deduplicated readings out."""

__version__ = "0.1.0"
