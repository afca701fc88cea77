"""`gateway demo`: the whole path on one machine, with nothing to install or configure.

    amqtt broker (in process, free port) <- simulated fleet (device_sim, paced; scripted anomalies)
         |
         v
    gateway Pipeline (in process, alert rules) -> SQLite (--db)      live dashboard, or plain lines

`run` starts and stops everything; `fleet` makes the messages; `amqtt_broker` and `mosquitto_broker` are the
two brokers it can run (`broker` picks one); `dashboard` shows the run; `rules.yaml` is the alert rules.
"""

from gateway.demo.fleet import DEMO_SCRIPT, TIMESTAMP_LAG_NS, Episode, FleetFeed, Script, renumber
from gateway.demo.run import DEFAULT_DB, RULES_FILE, DemoOptions, run_demo

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
