"""A TCP proxy on 127.0.0.1 that can stop passing one direction: lets a test hold back a client's packets (say, the
gateway's PUBACKs) while the server's still reach the client, then cut every connection."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

from tests.support.servers import LOCALHOST


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_port`. While `hold_upstream()` is on, what clients send is read and
    dropped, never forwarded; what the server sends still reaches them."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._listener = socket.create_server((LOCALHOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._holding = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"mqtt://{LOCALHOST}:{self.port}"

    def hold_upstream(self) -> None:
        self._holding.set()

    def release_upstream(self) -> None:
        self._holding.clear()

    def cut(self) -> None:
        """Close every open connection, both sides (the server sees the client go away)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def start(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection((LOCALHOST, self._target_port))
            except OSError:
                return
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                if not (upstream and self._holding.is_set()):
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
