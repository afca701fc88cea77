"""Process managers for the real servers the tests and benchmarks talk to.

Used by ``tests/conftest.py`` *and* by scripts under ``bench/``, so this module must not import
pytest. Every server listens on 127.0.0.1 on a free ephemeral port (never on a standard port, so a
system Mosquitto on 1883 or anything else on the machine is never touched) and keeps all of its
state, config and logs inside the ``workdir`` it is given.

Typical use::

    with Mosquitto(tmp / "mqtt") as broker, VictoriaMetrics(tmp / "vm") as vm:
        ...  # broker.host, broker.port, vm.url
        vm.wait_for_samples(100, timeout=10)

Binaries are looked up on PATH, then in the Debian locations; override with the environment
variables ``MOSQUITTO_BIN`` / ``VICTORIA_METRICS_BIN`` (and ``MOSQUITTO_PASSWD_BIN`` / ``OPENSSL_BIN``
for the broker-security helpers ``write_password_file`` / ``make_certificates``).

A broker that requires a password and/or speaks TLS::

    users = write_password_file(tmp / "passwd", {"gateway": "s3cret"})
    certs = make_certificates(tmp / "pki")  # throwaway CA + a server cert for 127.0.0.1
    with Mosquitto(tmp / "mqtt", password_file=users, tls=certs) as broker:
        ...  # broker.url is mqtts://127.0.0.1:<port>; clients verify with certs.ca_file
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import math
import os
import pwd
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "BrokerCertificates",
    "Mosquitto",
    "Series",
    "ServerError",
    "VictoriaMetrics",
    "free_port",
    "make_certificates",
    "write_password_file",
]

LOCALHOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A managed server could not be started, stopped or queried."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _find_binary(env_var: str, name: str, fallback: str) -> str:
    found = os.environ.get(env_var) or shutil.which(name)
    if found:
        return found
    if Path(fallback).is_file():
        return fallback
    raise ServerError(
        f"{name} binary not found (looked at ${env_var}, PATH and {fallback}); "
        f"install it, e.g. `apt-get install {name}`"
    )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"<{path} does not exist>"
    return "\n".join(text.splitlines()[-lines:]) or f"<{path} is empty>"


# Processes started by this module that are still running: killed at interpreter exit so that a
# crashed test run or an interrupted benchmark never leaves servers behind.
_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        _LIVE.discard(proc)


class _ManagedServer:
    """Start/stop/restart plumbing shared by the concrete servers.

    Subclasses provide ``_command()``, ``_prepare()`` (write config, create directories) and
    ``_probe()`` (True once the server answers). The process's stdout/stderr go to ``output_path``.
    """

    name = "server"
    start_timeout = 15.0
    stop_timeout = 15.0
    start_attempts = 5

    def __init__(self, workdir: Path, port: int | None) -> None:
        self.workdir = Path(workdir).resolve()
        if any(ch.isspace() for ch in str(self.workdir)):
            # Mosquitto's config parser splits on whitespace; keep both servers consistent.
            raise ValueError(f"workdir must not contain whitespace: {self.workdir!r}")
        self._auto_port = port is None
        self._port = free_port() if port is None else port
        self._proc: subprocess.Popen[bytes] | None = None
        self._ever_started = False
        self.start_count = 0
        self.last_start_seconds = math.nan

    # -- public API ---------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return LOCALHOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def output_path(self) -> Path:
        """Where the process's stdout and stderr go (appended to across restarts)."""
        return self.workdir / f"{self.name}.out"

    def log_tail(self, lines: int = 40) -> str:
        return f"--- {self.output_path} ---\n{_tail(self.output_path, lines)}"

    def start(self) -> None:
        """Start the server and block until it answers; raise ServerError (with log tail) if not.

        A failed bind is retried a few times: on the same port once the server has run (restart
        must keep the port), on a fresh free port if the port was picked automatically.
        """
        if self.running:
            raise ServerError(f"{self.name} is already running (pid {self.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        failure = ""
        for attempt in range(self.start_attempts):
            if attempt and self._auto_port and not self._ever_started:
                self._port = free_port()
            self._prepare()
            failure = self._launch_and_wait()
            if not failure:
                self._ever_started = True
                self.start_count += 1
                self.last_start_seconds = time.monotonic() - began
                return
            if attempt + 1 < self.start_attempts:
                time.sleep(0.2 * (attempt + 1))
        raise ServerError(
            f"{self.name} did not start on {self.host}:{self.port} after {self.start_attempts} "
            f"attempts: {failure}\n{self.log_tail()}"
        )

    def stop(self, kill: bool = False) -> None:
        """Stop the server: SIGTERM (graceful, state is saved) or SIGKILL when ``kill``.

        Idempotent. Falls back to SIGKILL if SIGTERM does not end it within ``stop_timeout``.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=self.stop_timeout)
        _LIVE.discard(proc)
        self._proc = None

    def restart(self, kill: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL to simulate a crash) and start again: same port, same data."""
        self.stop(kill=kill)
        self.start()

    @contextlib.contextmanager
    def outage(self, after_s: float, for_s: float) -> Iterator[None]:
        """While the block runs: `after_s` into it the server stops (SIGTERM), for `for_s`, then starts again
        on the same port. The exit waits for the server to be back."""

        def bounce() -> None:
            time.sleep(after_s)  # the scenario: the outage begins this far into the block
            self.stop()
            time.sleep(for_s)  # the scenario: the outage itself
            self.start()

        bouncer = threading.Thread(target=bounce, name=f"{self.name}-outage")
        bouncer.start()
        try:
            yield
        finally:
            bouncer.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state} workdir={self.workdir}>"

    # -- subclass hooks -----------------------------------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write config files / create directories before each launch."""

    def _probe(self) -> bool:
        """One readiness check; True when the server is serving."""
        raise NotImplementedError

    def _ready_marker_seen(self, log_offset: int) -> bool:
        """Extra readiness condition (e.g. a log line written since ``log_offset``)."""
        return True

    def _log_size(self) -> int:
        return 0

    # -- internals ----------------------------------------------------------------------------------

    def _launch_and_wait(self) -> str:
        """Launch once; return "" when ready, else a description of the failure."""
        log_offset = self._log_size()
        with self.output_path.open("ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self._command()}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                # Own session: a Ctrl-C aimed at the test run / benchmark does not hit the server
                # directly, so stop() can still shut it down gracefully.
                start_new_session=True,
            )
        self._proc = proc
        _LIVE.add(proc)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            # The probe alone could be answered by a stranger that owns the port; the process
            # being alive *after* a successful probe plus the log marker rule that out.
            if self._probe() and self._ready_marker_seen(log_offset) and proc.poll() is None:
                return ""
            time.sleep(0.02)
        if proc.poll() is None:
            self.stop(kill=True)
            return f"not ready within {self.start_timeout:.0f}s"
        _LIVE.discard(proc)
        self._proc = None
        return f"process exited with code {proc.returncode}"


# ---------------------------------------------------------------------------------------------------
# Mosquitto
# ---------------------------------------------------------------------------------------------------

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


class Mosquitto(_ManagedServer):
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
        self.binary = _find_binary("MOSQUITTO_BIN", "mosquitto", "/usr/sbin/mosquitto")

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
        return f"{super().log_tail(lines)}\n--- {self.log_path} ---\n{_tail(self.log_path, lines)}"

    def config_text(self) -> str:
        user = pwd.getpwuid(os.geteuid()).pw_name
        lines = [
            "# Generated by tests/support/servers.py; see the comments there for the reasons.",
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

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _ready_marker_seen(self, log_offset: int) -> bool:
        # "mosquitto version X running" is logged once all listeners are bound.
        try:
            with self.log_path.open("rb") as log:
                log.seek(log_offset)
                return b" running" in log.read()
        except FileNotFoundError:
            return False

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


def write_password_file(path: Path, users: Mapping[str, str]) -> Path:
    """Write a Mosquitto password file for ``users`` ({name: password}) with ``mosquitto_passwd -b``.

    Overwrites ``path``; returns it. Test use only: the passwords show up in the process list.
    """
    if not users:
        raise ValueError("no users given")
    binary = _find_binary("MOSQUITTO_PASSWD_BIN", "mosquitto_passwd", "/usr/bin/mosquitto_passwd")
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    for user, password in users.items():
        # -c creates the file: first user only (it would overwrite the users written before).
        create = ["-c"] if not path.exists() else []
        _run_tool([binary, *create, "-b", str(path), user, password], f"mosquitto_passwd (user {user!r})")
    return path


@dataclass(frozen=True)
class BrokerCertificates:
    """PEM files made by ``make_certificates``: a throwaway CA and a server certificate it signed."""

    ca_file: Path
    ca_key_file: Path
    cert_file: Path
    key_file: Path

    def broker_files(self) -> list[Path]:
        """The files Mosquitto reads (``cafile``, ``certfile``, ``keyfile``)."""
        return [self.ca_file, self.cert_file, self.key_file]


_OPENSSL_CONF = """\
# Generated by tests/support/servers.py (make_certificates); independent of the system openssl.cnf.
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def make_certificates(
    directory: Path, hosts: Sequence[str] = (LOCALHOST, "localhost"), days: int = 2
) -> BrokerCertificates:
    """Make a throwaway CA (``ca.pem``, ``ca.key``) and a server certificate (``server.pem``,
    ``server.key``) for ``hosts`` (IP addresses and DNS names, as subjectAltName) with the
    ``openssl`` CLI. P-256 keys (fast to make); the extensions satisfy strict X.509 checks.
    """
    if not hosts:
        raise ValueError("no hosts given")
    binary = _find_binary("OPENSSL_BIN", "openssl", "/usr/bin/openssl")
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    san = ", ".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    conf = directory / "openssl.cnf"
    conf.write_text(_OPENSSL_CONF.format(san=san))
    certs = BrokerCertificates(
        ca_file=directory / "ca.pem",
        ca_key_file=directory / "ca.key",
        cert_file=directory / "server.pem",
        key_file=directory / "server.key",
    )
    csr = directory / "server.csr"
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run_tool(
        [binary, "req", "-x509", "-config", str(conf), "-extensions", "ca", *new_key,
         "-keyout", str(certs.ca_key_file), "-out", str(certs.ca_file), "-days", str(days),
         "-subj", "/CN=tests.support.servers throwaway CA"],
        "openssl req (CA)",
    )  # fmt: skip
    _run_tool(
        [binary, "req", "-new", "-config", str(conf), *new_key, "-keyout", str(certs.key_file),
         "-out", str(csr), "-subj", f"/CN={hosts[0]}"],
        "openssl req (server)",
    )  # fmt: skip
    _run_tool(
        [binary, "x509", "-req", "-in", str(csr), "-CA", str(certs.ca_file), "-CAkey", str(certs.ca_key_file),
         "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", str(days),
         "-extfile", str(conf), "-extensions", "server", "-out", str(certs.cert_file)],
        "openssl x509 (sign server)",
    )  # fmt: skip
    return certs


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _run_tool(args: list[str], what: str) -> None:
    result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace").strip()
        raise ServerError(f"{what} failed with exit code {result.returncode}: {output}")


# ---------------------------------------------------------------------------------------------------
# VictoriaMetrics
# ---------------------------------------------------------------------------------------------------

ALL_SERIES = '{__name__!=""}'


@dataclass
class Series:
    """One series from ``/api/v1/export``; ``metric`` includes ``__name__``; timestamps in ms."""

    metric: dict[str, str]
    values: list[float]
    timestamps: list[int]

    @property
    def name(self) -> str:
        return self.metric.get("__name__", "")

    @property
    def labels(self) -> dict[str, str]:
        """The labels without ``__name__``."""
        return {k: v for k, v in self.metric.items() if k != "__name__"}


class VictoriaMetrics(_ManagedServer):
    """A private single-node VictoriaMetrics on 127.0.0.1:<free port>, data in ``workdir/vm``.

    Facts measured against the binary installed here (Debian's victoria-metrics, v1.79; it
    reports an empty version string) by writing with influxdb-client to ``/api/v2/write``
    (``InfluxDBClient(url=vm.url, token="x", org="o")``, SYNCHRONOUS write API) and exporting:

    Mapping of InfluxDB line protocol to series
      * ``telemetry,device=d1 temperature=1.5,ok=true`` becomes two series,
        ``telemetry_temperature{device="d1"} 1.5`` and ``telemetry_ok{device="d1"} 1``: one series
        per field, named ``<measurement>_<field>``, tags become labels. This holds even for a
        single field (``-influxSkipSingleField`` is off).
      * Bool fields: t/T/true/True/TRUE -> 1.0, f/F/false/False/FALSE -> 0.0.
      * Integer fields ``7i`` and unsigned ``9u`` -> 7.0 / 9.0 (everything is a float).
      * Values keep at most **12 significant decimal digits** (a storage property; also via
        /api/v1/import): -73.12715117751975 comes back as -73.1271511775 (measured max relative
        error 1e-12). Values with <= 12 significant digits, e.g. 21.37 or 0.1, round-trip exactly;
        compare arbitrary floats with ``pytest.approx(x, rel=1e-11)``.
      * String fields: parsed as a number if they look like one (``s="12.5"`` -> 12.5),
        otherwise stored as **0** (``status="online"`` -> 0). They are not dropped.
      * ``db`` label: ``/api/v2/write?bucket=b&org=o`` (what influxdb-client sends) adds **no**
        label at all - bucket and org are ignored. Only ``?db=name`` (the v1 ``/write`` API, or
        an explicit ``db`` query arg) adds the label ``db="name"``.
    Timestamps
      * Stored with millisecond precision. ``write_precision`` s/ms/us/ns are all honoured and
        converted; us/ns are truncated to the ms (``...123456`` us -> ``...123`` ms).
      * A line without timestamp gets the server's current time.
      * With ``-retentionPeriod=100y`` anything from 0 (1970) up to now+2 days is accepted
        (2024 timestamps included). Samples older than the retention or more than ~2 days in the
        future are **dropped silently**: the HTTP answer is still 204, only the VM log has a
        warning ("too small/too big timestamp").
    Duplicates
      * No deduplication (``-dedup.minScrapeInterval`` is not set): every written sample is kept
        and exported, including exact duplicates (same series, timestamp and value) and same
        timestamp with different values, also after a forced merge. ``values`` may therefore hold
        several entries with the same timestamp; counting samples counts duplicates. (PromQL
        queries return a single value per timestamp.)
    Visibility
      * Written samples sit in an in-memory buffer for up to ~10 s before a search sees them;
        ``GET /internal/force_flush`` makes everything written so far visible at once (~5 ms).
      * ``/api/v1/export`` defaults ``end`` to the current whole second, so a sample stamped with
        the current second is missing until the next second; ``export()`` here therefore passes
        ``end`` = now + 3 days. With that, write -> force_flush -> export sees the data at once.
      * Started with ``-search.disableCache`` and ``-search.latencyOffset=0s`` so that queries
        (``/api/v1/query``) neither serve stale cached results for back-filled data nor hide the
        last 30 s.
    Lifecycle
      * Start-up to a healthy ``/health`` takes ~0.05-0.1 s on an empty data dir; SIGTERM stop
        ~0.02 s. SIGTERM persists everything: data survive ``restart()``. ``restart(kill=True)``
        (SIGKILL) loses the samples of roughly the last 5 s *even after* ``force_flush()``, which
        only makes data searchable and does not write it to disk (measured: lost when killed 3 s
        after write+flush, kept after 6 s).
      * ``delete_all()`` removes every series; writing the same series afterwards works normally.
    """

    name = "victoria-metrics"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.binary = _find_binary("VICTORIA_METRICS_BIN", "victoria-metrics", "/usr/bin/victoria-metrics")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_path(self) -> Path:
        return self.workdir / "vm"

    @property
    def log_path(self) -> Path:
        return self.output_path

    def _command(self) -> list[str]:
        return [
            self.binary,
            f"-storageDataPath={self.data_path}",
            f"-httpListenAddr={self.host}:{self.port}",
            # Long retention so that old device timestamps (e.g. from 2024) are accepted.
            "-retentionPeriod=100y",
            "-search.disableCache",
            "-search.latencyOffset=0s",
        ]

    def _log_size(self) -> int:
        try:
            return self.output_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _ready_marker_seen(self, log_offset: int) -> bool:
        try:
            with self.output_path.open("rb") as log:
                log.seek(log_offset)
                return b"starting http server" in log.read()
        except FileNotFoundError:
            return False

    def _probe(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as resp:
                status: int = resp.status
        except (OSError, urllib.error.URLError):
            return False
        return status == 200

    # -- HTTP helpers -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, params: dict[str, str] | None = None) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        req = urllib.request.Request(f"{self.url}{path}{query}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=30.0) as resp:
                body: bytes = resp.read()
                return body
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise ServerError(f"{method} {path}{query} -> HTTP {err.code}: {detail}") from err
        except OSError as err:
            raise ServerError(f"{method} {path}{query} failed: {err}\n{self.log_tail(10)}") from err

    def force_flush(self) -> None:
        """Make every sample written so far visible to searches/exports."""
        self._request("GET", "/internal/force_flush")

    def export(self, match: str = ALL_SERIES) -> list[Series]:
        """All samples of the series matching ``match`` (a series selector), via /api/v1/export.

        Does not flush by itself; call ``force_flush()`` first (``wait_for_samples`` does).
        Series come in no particular order; within a series samples are sorted by timestamp.
        """
        params = {
            "match[]": match,
            "start": "0",
            # Default end is "now" rounded down to the second, which hides samples stamped within
            # the current second; VM accepts samples up to now+2d, so now+3d covers everything.
            "end": str(int(time.time()) + 3 * 86400),
        }
        series: list[Series] = []
        for line in self._request("GET", "/api/v1/export", params).splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            series.append(
                Series(
                    metric={str(k): str(v) for k, v in row["metric"].items()},
                    values=[math.nan if v is None else float(v) for v in row["values"]],
                    timestamps=[int(t) for t in row["timestamps"]],
                )
            )
        return series

    def count_samples(self, match: str = ALL_SERIES) -> int:
        """Number of stored samples (duplicates included) matching ``match``; no flush."""
        return sum(len(s.values) for s in self.export(match))

    def wait_for_samples(
        self,
        n: int,
        match: str = ALL_SERIES,
        timeout: float = 10.0,
        settle: float | None = 2.0,
        interval: float = 0.05,
    ) -> int:
        """Poll (force_flush + count) until at least ``n`` samples match; return the last count.

        Returns early when the count is non-zero but has not changed for ``settle`` seconds (so a
        test expecting n that only ever gets n-1 does not sit out the whole timeout; ``None``
        disables that), and gives up after ``timeout`` seconds. Never raises for a short count:
        the caller asserts on the returned value. Reaching ``n`` returns at once, so a count
        that would go on to overshoot ``n`` is only seen by a later call.
        """
        deadline = time.monotonic() + timeout
        last = -1
        last_change = time.monotonic()
        while True:
            self.force_flush()
            count = self.count_samples(match)
            now = time.monotonic()
            if count != last:
                last, last_change = count, now
            if count >= n or now >= deadline:
                return count
            if settle is not None and count > 0 and now - last_change >= settle:
                return count
            time.sleep(interval)

    def delete_all(self, match: str = ALL_SERIES) -> None:
        """Delete every series (or those matching ``match``), including not yet flushed samples."""
        self.force_flush()
        self._request("POST", "/api/v1/admin/tsdb/delete_series", {"match[]": match})
