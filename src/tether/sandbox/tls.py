"""Throwaway certificates for the sandbox and the TLS tests.

:func:`make_certificates` writes a private certificate authority and four server certificates, one per
way a TLS handshake can go: ``valid`` (signed by the CA, for ``127.0.0.1`` and ``localhost``),
``expired`` (signed by the CA, validity ended yesterday), ``self_signed`` (right names, but signed by its
own key) and ``wrong_host`` (signed by the CA, for ``wrong.example`` only). A client that trusts the CA
accepts only the first.

Keys are EC P-256, so a full set takes milliseconds. Nothing here is fit for production use.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateKind", "CertificatePair", "CertificateSet", "make_certificates"]

CertificateKind = Literal["valid", "expired", "self_signed", "wrong_host"]

_DAY = datetime.timedelta(days=1)
_Leaf = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]

_LOOPBACK_NAMES: list[x509.GeneralName] = [
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
]


@dataclass(frozen=True, slots=True)
class CertificatePair:
    """A PEM certificate and its unencrypted PEM private key."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class CertificateSet:
    """Paths of everything :func:`make_certificates` wrote.

    Attributes:
        ca_cert: The root certificate clients should trust.
        ca_key: Its private key, for signing further certificates.
        valid: Signed by the CA for ``127.0.0.1`` and ``localhost``.
        expired: Like ``valid`` but its validity ended a day ago.
        self_signed: Right names, but signed by its own key rather than the CA.
        wrong_host: Signed by the CA for ``wrong.example`` only.
    """

    ca_cert: Path
    ca_key: Path
    valid: CertificatePair
    expired: CertificatePair
    self_signed: CertificatePair
    wrong_host: CertificatePair

    def pair(self, kind: CertificateKind) -> CertificatePair:
        """Return the certificate and key for ``kind``."""
        pairs = {
            "valid": self.valid,
            "expired": self.expired,
            "self_signed": self.self_signed,
            "wrong_host": self.wrong_host,
        }
        return pairs[kind]


def make_certificates(directory: Path) -> CertificateSet:
    """Write a CA and one server certificate of each kind into ``directory``.

    Args:
        directory: Where the PEM files go; created if missing. Existing files are overwritten.

    Returns:
        The paths of the files written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    # Back-dated two days: a client whose clock lags still accepts them, and the expired leaf can
    # start before it ends a day ago.
    start, end = now - 2 * _DAY, now + 30 * _DAY

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("tether sandbox CA")
    ca_cert = (
        _builder(ca_name, ca_key.public_key(), ca_name, ca_key, start, end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(names: list[x509.GeneralName], *, not_after: datetime.datetime, self_signed: bool = False) -> _Leaf:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name("tether sandbox server")
        issuer, issuer_key = (subject, key) if self_signed else (ca_name, ca_key)
        cert = (
            _builder(subject, key.public_key(), issuer, issuer_key, start, not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(issuer_key, hashes.SHA256())
        )
        return cert, key

    leaves = {
        "valid": leaf(_LOOPBACK_NAMES, not_after=end),
        "expired": leaf(_LOOPBACK_NAMES, not_after=now - _DAY),
        "self_signed": leaf(_LOOPBACK_NAMES, not_after=end, self_signed=True),
        "wrong_host": leaf([x509.DNSName("wrong.example")], not_after=end),
    }
    pairs = {kind: _write(directory, kind, cert, key) for kind, (cert, key) in leaves.items()}
    ca = _write(directory, "ca", ca_cert, ca_key)
    return CertificateSet(
        ca_cert=ca.cert,
        ca_key=ca.key,
        valid=pairs["valid"],
        expired=pairs["expired"],
        self_signed=pairs["self_signed"],
        wrong_host=pairs["wrong_host"],
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # Strict verifiers (Python 3.13's default context) insist on both key identifiers.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertificatePair:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return CertificatePair(cert=cert_path, key=key_path)
