"""The byte stream under the MQTT client: a TCP connection, TLS through the ssl module when asked."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.mqtt.errors import ConnectionClosed

READ_SIZE = 1 << 16
_SEND_SIZE = 1 << 18  # bytes a send() call at most: bounds the copy of a large output buffer


@dataclass(frozen=True)
class TlsOptions:
    """TLS for the broker connection. Without `ca_file` the system's trust store verifies the broker;
    `cert_file` / `key_file` are a client certificate; `insecure` checks neither certificate nor host name."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("a TLS key_file needs its cert_file")

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.insecure:
            context.check_hostname = False  # before verify_mode: the context refuses CERT_NONE while it checks
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return context


def open_connection(host: str, port: int, tls: TlsOptions | None, timeout: float) -> socket.socket:
    """A connected socket (TLS handshake done), in blocking mode with `timeout`; OSError when that fails."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a PUBACK batch must not wait for Nagle
        if tls is not None:
            return tls.context().wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


# A non-blocking socket that cannot go on now says so with one of these; TLS may want either direction.
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Connection:
    """A connected non-blocking socket and our bytes waiting to go out on it. Raises ConnectionClosed."""

    def __init__(self, sock: socket.socket, clock: Callable[[], float]) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._clock = clock
        self._out = bytearray()
        self._retry_size = 0  # TLS: a send that wanted to wait is retried with the same bytes
        self.last_sent = self.last_received = clock()

    def recv(self) -> bytes:
        """What one read gives (up to READ_SIZE bytes); b"" when there is nothing yet."""
        sock = self.sock
        try:
            data = sock.recv(READ_SIZE)
        except WOULD_BLOCK:
            return b""
        except OSError as exc:
            raise ConnectionClosed(f"receive failed: {exc}", peer_closed=True) from exc
        if not data:
            raise ConnectionClosed("the broker closed the connection", peer_closed=True)
        if isinstance(sock, ssl.SSLSocket):
            data = self._rest_of_tls(sock, data)
        self.last_received = self._clock()
        return data

    @staticmethod
    def _rest_of_tls(sock: ssl.SSLSocket, data: bytes) -> bytes:
        """TLS hands out one record a call, and records OpenSSL has already taken from the kernel do not make the
        socket readable again (`pending()` sees only the current record's rest): read on until TLS wants the
        network. Otherwise a PUBACK or PUBLISH waits in OpenSSL until the broker happens to send something else.
        No size cap here, for the same reason: what is left in OpenSSL would wait (bounded by the socket's receive
        buffer, which this drains)."""
        while True:
            try:
                more = sock.recv(READ_SIZE)
            except WOULD_BLOCK:
                break
            except OSError:
                break  # the next recv() reports it; what was read is delivered first
            if not more:
                break
            data += more
        return data

    def queue(self, data: bytes) -> None:
        self._out += data

    @property
    def want_write(self) -> bool:
        return bool(self._out)

    def flush(self) -> bool:
        """Send what the socket takes now; True when nothing is left."""
        out = self._out
        while out:
            size = self._retry_size or min(len(out), _SEND_SIZE)
            try:
                sent = self.sock.send(out[:size])
            except WOULD_BLOCK:
                self._retry_size = size
                return False
            except OSError as exc:
                raise ConnectionClosed(f"send failed: {exc}") from exc
            self._retry_size = 0
            del out[:sent]
            self.last_sent = self._clock()
        return True

    def close(self) -> None:
        self.sock.close()
        self._out.clear()
