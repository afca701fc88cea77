"""Broker URLs: mqtt://[user[:password]@]host[:port] (1883), or mqtts://... (8883) for TLS."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote, urlsplit

_DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}
_TLS_SCHEMES = {"mqtts", "ssl"}


class BrokerAddress(NamedTuple):
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> BrokerAddress:
    """Split a broker URL; ValueError names what is wrong with it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"broker URL {url!r}: scheme must be one of {sorted(_DEFAULT_PORTS)}")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {url!r} must not have a path, query or fragment")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError as exc:  # urlsplit raises it lazily for a bad port
        raise ValueError(f"broker URL {url!r}: {exc}") from None
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=scheme in _TLS_SCHEMES,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )
