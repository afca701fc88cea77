"""`gateway demo`: the whole path on one machine, with nothing to install or configure.

    amqtt broker (in process, free port) <- simulated fleet (device_sim, paced; scripted anomalies)
         |
         v
    gateway Pipeline (in process, alert rules) -> SQLite (--db)      live dashboard, or plain lines

`run` starts and stops everything; `options` is what it is asked; `embedded_gateway` is the gateway in process;
`summary` prints the header and the summary; `fleet` makes the messages; `brokers/` holds the two brokers it can run
(`amqtt_broker`, `mosquitto_broker`; `open_broker` picks one); `dashboard` shows the run; `rules.yaml` is the alert
rules.
"""

from gateway.demo.embedded_gateway import RULES_FILE
from gateway.demo.fleet import DEMO_SCRIPT, TIMESTAMP_LAG_NS, Episode, FleetFeed, Script, renumber
from gateway.demo.options import DEFAULT_DB, DemoOptions
from gateway.demo.run import run_demo

__all__ = [
    "DEFAULT_DB",
    "DEMO_SCRIPT",
    "RULES_FILE",
    "TIMESTAMP_LAG_NS",
    "DemoOptions",
    "Episode",
    "FleetFeed",
    "Script",
    "renumber",
    "run_demo",
]
