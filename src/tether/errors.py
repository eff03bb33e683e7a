"""Every error tether raises, each with a one-line hint that says what to do.

Call errors subclass httpx2's own exceptions, so ``except httpx2.HTTPError`` (or ``httpx2.TimeoutException``,
``httpx2.HTTPStatusError``…) keeps working in code written for plain httpx2, and all subclass
:class:`TetherError`::

    TetherError
    ├── ConfigError                         tether.toml is missing, not TOML, or does not match the schema
    ├── AuthError                           (httpx2.HTTPError) no credentials could be obtained for a call
    │   ├── GrantRevokedError               the token endpoint said invalid_grant: log in again
    │   ├── LoginRequiredError              authorization code grant, and nobody has logged in yet
    │   └── TokenEndpointError              the token endpoint failed (after retries) or answered nonsense
    └── CallError                           a call failed; carries integration, method, URL, attempts, hint
        ├── APIStatusError                  (httpx2.HTTPStatusError) the API answered with an error status
        │   ├── BadRequestError             400, with the API's own message
        │   │   └── UnprocessableEntityError  422
        │   ├── AuthenticationError         401: key wrong or expired (names the env var it came from)
        │   ├── PermissionDeniedError       403: key lacks the permission or scope
        │   ├── NotFoundError               404
        │   ├── ConflictError               409
        │   ├── RateLimitError              429, with the wait the API asked for
        │   └── ServerError                 5xx
        ├── RequestTimeoutError             (httpx2.TimeoutException)
        │   ├── ConnectTimeoutError         (httpx2.ConnectTimeout)
        │   ├── ReadTimeoutError            (httpx2.ReadTimeout) also write and pool timeouts
        │   └── DeadlineExceededError       the call's overall deadline ran out across attempts
        ├── CircuitOpenError                (httpx2.RequestError) the breaker is open: failed without a call
        ├── ThrottledError                  (httpx2.RequestError) tether's own rate limit would wait too long
        ├── ConnectionFailedError           (httpx2.ConnectError) refused, DNS, unreachable
        ├── ConnectionLostError             (httpx2.TransportError) dropped before or while reading a response
        ├── TLSError                        (httpx2.ConnectError) the certificate was refused
        │   ├── CertificateExpiredError     with the date it expired
        │   ├── UntrustedCertificateError   unknown issuer
        │   │   └── SelfSignedCertificateError
        │   └── HostnameMismatchError
        └── ResponseFormatError             (httpx2.DecodingError, ValueError) not the format expected
            ├── NotJSONError
            ├── TruncatedJSONError
            ├── UnexpectedContentTypeError
            └── SchemaMismatchError         validate = true: the JSON is not what the OpenAPI document says

Every low-level error is mapped to the most specific class by :mod:`tether.client._errormap` and chained with
``raise … from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx2

__all__ = [
    "HINTS",
    "APIStatusError",
    "Attempt",
    "AuthError",
    "AuthenticationError",
    "BadRequestError",
    "CallError",
    "CertificateExpiredError",
    "CircuitOpenError",
    "ConfigError",
    "ConfigProblem",
    "ConflictError",
    "ConnectTimeoutError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "DeadlineExceededError",
    "GrantRevokedError",
    "HostnameMismatchError",
    "LoginRequiredError",
    "NotFoundError",
    "NotJSONError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReadTimeoutError",
    "RequestTimeoutError",
    "ResponseFormatError",
    "SchemaMismatchError",
    "SelfSignedCertificateError",
    "ServerError",
    "TLSError",
    "TetherError",
    "ThrottledError",
    "TokenEndpointError",
    "TruncatedJSONError",
    "UnexpectedContentTypeError",
    "UnprocessableEntityError",
    "UntrustedCertificateError",
]

HINTS = {
    "cors": "browsers block cross-origin calls to most APIs: call the API from your backend (or tether's proxy), "
    "never from the browser with the key in it",
}


class TetherError(Exception):
    """Base class of every error tether raises."""


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a config file: the key path (dotted) and what is expected."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(TetherError):
    """``tether.toml`` is missing, is not TOML, or does not match the schema.

    Attributes:
        file: The config file's path.
        problems: Every problem found, each with its key path.
    """

    def __init__(self, file: str, problems: list[ConfigProblem]) -> None:
        self.file = file
        self.problems = problems
        lines = [f"{file}: {problem}" for problem in problems]
        super().__init__("\n".join(lines))


class AuthError(TetherError, httpx2.HTTPError):
    """tether could not obtain credentials (an OAuth 2.0 token) for a call; the call was not sent.

    Attributes:
        integration: The integration's name in tether.toml.
        hint: One line saying what to do.
        error: The OAuth error code the token endpoint answered (``invalid_client``…), if any.
    """

    def __init__(self, integration: str, summary: str, *, hint: str, error: str | None = None) -> None:
        self.integration, self.summary, self.hint, self.error = integration, summary, hint, error
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.integration}: {self.summary}\n  hint: {self.hint}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(integration={self.integration!r}, error={self.error!r})"


class GrantRevokedError(AuthError):
    """The token endpoint answered ``invalid_grant``: the refresh token or authorization was revoked or expired."""


class LoginRequiredError(AuthError):
    """The integration uses the authorization code grant and holds no token: someone must log in first."""


class TokenEndpointError(AuthError):
    """The token endpoint failed after retries, refused the client, or answered something that is not a token."""


@dataclass(frozen=True)
class Attempt:
    """The outcome of one attempt of a call, as carried by errors and logs.

    Attributes:
        number: 1 for the first try.
        status: The HTTP status, if a response arrived.
        error: The error's class and message, if none did.
        elapsed: Seconds the attempt took.
        wait: Seconds waited after it before the next attempt (0 for the last).
        request_id: The provider's request id, when it sent one.
    """

    number: int
    status: int | None
    error: str | None
    elapsed: float
    wait: float = 0.0
    request_id: str | None = None

    def __str__(self) -> str:
        outcome = str(self.status) if self.status is not None else (self.error or "?")
        wait = f", then waited {self.wait:.2f}s" if self.wait else ""
        return f"#{self.number}: {outcome} in {self.elapsed:.3f}s{wait}"


class CallError(TetherError):
    """A call through tether failed. Carries what an on-call engineer needs to act.

    Attributes:
        integration: The integration's name in tether.toml.
        method: The HTTP method.
        url: The URL with credentials masked.
        status: The last HTTP status, if any response arrived.
        request_id: The provider's request id of the last response, for their support.
        attempts: Every attempt's outcome, in order.
        elapsed: Seconds from the start of the call to the error.
        hint: One line saying what to do.
    """

    integration: str
    method: str
    url: str
    status: int | None
    request_id: str | None
    attempts: tuple[Attempt, ...]
    elapsed: float
    hint: str
    summary: str

    def _set_context(
        self,
        *,
        summary: str,
        hint: str,
        integration: str,
        method: str,
        url: str,
        status: int | None = None,
        request_id: str | None = None,
        attempts: tuple[Attempt, ...] = (),
        elapsed: float = 0.0,
    ) -> None:
        self.summary, self.hint = summary, hint
        self.integration, self.method, self.url = integration, method, url
        self.status, self.request_id = status, request_id
        self.attempts, self.elapsed = attempts, elapsed
        self.args = (str(self),)

    def __str__(self) -> str:
        where = f"{self.method} {self.url}"
        count = len(self.attempts)
        tries = f"{count} attempt{'s' if count != 1 else ''}, " if count else ""
        request_id = f", request id {self.request_id}" if self.request_id else ""
        return (
            f"{self.integration}: {self.summary} ({where}; {tries}{self.elapsed:.2f}s{request_id})\n  hint: {self.hint}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(integration={self.integration!r}, status={self.status!r})"


class APIStatusError(httpx2.HTTPStatusError, CallError):
    """The API answered with an error status (after any retries).

    Attributes:
        api_message: The provider's own error message, when its body has one.
    """

    def __init__(
        self,
        *,
        request: httpx2.Request,
        response: httpx2.Response,
        api_message: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__("", request=request, response=response)
        self.api_message = api_message
        self._set_context(**context)


class BadRequestError(APIStatusError):
    """400: the API refused the request as malformed; retrying will not help."""


class UnprocessableEntityError(BadRequestError):
    """422: well-formed but invalid (a failed validation on the provider's side)."""


class AuthenticationError(APIStatusError):
    """401: the credentials were refused (wrong, expired or revoked)."""


class PermissionDeniedError(APIStatusError):
    """403: the credentials are valid but lack the permission or scope."""


class NotFoundError(APIStatusError):
    """404: no such resource or path."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the resource's current state."""


class RateLimitError(APIStatusError):
    """429: the rate limit was hit.

    Attributes:
        retry_after: Seconds the API asked to wait, if it said.
    """

    retry_after: float | None = None


class ServerError(APIStatusError):
    """5xx: the provider failed."""


class _TransportCallError(CallError):
    def __init__(self, *, request: httpx2.Request | None = None, **context: Any) -> None:
        super().__init__("", request=request)  # type: ignore[call-arg]
        self._set_context(**context)


class RequestTimeoutError(_TransportCallError, httpx2.TimeoutException):
    """A time limit ran out."""


class ConnectTimeoutError(httpx2.ConnectTimeout, RequestTimeoutError):
    """No connection within ``timeout.connect``."""


class ReadTimeoutError(httpx2.ReadTimeout, RequestTimeoutError):
    """No response (or no further bytes) within the read timeout; also write and pool timeouts."""


class DeadlineExceededError(RequestTimeoutError):
    """The call's overall deadline (``timeout.total``) ran out across its attempts."""


class CircuitOpenError(_TransportCallError, httpx2.RequestError):
    """The integration's circuit breaker is open; the call failed at once, without touching the network.

    Attributes:
        retry_in: Seconds until the breaker lets a probe through.
    """

    retry_in: float = 0.0


class ThrottledError(_TransportCallError, httpx2.RequestError):
    """tether's client-side rate limit (or a pause the API asked for) would make the call wait past its limit.

    Attributes:
        retry_in: Seconds until a slot frees up.
    """

    retry_in: float = 0.0


class ConnectionFailedError(_TransportCallError, httpx2.ConnectError):
    """The connection could not be made: refused, DNS failure, unreachable."""


class ConnectionLostError(_TransportCallError, httpx2.TransportError):
    """The connection dropped before the response, or while its body was read."""


class TLSError(_TransportCallError, httpx2.ConnectError):
    """The server's certificate was refused."""


class CertificateExpiredError(TLSError):
    """The server's certificate has expired.

    Attributes:
        expired_on: ISO date the certificate expired, when it could be read.
    """

    expired_on: str | None = None


class UntrustedCertificateError(TLSError):
    """The certificate's issuer is not trusted by this machine."""


class SelfSignedCertificateError(UntrustedCertificateError):
    """The server presented a self-signed certificate."""


class HostnameMismatchError(TLSError):
    """The certificate was issued for another host name."""


class ResponseFormatError(_TransportCallError, httpx2.DecodingError, ValueError):
    """The response is not in the format expected (JSON that is not JSON, or the wrong Content-Type)."""


class NotJSONError(ResponseFormatError):
    """The body is not JSON at all (an HTML error page, plain text)."""


class TruncatedJSONError(ResponseFormatError):
    """The body starts as JSON but ends early."""


class UnexpectedContentTypeError(ResponseFormatError):
    """The body may parse, but its Content-Type says it is not JSON."""


class SchemaMismatchError(ResponseFormatError):
    """The JSON body does not match the response schema of the integration's OpenAPI document
    (``validate = true``).

    The message names where and what was expected, never the value found there, which may be sensitive.

    Attributes:
        path: The JSON path of the first mismatch, e.g. ``$.data[0].created``.
        keyword: The JSON Schema keyword that failed (``type``, ``required``, ``enum``…).
    """

    def __init__(self, *, path: str, keyword: str, **context: Any) -> None:
        self.path, self.keyword = path, keyword
        super().__init__(**context)
