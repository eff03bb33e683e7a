"""Read an API's TLS certificate: when it expires, and whether a client would trust it (and why not).

:func:`certificate_expiry` does real handshakes, verifying first as a client would. When that fails it finds
out which part failed (a handshake without the hostname check tells a chain problem from a name problem),
then reads the certificate over an unverified handshake, so the expiry of a certificate nobody trusts is
still known. The ``tls_expiry`` alert rule and ``tether doctor`` both use it.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

__all__ = ["CertificateInfo", "certificate_expiry"]


@dataclass(frozen=True)
class CertificateInfo:
    """What the server's certificate says, and what a verifying client makes of it.

    Attributes:
        host: The host asked for (the name the certificate must match).
        port: The port.
        not_after: When the certificate expires (UTC).
        days_left: Days until then, with a fraction; negative once it has expired.
        issuer: Who signed it (RFC 4514, e.g. ``CN=R11,O=Let's Encrypt,C=US``).
        subject: Whom it is for (RFC 4514).
        self_signed: Whether it is signed by its own key.
        hostname_ok: Whether it is valid for ``host``.
        trusted: Whether its chain verifies against the CA bundle (expired or unknown issuer: not trusted).
        error: Why a verifying client refuses it, as OpenSSL says (``certificate has expired``); ``None``
            when it is accepted.
    """

    host: str
    port: int
    not_after: datetime
    days_left: float
    issuer: str
    subject: str
    self_signed: bool
    hostname_ok: bool
    trusted: bool
    error: str | None


def certificate_expiry(
    host: str, port: int = 443, *, ca_bundle: str | None = None, timeout: float = 5.0
) -> CertificateInfo:
    """Handshake with ``host:port`` and report on its certificate.

    Args:
        host: A DNS name or an IP address.
        port: The TLS port.
        ca_bundle: A PEM file of CAs to trust besides the system's (an integration's ``ca_bundle``).
        timeout: Seconds for the connection and for each handshake.

    Raises:
        OSError: no TCP connection, or no TLS handshake at all (``ssl.SSLError`` is an ``OSError``): the
            host is down, the port does not speak TLS, or the protocols do not match.
    """
    verifying = _verifying(ca_bundle)
    error: str | None = None
    trusted = verified = True
    try:
        der = _peer_certificate(host, port, verifying, timeout)
    except ssl.SSLCertVerificationError as exc:
        error = exc.verify_message or str(exc)
        # Without the hostname check, a handshake that now succeeds says the chain itself is fine.
        chain_only = _verifying(ca_bundle)
        chain_only.check_hostname = False
        try:
            _peer_certificate(host, port, chain_only, timeout)
        except ssl.SSLCertVerificationError:
            trusted = False
        blind = ssl.create_default_context()
        blind.check_hostname = False
        blind.verify_mode = ssl.CERT_NONE  # only to read the certificate a verifying client refused
        der = _peer_certificate(host, port, blind, timeout)
        verified = False
    certificate = x509.load_der_x509_certificate(der)
    not_after = certificate.not_valid_after_utc
    return CertificateInfo(
        host=host,
        port=port,
        not_after=not_after,
        days_left=(not_after - datetime.now(UTC)).total_seconds() / 86400,
        issuer=certificate.issuer.rfc4514_string(),
        subject=certificate.subject.rfc4514_string(),
        self_signed=_self_signed(certificate),
        hostname_ok=verified or _matches(certificate, host),
        trusted=trusted,
        error=error,
    )


def _verifying(ca_bundle: str | None) -> ssl.SSLContext:
    """A verifying context trusting the system's CAs and, as tether's clients do, ``ca_bundle``'s too."""
    context = ssl.create_default_context()
    if ca_bundle is not None:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def _peer_certificate(host: str, port: int, context: ssl.SSLContext, timeout: float) -> bytes:
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if der is None:  # a server that completes a handshake without a certificate (anonymous ciphers)
        raise ssl.SSLError(f"{host}:{port} sent no certificate")
    return der


def _self_signed(certificate: x509.Certificate) -> bool:
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _matches(certificate: x509.Certificate, host: str) -> bool:
    """Whether ``certificate`` is valid for ``host``, by its subject alternative names (RFC 6125)."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False  # clients stopped reading the common name years ago
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        wanted = host.rstrip(".").lower()
        return any(_dns_match(pattern.lower(), wanted) for pattern in names.get_values_for_type(x509.DNSName))
    return address in names.get_values_for_type(x509.IPAddress)


def _dns_match(pattern: str, host: str) -> bool:
    if not pattern.startswith("*."):
        return pattern == host
    # A wildcard stands for exactly one leftmost label: *.example.com matches a.example.com only.
    label, _, rest = host.partition(".")
    return bool(label) and rest == pattern[2:]
