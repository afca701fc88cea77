"""Alert rules: per (rule, device) state machines fed by readings and sequence events, driven by timers.

Which clock each kind uses, and why:

* threshold, range, rate: **device time** (`Reading.time_ns`). `for`, `keep_firing_for` and a rate's `per` and
  `window` are measured between the readings' own timestamps. A device that buffered an hour offline and
  sends it in one burst is judged on what happened during that hour, not on when the burst arrived; and a
  replay (`gateway rules test`) gives the same transitions as the live run. A reading not newer than the last
  one a (rule, device) evaluated changes nothing (redelivered or out of order) and is counted as stale.
* deadman: **wall clock** (the gateway's receive time). Silence means no readings, and without readings device
  time does not move; only the gateway's clock can tell that five minutes passed. Fired and resolved through
  one timer heap for all rules and devices, driven by `AlertEngine.tick(now_ns)`.
* sequence: fires on the event (stamped with the reading's device time) and resolves by the **wall clock**
  `resolve_after` later, for the same reason as deadman: nothing else may ever come to end it.
* repeat_interval: **wall clock**; repeats remind people, and people live on the wall clock.

How an owner drives it (one thread):

    engine = AlertEngine(load_rules(path))
    engine.restore(saved_bytes)                       # at start-up, before the first reading; notifies nothing
    alerts = engine.on_reading(reading, received_ns)  # each new (deduplicated) reading
    alerts = engine.on_sequence_event(device, "gap", reading_id, time_ns, value=missing, tags=reading.tags)
    alerts = engine.tick(now_ns)                      # about once a second; next_deadline() says when it is due
    saved_bytes = engine.snapshot()                   # commit with the alerts it produced
    alerts = engine.replace_rules(load_rules(path))   # SIGHUP: unchanged rules keep their state

Every returned Alert with `notify` set (firing, repeat, resolved) is a notification to send.

Public API: `load_rules`, `parse_rules`, `RuleSet`, `AlertEngine`, `Alert`, `Transition`, `SnapshotError`.
"""

from gateway.alerts.alert import Alert, Transition
from gateway.alerts.engine import AlertEngine
from gateway.alerts.rules import RuleSet, load_rules, parse_rules
from gateway.errors import SnapshotError

__all__ = ["Alert", "AlertEngine", "RuleSet", "SnapshotError", "Transition", "load_rules", "parse_rules"]
