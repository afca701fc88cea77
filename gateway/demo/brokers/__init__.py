"""The demo's embedded brokers: amqtt, or Mosquitto when installed."""
