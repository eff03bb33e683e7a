"""What every signature scheme shares: the error, the base class, and careful parsing of untrusted headers.

Everything here treats header values and bodies as hostile. A helper either returns a value that is safe to use
(ASCII, bounded in length, well-formed) or raises :class:`VerificationError` with a short reason; none of them
lets another exception type escape, which is what lets :meth:`Scheme.verify` promise the same.
"""

from __future__ import annotations

import abc
import base64
import binascii
import hmac
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

__all__ = [
    "MAX_HEADER_LENGTH",
    "Headers",
    "KeyedMacs",
    "Scheme",
    "VerificationError",
    "check_fresh",
    "decode_base64",
    "decode_hex",
    "header_id",
    "json_field",
    "parse_timestamp",
    "require_header",
    "signature_matches",
    "timestamp_text",
]

Headers = Mapping[str, str]
"""Request headers with LOWER-CASE names, one value per name (the receiver lower-cases them)."""

MAX_HEADER_LENGTH = 8192
"""Longer signature, timestamp or id headers are refused before any parsing or hashing."""

# A timestamp of more digits is either garbage or milliseconds past the year 5000; int() on it is wasted work.
_MAX_TIMESTAMP_DIGITS = 15
# Replays inside the tolerance are only stopped by deduplication; past an hour that window is worth a warning.
_LOOSE_TOLERANCE = 3600.0


class VerificationError(Exception):
    """A webhook failed verification.

    Attributes:
        reason: Short, and safe to return in a 401 body and to log: it never contains a secret, the expected
            signature, or the received signature value.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Scheme(abc.ABC):
    """How one provider signs its webhooks: verify what arrives, sign what the sandbox or tether sends.

    Build one with :func:`tether.webhooks.schemes.scheme_for`. Instances are immutable after construction and
    safe to share between threads and tasks; keys are derived once, in ``__init__``.

    Args:
        secrets: One or more secrets; a signature made with any of them verifies (rotation), and
            :meth:`sign` uses the first.
        tolerance: Seconds a signed timestamp may differ from now, in either direction (schemes that sign a
            timestamp only).
    """

    name: ClassVar[str]

    def __init__(self, secrets: Sequence[str], *, tolerance: float = 300.0) -> None:
        self._secrets = _checked_secrets(secrets)
        valid = isinstance(tolerance, int | float) and not isinstance(tolerance, bool)
        if not (valid and math.isfinite(tolerance) and tolerance > 0):
            raise ValueError(f"tolerance must be a positive number of seconds, got {tolerance!r}")
        if tolerance > _LOOSE_TOLERANCE:
            warnings.warn(
                f"a webhook timestamp tolerance of {tolerance:g} s lets a captured request be replayed for that "
                "long; only event-id deduplication stops it (300 s is the usual value)",
                stacklevel=3,
            )
        self.tolerance = tolerance

    @abc.abstractmethod
    def verify(self, body: bytes, headers: Headers, *, now: float | None = None) -> None:
        """Check that ``body`` and ``headers`` were signed with one of the secrets, recently enough.

        Args:
            body: The raw request body, exactly as received.
            headers: The request headers, names lower-cased.
            now: The current time in epoch seconds; ``time.time()`` when omitted.

        Raises:
            VerificationError: The request is not authentic or not fresh (never any other exception).
        """

    @abc.abstractmethod
    def sign(self, body: bytes, *, timestamp: int | None = None, event_id: str | None = None) -> dict[str, str]:
        """The headers the provider would send with ``body``, signed with the FIRST secret.

        Header names are lower-case, as :meth:`verify` expects them (HTTP treats them case-insensitively).

        Args:
            body: The body to sign.
            timestamp: Epoch seconds to sign; now when omitted (ignored by schemes without a timestamp).
            event_id: The event or delivery id, for schemes that send it in a header; a fresh one when
                omitted. Ignored by schemes whose id lives in the body.
        """

    def event_id(self, headers: Headers, payload: Any) -> str | None:
        """The provider's event or delivery id; by default the payload's top-level string ``id``."""
        return json_field(payload, "id")

    def event_type(self, headers: Headers, payload: Any) -> str | None:
        """The provider's event type; by default the payload's top-level string ``type``."""
        return json_field(payload, "type")

    def handshake(self, payload: Any) -> dict[str, Any] | None:
        """The answer to a provider's check of the endpoint (answered after the signature, never stored).

        ``None`` (the default) for an ordinary event, which is stored and processed.
        """
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} tolerance={self.tolerance:g}>"


class KeyedMacs:
    """One keyed HMAC state per secret, copied for each message: keying an HMAC costs two extra hash blocks."""

    __slots__ = ("_macs",)

    def __init__(self, keys: Sequence[bytes], algorithm: str = "sha256") -> None:
        self._macs = tuple(hmac.new(key, digestmod=algorithm) for key in keys)

    def digests(self, *parts: bytes) -> list[bytes]:
        """The MAC of the concatenated ``parts`` under every key, in secret order."""
        return [_digest(keyed, parts) for keyed in self._macs]

    def first(self, *parts: bytes) -> bytes:
        """The MAC under the first key, for signing."""
        return _digest(self._macs[0], parts)


def _digest(keyed: hmac.HMAC, parts: Sequence[bytes]) -> bytes:
    mac = keyed.copy()
    for part in parts:
        mac.update(part)
    return mac.digest()


def _checked_secrets(secrets: Sequence[str]) -> tuple[str, ...]:
    if isinstance(secrets, str):
        raise ValueError("pass the secrets as a list, e.g. [secret] (a bare string is not a list of secrets)")
    checked = tuple(secrets)
    if not checked:
        raise ValueError("no secret: a webhook scheme needs at least one")
    for number, secret in enumerate(checked, 1):
        if not isinstance(secret, str) or not secret:
            raise ValueError(f"secret {number} is empty or not a string")
        if secret != secret.strip():
            raise ValueError(f"secret {number} starts or ends with whitespace (a stray newline from a file?)")
    return checked


def require_header(headers: Headers, name: str, label: str) -> str:
    """The value of header ``name`` (lower-case), stripped; ``label`` is its usual spelling, for reasons.

    Raises:
        VerificationError: The header is missing, empty, longer than :data:`MAX_HEADER_LENGTH` or not ASCII.
    """
    value = headers.get(name)
    if not value:
        raise VerificationError(f"no {label} header")
    if len(value) > MAX_HEADER_LENGTH:
        raise VerificationError(f"the {label} header is too long")
    if not value.isascii():
        raise VerificationError(f"the {label} header is not ASCII")
    return value.strip(" \t")


def parse_timestamp(text: str, label: str) -> int:
    """Whole epoch seconds from ASCII digits.

    Raises:
        VerificationError: ``text`` is not a plain non-negative integer (no sign, fraction or spaces inside).
    """
    if not (0 < len(text) <= _MAX_TIMESTAMP_DIGITS and text.isascii() and text.isdigit()):
        raise VerificationError(f"{label} is not a Unix timestamp")
    return int(text)


def check_fresh(timestamp: float, now: float | None, tolerance: float) -> None:
    """Refuse a signed ``timestamp`` further than ``tolerance`` seconds from ``now``, in either direction."""
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise VerificationError(f"timestamp outside the {tolerance:g} s tolerance")


def signature_matches(expected: Sequence[bytes], received: Sequence[bytes | None]) -> bool:
    """Whether any received signature equals any expected MAC, each pair compared in constant time."""
    return any(
        candidate is not None and hmac.compare_digest(digest, candidate)
        for candidate in received
        for digest in expected
    )


def decode_hex(text: str) -> bytes | None:
    """Bytes from hex digits (either case), or None when ``text`` is not exactly that."""
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        return None


def decode_base64(text: str) -> bytes | None:
    """Bytes from standard base64 with padding, or None when ``text`` is not exactly that."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def timestamp_text(timestamp: int | None) -> str:
    """``timestamp`` (now when None) as the decimal text that is signed and sent.

    Raises:
        ValueError: ``timestamp`` is not a non-negative int.
    """
    if timestamp is None:
        return str(int(time.time()))
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError(f"timestamp must be non-negative whole epoch seconds, got {timestamp!r}")
    return str(timestamp)


def header_id(value: str) -> str:
    """``value`` as an id to send in a header, checked; tether's own callers pass provider ids through here.

    Raises:
        ValueError: The id is empty, not ASCII, or contains spaces or control characters.
    """
    if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError("an event id sent in a header must be non-empty printable ASCII without spaces")
    return value


def json_field(payload: Any, *path: str) -> str | None:
    """The string at ``path`` inside nested JSON objects, or None for any other shape (never raises)."""
    value = payload
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, str) else None
