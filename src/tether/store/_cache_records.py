"""Cached responses as every backend keeps them: hishel entries to records and back, and ``Vary`` variants.

A record is what a row (SQLite, PostgreSQL) or a Redis hash holds for one response: the scrubbed request and
the response headers as JSON text, the status, and the whole body. Keeping one format for every backend means
an entry reads back the same wherever it was stored.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import hishel

__all__ = ["SALT_NAME", "Record", "decode", "encode", "encode_headers", "new_salt", "variant"]

# Where each backend keeps the salt of credential fingerprints (a meta row, or a Redis key).
SALT_NAME = "http_cache.salt"


@dataclass(frozen=True, slots=True)
class Record:
    """One cached response, serialised.

    Attributes:
        id: The entry's id.
        variant: Which variant of the resource it is (see :func:`variant`); ``""`` without ``Vary``.
        request: The scrubbed request, as JSON: method, URL and headers.
        status: The response's status code.
        headers: The response's headers, as JSON pairs of a name and its values.
        body: The whole body.
    """

    id: uuid.UUID
    variant: str
    request: str
    status: int
    headers: str
    body: bytes


def encode(request: hishel.Request, response: hishel.Response) -> tuple[hishel.Entry, Record]:
    """The entry to hand back to hishel (its body readable again) and the record to store.

    Raises:
        TypeError: the body is an async stream; tether caches only bodies it has already buffered.
    """
    body = _read(response.stream)
    entry = hishel.Entry(
        id=uuid.uuid4(), request=request, response=_with_body(response.status_code, response.headers, body)
    )
    stored_request = json.dumps({"method": request.method, "url": request.url, "headers": _pairs(request.headers)})
    record = Record(
        entry.id,
        variant(request, response.headers),
        stored_request,
        response.status_code,
        encode_headers(response.headers),
        body,
    )
    return entry, record


def decode(id_: uuid.UUID, request: str, status: int, headers: str, body: bytes) -> hishel.Entry:
    """The entry a stored record describes."""
    stored = json.loads(request)
    return hishel.Entry(
        id=id_,
        request=hishel.Request(stored["method"], stored["url"], _headers(stored["headers"])),
        response=_with_body(status, _headers(json.loads(headers)), body),
    )


def encode_headers(headers: hishel.Headers) -> str:
    """Headers as the JSON text a record keeps (every value of a repeated header, in order)."""
    return json.dumps(_pairs(headers))


def variant(request: hishel.Request, response_headers: hishel.Headers) -> str:
    """Which variant of the resource a response is: the request's values of the headers named in ``Vary``."""
    vary = response_headers.get("vary")
    if not vary:
        return ""
    names = sorted({name.strip().lower() for name in vary.split(",") if name.strip()})
    picked = [(name, request.headers.get_list(name)) for name in names]
    return hashlib.sha256(json.dumps(picked).encode()).hexdigest()


def new_salt() -> bytes:
    """A fresh salt for credential fingerprints; a store keeps the first one any process made."""
    return secrets.token_bytes(32)


def _read(stream: Iterator[bytes] | Any) -> bytes:
    if stream is None:
        return b""
    if not isinstance(stream, Iterable):
        raise TypeError("tether's cache stores buffered bodies only, not async streams")
    return b"".join(stream)


def _with_body(status: int, headers: hishel.Headers, body: bytes) -> hishel.Response:
    return hishel.Response(status_code=status, headers=headers, stream=iter((body,)))


def _pairs(headers: hishel.Headers) -> list[tuple[str, list[str]]]:
    return [(name, headers.get_list(name) or []) for name in headers]


def _headers(pairs: list[list[Any]]) -> hishel.Headers:
    return hishel.Headers({name: list(values) for name, values in pairs})
