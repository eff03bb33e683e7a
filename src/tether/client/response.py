"""The response class of tether clients: an ``httpx2.Response`` whose ``json()`` says what went wrong."""

from __future__ import annotations

import json
from typing import Any

import httpx2

from tether import errors
from tether.errors import Attempt
from tether.observe.redact import redact_url

__all__ = ["TetherResponse"]

_JSON_TYPES = ("application/json", "+json", "text/json")


class TetherResponse(httpx2.Response):
    """``httpx2.Response`` with typed status errors from :meth:`raise_for_status` and format errors from
    :meth:`json`.

    ``json()`` raises :class:`~tether.errors.NotJSONError`, :class:`~tether.errors.TruncatedJSONError` or
    :class:`~tether.errors.UnexpectedContentTypeError` (all ``ValueError`` and ``httpx2.DecodingError``)
    instead of a bare ``JSONDecodeError``. A body that parses is returned even if its Content-Type is off,
    since some APIs send JSON as ``text/plain``. When the integration has ``validate = true``, the parsed body
    is checked against its OpenAPI document and a mismatch raises :class:`~tether.errors.SchemaMismatchError`.

    What tether did is in ``response.extensions``: ``tether.integration``, ``tether.attempts`` (the
    :class:`~tether.errors.Attempt` list), ``tether.elapsed`` and ``tether.waited``.
    """

    def raise_for_status(self) -> TetherResponse:
        """Raise the typed error (with hint and attempts) for a 4xx/5xx response; return ``self`` otherwise."""
        error = self.extensions.get("tether.error")
        if isinstance(error, errors.APIStatusError):
            raise error
        super().raise_for_status()
        return self

    def json(self, **kwargs: Any) -> Any:
        try:
            body = super().json(**kwargs)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self._format_error(exc) from exc
        validator = self.extensions.get("tether.validator")
        if validator is not None:
            validator.check(self, body)
        return body

    def _format_error(self, exc: ValueError) -> errors.ResponseFormatError:
        content_type = self.headers.get("content-type", "")
        text = self.content.lstrip()
        is_json_type = any(marker in content_type.lower() for marker in _JSON_TYPES)
        cls: type[errors.ResponseFormatError]
        if not is_json_type:
            cls = errors.UnexpectedContentTypeError
            summary = f"expected JSON, got Content-Type {content_type or '(none)'!r}"
        elif _looks_truncated(exc, text):
            cls = errors.TruncatedJSONError
            summary = f"JSON ends early ({len(self.content)} bytes)"
        else:
            cls = errors.NotJSONError
            summary = f"body is not JSON though Content-Type is {content_type!r}: starts {text[:40]!r}"
        hint = (
            "unexpected format: check the Content-Type and the API version; an HTML body is often a proxy, "
            "gateway or maintenance page"
        )
        attempts: tuple[Attempt, ...] = tuple(self.extensions.get("tether.attempts", ()))
        return cls(
            request=self.request,
            summary=summary,
            hint=hint,
            integration=str(self.extensions.get("tether.integration", "?")),
            method=self.request.method,
            url=redact_url(self.request.url),
            status=self.status_code,
            attempts=attempts,
            elapsed=float(self.extensions.get("tether.elapsed", 0.0)),
        )


def _looks_truncated(exc: ValueError, text: bytes) -> bool:
    """JSON that starts well and breaks off: the parser ran out of text, not into something wrong."""
    if not isinstance(exc, json.JSONDecodeError) or text[:1] not in (b"{", b"["):
        return False
    if exc.msg.startswith("Extra data"):  # a complete document followed by garbage
        return False
    if exc.msg.startswith("Unterminated string"):
        return True
    rest = exc.doc[exc.pos :].rstrip()
    # Cut inside a literal ("tru", "nul") or a number, or nothing left at all.
    return (
        rest == ""
        or any(literal.startswith(rest) for literal in ("true", "false", "null"))
        or (rest.lstrip("-").replace(".", "", 1).isdigit())
    )
