"""The gateway's own telemetry: metrics, self-metrics, logs, the status HTTP server."""
