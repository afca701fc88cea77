"""A scripted broker end for the MQTT client's unit tests: the test reads the client's packets one by one and
writes the broker's bytes by hand, over a socket pair (or an accepted TCP connection)."""

from __future__ import annotations

import socket

from gateway.mqtt.properties import read_varint

CONNACK_5 = b"\x20\x03\x00\x00\x00"
CONNACK_311 = b"\x20\x02\x00\x00"


class BrokerEnd:
    """The broker's side of one connection; blocking reads with a timeout, so a test never hangs."""

    def __init__(self, sock: socket.socket, timeout: float = 5.0) -> None:
        sock.settimeout(timeout)
        self.sock = sock
        self._buffer = b""

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError(f"the client closed the connection; {self._buffer!r} unread")
            self._buffer += chunk

    def read_packet(self) -> bytes:
        """The next whole packet the client sent, fixed header included."""
        self._fill(2)
        while True:
            length, start = read_varint(self._buffer, 1, len(self._buffer))
            if length >= 0:
                break
            self._fill(len(self._buffer) + 1)
        self._fill(start + length)
        packet, self._buffer = self._buffer[: start + length], self._buffer[start + length :]
        return packet

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def closed_by_client(self, wait: float = 1.0) -> bool:
        """True once the client has closed its end (after any packets still unread)."""
        timeout = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    return True
                self._buffer += chunk
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()


def socket_pairs(count: int) -> tuple[list[socket.socket], list[BrokerEnd]]:
    """`count` connected pairs: the client ends (for `open_socket`, one a connection) and the broker ends."""
    clients, brokers = [], []
    for _ in range(count):
        client, broker = socket.socketpair()
        clients.append(client)
        brokers.append(BrokerEnd(broker))
    return clients, brokers
