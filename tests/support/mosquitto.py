"""A private Mosquitto broker for the tests and benchmarks (see ``servers.py`` for how to use it)."""

from __future__ import annotations

import contextlib
import os
import pwd
import resource
import socket
import ssl
from pathlib import Path

from tests.support.broker_auth import BrokerCertificates
from tests.support.managed_server import ManagedServer, find_binary, tail_of

# MQTT 3.1.1 CONNECT with clean session and client id "tests-servers-probe", keepalive 10 s.
_PROBE_CLIENT_ID = b"tests-servers-probe"
_PROBE_CONNECT = (
    bytes([0x10, 12 + len(_PROBE_CLIENT_ID)])
    + b"\x00\x04MQTT\x04\x02\x00\x0a"
    + len(_PROBE_CLIENT_ID).to_bytes(2, "big")
    + _PROBE_CLIENT_ID
)
_MQTT_DISCONNECT = b"\xe0\x00"

# Why these settings (checked against `man mosquitto.conf` and the 2.0 broker source, and measured
# with the broker installed here, 2.0.11):
#
# * Receive Maximum: for an MQTT 5 client, the Receive Maximum it sends in CONNECT *replaces* the
#   broker's per-client outgoing in-flight limit (max_inflight_messages only seeds the value for
#   clients that don't send one, i.e. MQTT 3.1.1 and MQTT 5 clients without the property), so an
#   MQTT 5 subscriber's Receive Maximum is honoured whatever max_inflight_messages says, both on
#   first connect and when a persistent session is resumed. We set ``max_inflight_messages 0`` (no
#   broker-side limit): clients without Receive Maximum are not capped at Mosquitto's default of
#   20 (MQTT 5 says an absent Receive Maximum means 65535), and the broker advertises no Receive
#   Maximum in CONNACK, so publishers are only throttled by their own in-flight window.
#   ``max_inflight_bytes 0`` = no byte limit either.
# * Never dropping queued QoS 1/2 messages of offline persistent sessions: Mosquitto drops
#   silently once max_queued_messages (default 1000!) or max_queued_bytes is reached. "0 = no
#   maximum" is what the man page says for max_queued_messages, but 0 has been buggy across 2.0.x
#   releases (QoS 0 dropped in 2.0.2, everything dropped in 2.0.16, QUOTA_EXCEEDED disconnects
#   until 2.0.22 - upstream issues 1956, 2879, 3088, 3244), so we use a huge finite count instead,
#   which behaves identically on every version. max_queued_bytes 0 is the default and means "no
#   byte limit" (the byte check is skipped when it is 0).
# * queue_qos0_messages false (default): QoS 0 is not queued for offline clients, per the spec.
# * persistent_client_expiration is left unset: sessions never expire broker-side; MQTT 5
#   clients control their own lifetime via Session Expiry Interval (0 = ends on disconnect!).
# * autosave_interval (seconds, with autosave_on_changes false): how often the in-memory db is
#   written while running, i.e. how much a SIGKILL can lose. SIGTERM always saves on exit.
# * user: when run as root Mosquitto would switch to the "mosquitto" user, which cannot write the
#   root-owned workdir (pytest's tmp_path is 0700); naming the current user keeps it as is.
MAX_QUEUED_MESSAGES = 100_000_000


class Mosquitto(ManagedServer):
    """A private Mosquitto broker on 127.0.0.1:<free port>, config/db/log in ``workdir``.

    Measured with the broker installed here (2.0.11), relevant to the gateway's consumer:

    * A session survives a broker restart only if the client's latest CONNECT had
      **Clean Start = 0** (paho: ``connect(..., clean_start=False)``; paho's default
      ``MQTT_CLEAN_START_FIRST_ONLY`` sends 1 on the first connect) and a Session Expiry
      Interval > 0. A session created with Clean Start = 1 and an expiry survives disconnects
      but is *not* written to mosquitto.db (the broker's persist code saves only clients with
      clean_start false), so it and its queued messages vanish on restart.
    * QoS 1 messages queued for an offline session (5000 tested) all survive ``restart()``
      (SIGTERM) and also ``restart(kill=True)`` once an autosave (every ``autosave_interval``
      seconds) has happened, and are delivered in order after reconnecting.
    * An MQTT 5 subscriber's Receive Maximum is honoured: with Receive Maximum 5 and no acks
      the broker sends exactly 5 messages, on a fresh session, on a resumed one and after a
      restart. A client without Receive Maximum gets no broker-side in-flight limit.
    * Start ~0.03 s, SIGTERM stop ~0.01 s.

    Files: ``mosquitto.conf``, ``mosquitto.db`` (persistence), ``mosquitto.log`` (broker log),
    ``mosquitto.out`` (stdout/stderr, e.g. config errors). ``extra_conf`` is appended verbatim to
    the generated config; for single-valued options the last occurrence wins, so it can override
    the defaults above (a second ``listener`` line would add a listener, though).

    ``max_open_files`` raises RLIMIT_NOFILE (soft, up to the hard limit; in this process, which the broker
    inherits) for many clients.

    Broker security (keyword-only, both optional): ``password_file`` (see ``write_password_file``)
    turns anonymous access off; the readiness probe, which has no credentials, then counts the
    broker's "not authorised" CONNACK as an answer. ``tls`` (see ``make_certificates``) makes the
    one listener a TLS listener; the probe then connects over TLS and verifies the server
    certificate against ``tls.ca_file``, and ``url`` is ``mqtts://...``.
    """

    name = "mosquitto"
    ready_marker = b" running"  # "mosquitto version X running" is logged once all listeners are bound

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        persistence: bool = True,
        extra_conf: str = "",
        *,
        autosave_interval: int = 1,
        password_file: Path | None = None,
        tls: BrokerCertificates | None = None,
        max_open_files: int | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.max_open_files = max_open_files
        self.persistence = persistence
        self.extra_conf = extra_conf
        self.autosave_interval = autosave_interval
        self.password_file = Path(password_file).resolve() if password_file is not None else None
        self.tls = tls
        for path in [self.password_file, *(tls.broker_files() if tls else [])]:
            if path is not None and any(ch.isspace() for ch in str(path)):
                raise ValueError(f"paths in the broker config must not contain whitespace: {path!r}")
        self.binary = find_binary("MOSQUITTO_BIN", "mosquitto", "/usr/sbin/mosquitto")

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def db_path(self) -> Path:
        return self.workdir / "mosquitto.db"

    def log_tail(self, lines: int = 40) -> str:
        return f"{super().log_tail(lines)}\n--- {self.log_path} ---\n{tail_of(self.log_path, lines)}"

    def config_text(self) -> str:
        user = pwd.getpwuid(os.geteuid()).pw_name
        lines = [
            "# Generated by tests/support/mosquitto.py; see the comments there for the reasons.",
            f"listener {self.port} {self.host}",
        ]
        if self.tls:
            # Listener options: they apply to the listener line just above.
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
            ]
        if self.password_file:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines += ["allow_anonymous true"]
        lines += [
            f"user {user}",
            "set_tcp_nodelay true",
            f"persistence {'true' if self.persistence else 'false'}",
        ]
        if self.persistence:
            lines += [
                f"persistence_location {self.workdir}/",
                f"persistence_file {self.db_path.name}",
                f"autosave_interval {self.autosave_interval}",
                "autosave_on_changes false",
            ]
        lines += [
            "max_inflight_messages 0",
            "max_inflight_bytes 0",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            "max_queued_bytes 0",
            "queue_qos0_messages false",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if self.extra_conf:
            lines += ["", "# extra_conf", self.extra_conf]
        return "\n".join(lines) + "\n"

    def _prepare(self) -> None:
        self.conf_path.write_text(self.config_text())
        if self.max_open_files is not None:
            # One descriptor per client connection: 10,000 simulated devices need more than a default 1024.
            # Raised in this process (children inherit it): a preexec_fn is unsafe next to threads.
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            wanted = self.max_open_files if hard == resource.RLIM_INFINITY else min(self.max_open_files, hard)
            if soft != resource.RLIM_INFINITY and soft < wanted:
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.conf_path)]

    @property
    def _ready_log(self) -> Path:
        return self.log_path

    def _probe(self) -> bool:
        """True when an MQTT CONNECT gets a successful CONNACK (or, with ``password_file``, a refusal)."""
        # 3.1.1 CONNACK return codes 4 and 5: bad user name or password, not authorised.
        accepted = (0, 4, 5) if self.password_file else (0,)
        try:
            with contextlib.ExitStack() as stack:
                sock: socket.socket = stack.enter_context(socket.create_connection((self.host, self.port), timeout=0.5))
                if self.tls:
                    context = ssl.create_default_context(cafile=str(self.tls.ca_file))
                    sock = stack.enter_context(context.wrap_socket(sock, server_hostname=self.host))
                sock.sendall(_PROBE_CONNECT)
                reply = b""
                while len(reply) < 4:
                    chunk = sock.recv(4 - len(reply))
                    if not chunk:
                        return False
                    reply += chunk
                with contextlib.suppress(OSError):
                    sock.sendall(_MQTT_DISCONNECT)
        except OSError:  # ssl.SSLError included
            return False
        return reply[0] == 0x20 and reply[3] in accepted
