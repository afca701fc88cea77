"""The baseline: what a user writes first. paho (MQTT 3.1.1 unless --protocol 5) auto-ack + json + pydantic +
influxdb-client batching WriteApi, one Point per message. It acknowledges on receipt and guarantees nothing;
it exists to be measured against.

    python bench/naive_consumer.py --broker mqtt://127.0.0.1:1883 --influx http://127.0.0.1:8086
"""

from __future__ import annotations

import argparse
import json
import signal
import threading

import paho.mqtt.client as mqtt
from influxdb_client import InfluxDBClient, Point, WriteOptions, WritePrecision
from paho_session import connect, persistent_client
from pydantic import BaseModel, Field


class Message(BaseModel):
    metrics: dict[str, float | bool | str] = Field(min_length=1)
    ts: int | float | str | None = None
    id: str | None = None
    seq: int | None = None
    tags: dict[str, str] | None = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--influx", required=True)
    parser.add_argument("--client-id", default="naive-consumer")
    parser.add_argument("--protocol", choices=["5", "3.1.1"], default="3.1.1")
    args = parser.parse_args()

    influx = InfluxDBClient(url=args.influx, token="bench", org="bench")
    write_api = influx.write_api(write_options=WriteOptions(batch_size=5000, flush_interval=1000))

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        device = msg.topic.split("/")[1]
        try:
            data = Message(**json.loads(msg.payload))
        except ValueError:
            return
        point = Point("telemetry").tag("device", device)
        for key, value in (data.tags or {}).items():
            point = point.tag(key, value)
        for key, value in data.metrics.items():
            point = point.field(key, value)
        if isinstance(data.ts, int):
            point = point.time(data.ts * 1_000_000, WritePrecision.NS)
        elif isinstance(data.ts, str):
            point = point.time(data.ts, WritePrecision.NS)
        write_api.write(bucket="bench", record=point)

    # A persistent session either way, so that a backlog queued while it was away is there to drain.
    client = persistent_client(args.client_id, args.protocol)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("devices/+/telemetry", qos=1)
    connect(client, args.broker, args.protocol)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client.loop_start()
    stop.wait()
    client.loop_stop()
    write_api.close()
    influx.close()


if __name__ == "__main__":
    main()
