"""The TLS certificate probe against real TLS servers on loopback, with certificates the test makes: valid,
expired, self-signed and for the wrong host."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tether.observe.tls import _dns_match, certificate_expiry
from tether.sandbox.tls import CertificateKind, CertificateSet, make_certificates


class TLSServer:
    """Accepts connections and completes (or fails) the handshake with one certificate, in a thread."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.handshakes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    self.handshakes += 1
                    tls.recv(1)  # until the client closes
            except OSError:
                pass  # the client refused the certificate and hung up mid-handshake
            finally:
                raw.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def serve(certificates: CertificateSet) -> Iterator[Callable[[CertificateKind], TLSServer]]:
    servers: list[TLSServer] = []

    def start(kind: CertificateKind) -> TLSServer:
        pair = certificates.pair(kind)
        servers.append(TLSServer(pair.cert, pair.key))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_valid_certificate_is_trusted_with_its_expiry(
    serve: Callable[[CertificateKind], TLSServer], certificates: CertificateSet
) -> None:
    server = serve("valid")
    info = certificate_expiry("127.0.0.1", server.port, ca_bundle=str(certificates.ca_cert))
    assert (info.trusted, info.hostname_ok, info.self_signed, info.error) == (True, True, False, None)
    assert 29.9 < info.days_left < 30.1, "make_certificates gives 30 days"
    assert abs(info.not_after - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    assert info.issuer == "CN=tether sandbox CA"
    assert info.subject == "CN=tether sandbox server"
    assert (info.host, info.port) == ("127.0.0.1", server.port)


def test_the_name_localhost_matches_too(
    serve: Callable[[CertificateKind], TLSServer], certificates: CertificateSet
) -> None:
    server = serve("valid")
    info = certificate_expiry("localhost", server.port, ca_bundle=str(certificates.ca_cert))
    assert (info.trusted, info.hostname_ok, info.error) == (True, True, None)


def test_an_expired_certificate_is_read_and_reported_as_expired(
    serve: Callable[[CertificateKind], TLSServer], certificates: CertificateSet
) -> None:
    server = serve("expired")
    info = certificate_expiry("127.0.0.1", server.port, ca_bundle=str(certificates.ca_cert))
    assert (info.trusted, info.hostname_ok, info.self_signed) == (False, True, False)
    assert info.error == "certificate has expired"
    assert -1.1 < info.days_left < -0.9
    assert info.not_after < datetime.now(UTC)


def test_a_self_signed_certificate_is_not_trusted_but_its_expiry_is_known(
    serve: Callable[[CertificateKind], TLSServer], certificates: CertificateSet
) -> None:
    server = serve("self_signed")
    info = certificate_expiry("127.0.0.1", server.port, ca_bundle=str(certificates.ca_cert))
    assert (info.trusted, info.hostname_ok, info.self_signed) == (False, True, True)
    assert info.error is not None
    assert "self-signed" in info.error or "self signed" in info.error
    assert info.issuer == info.subject == "CN=tether sandbox server"
    assert info.days_left > 29


def test_a_certificate_for_another_host_has_a_trusted_chain_and_a_wrong_name(
    serve: Callable[[CertificateKind], TLSServer], certificates: CertificateSet
) -> None:
    server = serve("wrong_host")
    info = certificate_expiry("127.0.0.1", server.port, ca_bundle=str(certificates.ca_cert))
    assert (info.trusted, info.hostname_ok, info.self_signed) == (True, False, False)
    assert info.error is not None
    assert "mismatch" in info.error
    assert "127.0.0.1" in info.error
    named = certificate_expiry("localhost", server.port, ca_bundle=str(certificates.ca_cert))
    assert (named.trusted, named.hostname_ok) == (True, False)


def test_without_the_ca_bundle_the_private_ca_is_unknown(serve: Callable[[CertificateKind], TLSServer]) -> None:
    server = serve("valid")
    info = certificate_expiry("127.0.0.1", server.port)
    assert (info.trusted, info.hostname_ok, info.self_signed) == (False, True, False)
    assert info.error == "unable to get local issuer certificate"


def test_nothing_listening_raises_an_os_error(unused_port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        certificate_expiry("127.0.0.1", unused_port, timeout=2)


def test_a_port_that_does_not_speak_tls_raises_an_ssl_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as plain:
        port = plain.getsockname()[1]

        def answer() -> None:
            connection, _ = plain.accept()
            with connection:
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        with pytest.raises(ssl.SSLError):  # an OSError, as the docstring promises
            certificate_expiry("127.0.0.1", port, timeout=2)
        thread.join()


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("api.example.com", "api.example.com", True),
        ("*.example.com", "api.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", ".example.com", False),
        ("api.example.com", "api.example.org", False),
    ],
)
def test_wildcards_stand_for_exactly_one_label(pattern: str, host: str, matches: bool) -> None:
    assert _dns_match(pattern, host) is matches
