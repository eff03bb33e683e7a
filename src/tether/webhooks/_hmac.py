"""The generic HMAC scheme, for providers without a scheme of their own.

Most home-grown webhook signatures differ only in a few choices: the header, the digest, hex or base64, a
``sha256=`` style prefix, and whether a timestamp or delivery id is signed along with the body. Those choices
are the options of :class:`HmacScheme`; everything else (raw body, constant-time comparison, several secrets,
the tolerance) works as in the named schemes.
"""

from __future__ import annotations

import base64
import re
import string
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from tether.webhooks._base import (
    Headers,
    KeyedMacs,
    Scheme,
    VerificationError,
    check_fresh,
    decode_base64,
    decode_hex,
    header_id,
    json_field,
    parse_timestamp,
    require_header,
    signature_matches,
    timestamp_text,
)

__all__ = ["HmacScheme"]

_ALGORITHMS = ("sha256", "sha1", "sha512")
_ENCODINGS = ("hex", "base64")
_FIELDS = ("body", "timestamp", "id")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# 10^11 seconds is the year 5138; a timestamp that large is milliseconds.
_MILLISECONDS_ABOVE = 10**11


class HmacScheme(Scheme):
    """A configurable HMAC signature over the raw body, optionally with a timestamp and an id.

    Args:
        secrets: One or more secrets; their UTF-8 text is the key.
        tolerance: Seconds the signed timestamp may be off, either way.
        header: The header carrying the signature, e.g. ``X-Signature`` (required).
        algorithm: ``sha256`` (default), ``sha1`` or ``sha512``.
        encoding: ``hex`` (default; either case is accepted) or ``base64``.
        prefix: Text before the signature in the header, e.g. ``sha256=``; none by default.
        template: The signed content. ``{body}`` (the default) is the raw body; ``{timestamp}`` and ``{id}``
            insert those headers' values exactly as received, so ``{timestamp}.{body}`` signs
            ``1700000000.`` followed by the body. Other text is signed as UTF-8; write ``{{``/``}}`` for braces.
        timestamp_header: The header with the signed timestamp: required by, and only allowed with, a
            template that uses ``{timestamp}``. Whole epoch seconds; a value above 10^11 is read as
            milliseconds (that many seconds would be the year 5138). :meth:`sign` sends seconds.
        id_header: The header with the delivery id: required by a template that uses ``{id}``. When set it
            is also the event id; otherwise the event id is the payload's top-level ``id``.

    The event type is the payload's top-level ``type``; a webhook config can point either elsewhere. Without
    a signed timestamp, replays are stopped only by deduplicating the event id.
    """

    name = "hmac"
    OPTIONS: ClassVar[frozenset[str]] = frozenset(
        {"header", "algorithm", "encoding", "prefix", "template", "timestamp_header", "id_header"}
    )

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        tolerance: float = 300.0,
        header: str | None = None,
        algorithm: str = "sha256",
        encoding: str = "hex",
        prefix: str = "",
        template: str = "{body}",
        timestamp_header: str | None = None,
        id_header: str | None = None,
    ) -> None:
        super().__init__(secrets, tolerance=tolerance)
        if header is None:
            raise ValueError("the hmac scheme needs 'header': the name of the header that carries the signature")
        self._header = _header_name("header", header)
        if algorithm not in _ALGORITHMS:
            raise ValueError(f"hmac 'algorithm' must be one of {', '.join(_ALGORITHMS)}, got {algorithm!r}")
        if encoding not in _ENCODINGS:
            raise ValueError(f"hmac 'encoding' must be one of {', '.join(_ENCODINGS)}, got {encoding!r}")
        if not isinstance(prefix, str) or not prefix.isascii():
            raise ValueError(f"hmac 'prefix' must be ASCII text, got {prefix!r}")
        self._encoding = encoding
        self._prefix = prefix
        self._parts = _compile(template)
        signs_timestamp = "timestamp" in self._parts
        if signs_timestamp and timestamp_header is None:
            raise ValueError("the hmac 'template' uses {timestamp}; name the header carrying it in 'timestamp_header'")
        if not signs_timestamp and timestamp_header is not None:
            raise ValueError(
                "'timestamp_header' is set but the hmac 'template' does not sign {timestamp}; an unsigned "
                "timestamp proves nothing (use a template such as '{timestamp}.{body}')"
            )
        if "id" in self._parts and id_header is None:
            raise ValueError("the hmac 'template' uses {id}; name the header carrying it in 'id_header'")
        self._timestamp_header = (
            None if timestamp_header is None else _header_name("timestamp_header", timestamp_header)
        )
        self._id_header = None if id_header is None else _header_name("id_header", id_header)
        self._macs = KeyedMacs([secret.encode() for secret in self._secrets], algorithm)

    def verify(self, body: bytes, headers: Headers, *, now: float | None = None) -> None:
        value = require_header(headers, self._header, self._header)
        if not value.startswith(self._prefix):
            raise VerificationError(f"the {self._header} header does not start with {self._prefix!r}")
        text = value[len(self._prefix) :]
        candidate = decode_hex(text) if self._encoding == "hex" else decode_base64(text)
        if candidate is None:
            raise VerificationError(f"the {self._header} header is not {self._prefix}<{self._encoding}>")
        fields = {"body": body}
        seconds: float | None = None
        if self._timestamp_header is not None:
            timestamp = require_header(headers, self._timestamp_header, self._timestamp_header)
            seconds = parse_timestamp(timestamp, self._timestamp_header)
            if seconds > _MILLISECONDS_ABOVE:
                seconds /= 1000
            fields["timestamp"] = timestamp.encode()
        if "id" in self._parts and self._id_header is not None:
            fields["id"] = require_header(headers, self._id_header, self._id_header).encode()
        if not signature_matches(self._macs.digests(*self._signed(fields)), [candidate]):
            raise VerificationError("no signature matched")
        if seconds is not None:
            check_fresh(seconds, now, self.tolerance)

    def sign(self, body: bytes, *, timestamp: int | None = None, event_id: str | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        fields = {"body": body}
        if self._timestamp_header is not None:
            headers[self._timestamp_header] = timestamp_text(timestamp)
            fields["timestamp"] = headers[self._timestamp_header].encode()
        if self._id_header is not None:
            headers[self._id_header] = str(uuid.uuid4()) if event_id is None else header_id(event_id)
            fields["id"] = headers[self._id_header].encode()
        digest = self._macs.first(*self._signed(fields))
        encoded = digest.hex() if self._encoding == "hex" else base64.b64encode(digest).decode()
        headers[self._header] = self._prefix + encoded
        return headers

    def event_id(self, headers: Headers, payload: Any) -> str | None:
        if self._id_header is not None:
            return headers.get(self._id_header)
        return json_field(payload, "id")

    def _signed(self, fields: dict[str, bytes]) -> list[bytes]:
        """The template's parts with its fields filled in, in order."""
        return [fields[part] if isinstance(part, str) else part for part in self._parts]


def _header_name(option: str, name: Any) -> str:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise ValueError(f"hmac {option!r} must be an HTTP header name such as 'X-Signature', got {name!r}")
    return name.lower()


def _compile(template: Any) -> tuple[bytes | str, ...]:
    """The template as a sequence of literal bytes and field names (``str``), checked once."""
    if not isinstance(template, str):
        raise ValueError(f"hmac 'template' must be text such as '{{timestamp}}.{{body}}', got {template!r}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"hmac 'template' {template!r} is malformed: {exc} (write {{{{ or }}}} for a brace)") from exc
    parts: list[bytes | str] = []
    for literal, field, spec, conversion in parsed:
        if literal:
            parts.append(literal.encode())
        if field is None:
            continue
        if field not in _FIELDS or spec or conversion:
            raise ValueError(f"hmac 'template' may only use {{body}}, {{timestamp}} and {{id}}, not {{{field}}}")
        parts.append(field)
    if parts.count("body") != 1:
        raise ValueError("hmac 'template' must contain {body} exactly once")
    return tuple(parts)
