"""The real servers the tests and benchmarks talk to, in one import: ``mosquitto.py``, ``victoria.py`` (one a
server), ``broker_auth.py`` (its password file and certificates) and ``managed_server.py`` (the process
management they share).

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

from tests.support.broker_auth import BrokerCertificates, make_certificates, write_password_file
from tests.support.managed_server import LOCALHOST, ServerError, free_port
from tests.support.mosquitto import Mosquitto
from tests.support.victoria import Series, VictoriaMetrics

__all__ = [
    "LOCALHOST",
    "BrokerCertificates",
    "Mosquitto",
    "Series",
    "ServerError",
    "VictoriaMetrics",
    "free_port",
    "make_certificates",
    "write_password_file",
]
