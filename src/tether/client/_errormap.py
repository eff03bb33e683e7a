"""Turning a failed call into the most specific :mod:`tether.errors` class, with its hint."""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx2

from tether import errors
from tether.observe.redact import redact_text, redact_url
from tether.policies.retry import GiveUp, RetryState, certificate_error
from tether.state.base import Admission

__all__ = [
    "REQUEST_ID_HEADERS",
    "CallInfo",
    "error_for_exception",
    "error_for_rejection",
    "error_for_response",
    "request_id_of",
]

REQUEST_ID_HEADERS = (
    "x-request-id",
    "request-id",
    "x-amzn-requestid",
    "x-amz-request-id",
    "x-github-request-id",
    "x-ms-request-id",
    "cf-ray",
)
_API_MESSAGE_LIMIT = 300
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class CallInfo:
    """What the error builder needs to know about the integration a call went to."""

    integration: str
    credential_source: str | None
    connect_timeout: float | None
    read_timeout: float | None


def request_id_of(headers: httpx2.Headers) -> str | None:
    """The provider's request id from the first request-id header present."""
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def _context(
    info: CallInfo,
    request: httpx2.Request,
    state: RetryState,
    summary: str,
    hint: str,
    status: int | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    return {
        "summary": redact_text(summary),
        "hint": redact_text(hint),
        "integration": info.integration,
        "method": request.method,
        "url": redact_url(request.url),
        "status": status,
        "request_id": request_id,
        "attempts": tuple(state.attempts),
        "elapsed": state.elapsed(),
    }


def api_message(response: httpx2.Response) -> str | None:
    """The provider's error message from common body shapes (``error.message``, ``message``, ``detail``…)."""
    try:
        body = json.loads(response.content)
    except (ValueError, httpx2.ResponseNotRead, UnicodeDecodeError):
        return None
    for candidate in (body.get("error") if isinstance(body, dict) else None, body):
        if isinstance(candidate, str):
            return redact_text(candidate[:_API_MESSAGE_LIMIT])
        if isinstance(candidate, dict):
            for key in ("message", "detail", "error_description", "title", "error"):
                value = candidate.get(key)
                if isinstance(value, str) and value:
                    return redact_text(value[:_API_MESSAGE_LIMIT])
    return None


def _retried(state: RetryState) -> str:
    retries = len(state.attempts) - 1
    if state.give_up is GiveUp.BUDGET:
        # Said even when no retry was made: a refused retry is the budget protecting a struggling provider.
        return (
            f" after {retries} retr{'y' if retries == 1 else 'ies'}; no more: the integration's retry budget "
            "is spent (too many retries in the last 10 s)"
        )
    if retries <= 0:
        return ""
    reason = f" ({state.give_up.value})" if state.give_up not in (None, GiveUp.NOT_RETRYABLE) else ""
    return f" after {retries} retr{'y' if retries == 1 else 'ies'}{reason}"


def error_for_response(
    info: CallInfo, request: httpx2.Request, response: httpx2.Response, state: RetryState
) -> errors.APIStatusError:
    """The error for a final response with a status of 400 or more."""
    status = response.status_code
    message = api_message(response)
    said = f": {message}" if message else ""
    retried = _retried(state)
    cls: type[errors.APIStatusError]
    if status == 401:
        cls = errors.AuthenticationError
        if info.credential_source:
            hint = (
                f"the key in {info.credential_source} is wrong, expired or revoked; "
                "check it, and that it is the key for this environment"
            )
        else:
            hint = "the credentials are wrong, expired or revoked; check them, and that they are for this environment"
    elif status == 403:
        cls = errors.PermissionDeniedError
        hint = "the key is valid but lacks the permission or scope for this request; grant it or use a key that has it"
    elif status == 404:
        cls = errors.NotFoundError
        hint = "no such resource or path; check the path, the id and the API version"
    elif status == 409:
        cls = errors.ConflictError
        hint = "conflicts with the resource's current state (or an idempotency key reused with other parameters)"
    elif status == 429:
        cls = errors.RateLimitError
        hint = _rate_limit_hint(state)
    elif status in (400, 422):
        cls = errors.UnprocessableEntityError if status == 422 else errors.BadRequestError
        hint = f"the API refused the request{said}; fix the request, retrying will not help"
    elif status >= 500:
        cls = errors.ServerError
        hint = f"the provider failed{retried}; check its status page, or try again later"
        if state.give_up is GiveUp.WAIT_PAST_DEADLINE:
            hint = _rate_limit_hint(state)
        elif state.give_up is GiveUp.NOT_IDEMPOTENT:
            hint += f"; not retried: {request.method} without an idempotency key could run twice"
    else:
        cls = errors.APIStatusError
        hint = f"the API answered {status}{said}"
    request_id = request_id_of(response.headers)
    summary = f"HTTP {status} {response.reason_phrase}{said}".rstrip()
    error = cls(
        request=request,
        response=response,
        api_message=message,
        **_context(info, request, state, summary, hint, status, request_id),
    )
    if isinstance(error, errors.RateLimitError):
        error.retry_after = state.requested_wait
    return error


def error_for_rejection(
    info: CallInfo, request: httpx2.Request, state: RetryState, admission: Admission
) -> errors.CallError:
    """The error for an attempt the state backend refused: open breaker, or a rate-limit wait too long."""
    retry_in = admission.retry_in
    error: errors.CircuitOpenError | errors.ThrottledError
    if admission.rejected == "circuit_open":
        error = errors.CircuitOpenError(
            request=request,
            **_context(
                info,
                request,
                state,
                "circuit breaker open: the API has been failing, so tether failed this call without sending it",
                f"a probe goes through in {retry_in:.1f}s; check the provider's status page, or serve a fallback",
            ),
        )
    elif admission.rejected == "concurrency":
        error = errors.ThrottledError(
            request=request,
            **_context(
                info,
                request,
                state,
                "too many calls in flight: every place under this integration's concurrency cap stayed taken "
                "for as long as this call could wait",
                "the API is slow or the cap is too low for the load; raise concurrency, or shed load",
            ),
        )
    elif admission.rejected == "paused":
        error = errors.ThrottledError(
            request=request,
            **_context(
                info,
                request,
                state,
                f"the API asked every caller to hold off for {retry_in:.1f}s more (a 429 or an exhausted "
                "budget); tether did not send the call",
                f"retry after {retry_in:.1f}s; every client of this integration waits for the same pause",
            ),
        )
    else:
        error = errors.ThrottledError(
            request=request,
            **_context(
                info,
                request,
                state,
                f"rate limit: the next slot is {retry_in:.1f}s away, more than this call may wait",
                "slow down, spread the work, or raise rate_limit.max_wait / timeout.total; the limit is "
                "tether.toml's rate_limit or what the API reported",
            ),
        )
    error.retry_in = retry_in
    return error


def _rate_limit_hint(state: RetryState) -> str:
    wait = state.requested_wait
    if state.give_up is GiveUp.WAIT_PAST_DEADLINE and wait is not None:
        left = max(0.0, state.remaining())
        return (
            f"the API asked to wait {wait:.1f}s, more than the {left:.1f}s left of the call's "
            f"{state.deadline:.0f}s deadline, so tether failed now instead of sleeping; "
            "retry later or raise timeout.total"
        )
    if wait is not None:
        return f"rate limit hit; wait {wait:.1f}s before calling again"
    return "rate limit hit; slow down (the API did not say for how long)"


def error_for_exception(
    info: CallInfo, request: httpx2.Request, exc: BaseException, state: RetryState
) -> errors.CallError:
    """The error for a call that ended on a transport exception."""
    retried = _retried(state)
    url = request.url
    out_of_time = state.give_up is GiveUp.DEADLINE or state.remaining() <= 0.01
    if out_of_time and isinstance(exc, httpx2.TimeoutException):
        return errors.DeadlineExceededError(
            request=request,
            **_context(
                info,
                request,
                state,
                f"the {state.deadline:.0f}s deadline ran out{retried}",
                "raise timeout.total, or check the provider's status page",
            ),
        )
    if isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout):
        limit = f"{info.connect_timeout:g}s" if info.connect_timeout else "the connect timeout"
        return errors.ConnectTimeoutError(
            request=request,
            **_context(
                info,
                request,
                state,
                f"no connection to {url.host} within {limit}{retried}",
                "check the network path (DNS, firewall, proxy) and the provider's status; "
                "raise timeout.connect only if the path is known to be slow",
            ),
        )
    if isinstance(exc, httpx2.TimeoutException):
        limit = f"{info.read_timeout:g}s" if info.read_timeout else "the read timeout"
        return errors.ReadTimeoutError(
            request=request,
            **_context(
                info,
                request,
                state,
                f"no response within {limit}{retried}",
                "raise timeout.read / timeout.total for slow endpoints, or check the provider's status",
            ),
        )
    tls = certificate_error(exc)
    if tls is not None:
        return _tls_error(info, request, state, tls)
    if isinstance(exc, httpx2.ConnectError):
        return errors.ConnectionFailedError(
            request=request,
            **_context(
                info,
                request,
                state,
                f"cannot connect to {url.host}:{url.port or _DEFAULT_PORTS.get(url.scheme, '')}{retried}: {exc}",
                "check base_url, DNS and firewall; is the service up?",
            ),
        )
    if isinstance(exc, httpx2.TransportError):
        return errors.ConnectionLostError(
            request=request,
            **_context(
                info,
                request,
                state,
                f"the connection dropped{retried}: {type(exc).__name__} {exc}",
                "often a proxy or load balancer closing idle connections, or a crashing backend; "
                "retries cover idempotent calls",
            ),
        )
    raise TypeError(f"not a transport error: {exc!r}")


def _tls_error(
    info: CallInfo, request: httpx2.Request, state: RetryState, cause: ssl.SSLCertVerificationError
) -> errors.TLSError:
    reason = (cause.verify_message or str(cause)).lower()
    host = request.url.host
    if "expired" in reason:
        expired_on = certificate_expiry(host, request.url.port or 443)
        when = f" on {expired_on}" if expired_on else ""
        error: errors.TLSError = errors.CertificateExpiredError(
            request=request,
            **_context(
                info,
                request,
                state,
                f"{host}'s TLS certificate expired{when}",
                f"certificate expired{when}: the provider must renew it (or an intercepting proxy "
                "serves a stale one); do not turn verification off",
            ),
        )
        assert isinstance(error, errors.CertificateExpiredError)
        error.expired_on = expired_on
        return error
    if "self-signed" in reason or "self signed" in reason:
        return errors.SelfSignedCertificateError(
            request=request,
            **_context(
                info,
                request,
                state,
                f"{host} presented a self-signed certificate",
                "untrusted issuer (self-signed): if this is your own server or a corporate proxy, "
                "add its CA with SSL_CERT_FILE; do not turn verification off",
            ),
        )
    if "mismatch" in reason or "doesn't match" in reason:
        return errors.HostnameMismatchError(
            request=request,
            **_context(
                info,
                request,
                state,
                f"{host}'s certificate is for another name",
                f"name mismatch: the certificate does not cover {host}; check base_url's host",
            ),
        )
    return errors.UntrustedCertificateError(
        request=request,
        **_context(
            info,
            request,
            state,
            f"{host}'s certificate is not trusted: {cause.verify_message}",
            "untrusted issuer: add the issuing CA with SSL_CERT_FILE if it is legitimate (a corporate "
            "proxy), otherwise someone is in the middle",
        ),
    )


def certificate_expiry(host: str, port: int, *, timeout: float = 2.0) -> str | None:
    """The ``notAfter`` date of a server's certificate, read over an unverified handshake (error path only)."""
    import socket

    from cryptography import x509

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError:
        return None
    if not der:
        return None
    not_after = x509.load_der_x509_certificate(der).not_valid_after_utc
    return not_after.astimezone(UTC).date().isoformat() if isinstance(not_after, datetime) else None
