"""Standard Webhooks (https://www.standardwebhooks.com) and Svix, which signs the same way under other names.

The signed content is ``ID.TIMESTAMP.BODY``: the ``webhook-id`` and ``webhook-timestamp`` headers, then the raw
body. ``webhook-signature`` is a space-separated list of ``VERSION,BASE64`` entries, one per key while a key is
being rotated:

- ``v1``: HMAC-SHA256, keyed by a ``whsec_`` secret: ``whsec_`` then the base64 of the key bytes. A secret
  without the prefix is read as bare base64, as the reference libraries do.
- ``v1a``: Ed25519. Verifying takes the public key, ``whpk_`` then the base64 of its 32 raw bytes; signing
  takes the secret key, ``whsk_`` then the base64 of the 32-byte seed (the 64-byte seed-and-public-key form
  that libsodium produces is accepted too). A ``whsk_`` key also verifies.

Unknown versions are skipped, so a sender can add a scheme without breaking receivers. Svix sends the same
headers as ``svix-id``, ``svix-timestamp`` and ``svix-signature``; both schemes accept either family
(whichever carries a signature, their own first) and sign with their own.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tether.webhooks._base import (
    Headers,
    KeyedMacs,
    Scheme,
    VerificationError,
    check_fresh,
    decode_base64,
    header_id,
    parse_timestamp,
    require_header,
    signature_matches,
    timestamp_text,
)

__all__ = ["StandardWebhooksScheme", "SvixScheme", "generate_keypair", "generate_secret"]

_ED25519_KEY_BYTES = 32
_ED25519_SIGNATURE_BYTES = 64
# Rotation needs two or three entries; a header packed with Ed25519 candidates would make each request cost
# milliseconds of verification, so the list is bounded.
_MAX_SIGNATURES = 16
_Key = bytes | Ed25519PrivateKey | Ed25519PublicKey


class StandardWebhooksScheme(Scheme):
    """Standard Webhooks: ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (``v1``/``v1a``).

    The event id is the ``webhook-id`` header (the same for every retry of one message); the event type is the
    ``type`` of the JSON payload. Also accepts ``svix-*`` headers when the ``webhook-*`` ones are absent.
    """

    name = "standard"
    _prefixes: ClassVar[tuple[str, str]] = ("webhook-", "svix-")

    def __init__(self, secrets: Sequence[str], *, tolerance: float = 300.0) -> None:
        super().__init__(secrets, tolerance=tolerance)
        keys = [_parse_key(secret, number) for number, secret in enumerate(self._secrets, 1)]
        self._signer = keys[0]
        self._macs = KeyedMacs([key for key in keys if isinstance(key, bytes)])
        self._public_keys = tuple(
            key.public_key() if isinstance(key, Ed25519PrivateKey) else key
            for key in keys
            if not isinstance(key, bytes)
        )

    def verify(self, body: bytes, headers: Headers, *, now: float | None = None) -> None:
        prefix = self._family(headers)
        signatures = require_header(headers, f"{prefix}signature", f"{prefix}signature")
        message_id = require_header(headers, f"{prefix}id", f"{prefix}id")
        timestamp = require_header(headers, f"{prefix}timestamp", f"{prefix}timestamp")
        seconds = parse_timestamp(timestamp, f"{prefix}timestamp")
        symmetric: list[bytes | None] = []
        asymmetric: list[bytes] = []
        entries = signatures.split()
        if len(entries) > _MAX_SIGNATURES:
            raise VerificationError(f"the {prefix}signature header has more than {_MAX_SIGNATURES} signatures")
        for entry in entries:
            version, _, text = entry.partition(",")
            if version == "v1":
                symmetric.append(decode_base64(text))
            elif version == "v1a":
                signature = decode_base64(text)
                if signature is not None and len(signature) == _ED25519_SIGNATURE_BYTES:
                    asymmetric.append(signature)
        if not symmetric and not asymmetric:
            raise VerificationError(f"the {prefix}signature header has no v1 or v1a signature")
        signed = (message_id.encode(), b".", timestamp.encode(), b".", body)
        if not (
            (symmetric and signature_matches(self._macs.digests(*signed), symmetric))
            or (asymmetric and self._ed25519_matches(b"".join(signed), asymmetric))
        ):
            raise VerificationError("no signature matched")
        check_fresh(seconds, now, self.tolerance)

    def sign(self, body: bytes, *, timestamp: int | None = None, event_id: str | None = None) -> dict[str, str]:
        """Sign with the first secret: ``v1`` for a ``whsec_`` secret, ``v1a`` for a ``whsk_`` key.

        Raises:
            ValueError: The first secret is a ``whpk_`` public key, which can only verify; or ``event_id``
                cannot be sent in a header.
        """
        message_id = f"msg_{uuid.uuid4().hex}" if event_id is None else header_id(event_id)
        stamp = timestamp_text(timestamp)
        message = f"{message_id}.{stamp}.".encode() + body
        if isinstance(self._signer, bytes):
            signature = "v1," + base64.b64encode(hmac.digest(self._signer, message, "sha256")).decode()
        elif isinstance(self._signer, Ed25519PrivateKey):
            signature = "v1a," + base64.b64encode(self._signer.sign(message)).decode()
        else:
            raise ValueError(
                "the first secret is a whpk_ public key, which verifies but cannot sign; put a whsk_ first"
            )
        prefix = self._prefixes[0]
        return {f"{prefix}id": message_id, f"{prefix}timestamp": stamp, f"{prefix}signature": signature}

    def event_id(self, headers: Headers, payload: Any) -> str | None:
        return headers.get(f"{self._family(headers)}id")

    def _family(self, headers: Headers) -> str:
        """The header prefix to read: the first whose signature header is present, else this scheme's own."""
        for prefix in self._prefixes:
            if f"{prefix}signature" in headers:
                return prefix
        return self._prefixes[0]

    def _ed25519_matches(self, message: bytes, signatures: list[bytes]) -> bool:
        for key in self._public_keys:
            for signature in signatures:
                try:
                    key.verify(signature, message)
                except InvalidSignature:
                    continue
                return True
        return False


class SvixScheme(StandardWebhooksScheme):
    """Svix: Standard Webhooks signed under ``svix-id``, ``svix-timestamp`` and ``svix-signature``.

    Accepts ``webhook-*`` headers too when the ``svix-*`` ones are absent, and signs with ``svix-*``.
    """

    name = "svix"
    _prefixes = ("svix-", "webhook-")


def generate_secret(size: int = 24) -> str:
    """A fresh ``whsec_`` HMAC secret of ``size`` random bytes (the spec asks for 24 to 64)."""
    return "whsec_" + base64.b64encode(os.urandom(size)).decode()


def generate_keypair() -> tuple[str, str]:
    """A fresh Ed25519 pair for ``v1a`` signatures: (``whsk_`` secret key for the sender, ``whpk_`` public key)."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "whsk_" + base64.b64encode(seed).decode(), "whpk_" + base64.b64encode(public).decode()


def _parse_key(secret: str, number: int) -> _Key:
    if secret.startswith("whpk_"):
        raw = _base64(secret, "whpk_", number)
        if len(raw) != _ED25519_KEY_BYTES:
            raise ValueError(f"secret {number} is a whpk_ key of {len(raw)} bytes; an Ed25519 public key has 32")
        return Ed25519PublicKey.from_public_bytes(raw)
    if secret.startswith("whsk_"):
        raw = _base64(secret, "whsk_", number)
        if len(raw) not in (_ED25519_KEY_BYTES, 2 * _ED25519_KEY_BYTES):
            raise ValueError(
                f"secret {number} is a whsk_ key of {len(raw)} bytes; an Ed25519 secret key has 32 (or 64 with "
                "the public key appended)"
            )
        private = Ed25519PrivateKey.from_private_bytes(raw[:_ED25519_KEY_BYTES])
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        if len(raw) > _ED25519_KEY_BYTES and not hmac.compare_digest(raw[_ED25519_KEY_BYTES:], public):
            raise ValueError(f"secret {number} is a 64-byte whsk_ key whose second half is not its public key")
        return private
    prefix = "whsec_" if secret.startswith("whsec_") else ""
    raw = _base64(secret, prefix, number)
    if not raw:
        raise ValueError(f"secret {number} decodes to an empty key")
    return raw


def _base64(secret: str, prefix: str, number: int) -> bytes:
    text = secret.removeprefix(prefix)
    try:
        # Padding is optional in the wild (the reference libraries add it back), so it is restored here too.
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        after = f"after its {prefix} prefix " if prefix else ""
        expected = "a whsec_ secret is whsec_ followed by base64" if prefix in ("", "whsec_") else "expected base64"
        raise ValueError(f"secret {number} is not base64 {after}({expected})") from exc
