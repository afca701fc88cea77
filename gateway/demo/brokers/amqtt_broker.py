"""amqtt, the demo's default broker: pure Python, in this process (its own thread and event loop), nothing to install.

amqtt speaks MQTT 3.1.1 only, so the gateway and the fleet connect with 3.1.1. Anonymous access is off and
clients must give a username (any; no password is checked): amqtt drops the session of an anonymous client
when it disconnects, queued QoS 1 messages included, and with anonymous access on it counts every client as
anonymous. A named client keeps its persistent session, as the gateway needs. What amqtt does not do (see
README, "Two commands"): keep sessions anywhere but in memory, limit the QoS 1 messages in flight to a
subscriber (3.1.1 has no Receive Maximum), or redeliver an unacknowledged QoS 1 message when the subscriber
reconnects (it waits 5 s for the PUBACK, then drops the message).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from typing import Any, Literal

from gateway.demo.brokers.base import LOCALHOST, free_port
from gateway.errors import EXIT_NO_BROKER, DemoError

DEMO_USERNAME = "demo"  # any name will do; see the module docstring for why there must be one
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


class _Recent(logging.Handler):
    """The last warnings amqtt logged, for an error message."""

    def __init__(self, keep: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[str] = deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


class AmqttBroker:
    """amqtt on 127.0.0.1:<free port>, served by a daemon thread that owns the broker's event loop."""

    name = "amqtt"
    protocol: Literal["5", "3.1.1"] = "3.1.1"

    def __init__(self) -> None:
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._broker: Any = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._recent = _Recent()

    @property
    def url(self) -> str:
        return f"mqtt://{LOCALHOST}:{self.port}"

    def describe(self) -> str:
        return f"amqtt {self.url} (in this process, MQTT 3.1.1)"

    @staticmethod
    def config(port: int) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{LOCALHOST}:{port}"}},
            # Only the plugin we need: the default set adds $SYS topics and a logger of every packet.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}},
        }

    def start(self) -> None:
        logging.getLogger("amqtt").addHandler(self._recent)
        failure = ""
        for _attempt in range(5):  # the free port may be taken before amqtt binds it: pick another
            self.port = free_port()
            self._started.clear()
            self._failure = None
            self._thread = threading.Thread(target=self._serve, name="amqtt", daemon=True)
            self._thread.start()
            if not self._started.wait(_START_TIMEOUT_S):
                failure = f"not listening within {_START_TIMEOUT_S:g} s"
                break
            if self._failure is None:
                return
            failure = f"{type(self._failure).__name__}: {self._failure}"
            self._thread.join(_STOP_TIMEOUT_S)
        raise DemoError(f"the embedded MQTT broker (amqtt) did not start: {failure}\n{self.log_tail()}", EXIT_NO_BROKER)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._failure = exc
        finally:
            self._started.set()

    async def _main(self) -> None:
        from amqtt.broker import Broker  # noqa: PLC0415 - only the demo needs amqtt

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        broker = Broker(self.config(self.port))
        await broker.start()
        self._broker = broker
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            self._broker = None
            await broker.shutdown()

    def _call(self, fn: Any, timeout_s: float = 5.0) -> Any:
        """Run `fn()` on the broker's loop (amqtt is not thread-safe) and return its result."""
        loop = self._loop
        if loop is None or self._broker is None:
            return None

        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout_s)

    def subscribed(self, client_id: str, topic_filter: str) -> bool:
        def check() -> bool:
            broker = self._broker
            if broker is None:
                return False
            return any(session.client_id == client_id for session, _qos in broker.subscriptions.get(topic_filter, []))

        return bool(self._call(check))

    def log_tail(self) -> str:
        return "\n".join(self._recent.lines)

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        loop, stop = self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the thread is ending anyway
                loop.call_soon_threadsafe(stop.set)
        thread.join(_STOP_TIMEOUT_S)
        logging.getLogger("amqtt").removeHandler(self._recent)
