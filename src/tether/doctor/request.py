"""The checks of the configured ``health`` request and of what its response says.

:func:`check_health` reads the outcome of the request itself (status, or why there was none);
:func:`check_clock`, :func:`check_content`, :func:`check_latency` and :func:`check_version` read the response.
All are pure over a :class:`Probe` and the integration's config.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2

from tether import errors
from tether.auth.static import credential_source
from tether.client._errormap import api_message
from tether.client.response import _looks_truncated
from tether.config.models import IntegrationConfig, OAuth2AuthConfig
from tether.doctor.report import Check, fail, ok, skip, warn
from tether.observe.redact import redact_text
from tether.policies.ratelimit import read_rate_limit_headers

__all__ = ["Probe", "check_clock", "check_content", "check_health", "check_latency", "check_version"]

_SKEW_WARN = 5.0
_SKEW_FAIL = 60.0
_SNIPPET = 120
_TITLE = re.compile(rb"<(title|h1)[^>]*>(.*?)</\1>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Probe:
    """The health request as sent through the integration's client (auth, headers, timeouts; one attempt).

    Attributes:
        method: The method sent.
        path: The path, relative to base_url.
        response: The response, when one arrived (body read).
        error: Why none did (a tether :class:`~tether.errors.CallError` or :class:`~tether.errors.AuthError`).
        elapsed: Seconds from sending to the end of the body (or the error).
        received_at: Wall-clock time (Unix seconds) when the answer arrived.
    """

    method: str
    path: str
    response: httpx2.Response | None
    error: Exception | None
    elapsed: float
    received_at: float


def _said(response: httpx2.Response) -> str:
    message = api_message(response)
    return f" ({message})" if message else ""


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at).astimezone().strftime("%H:%M:%S")


def check_health(probe: Probe, config: IntegrationConfig) -> Check:
    """Whether the health request succeeded; for a failure, the cause and fix its status or error points to."""
    where = f"{probe.method} {probe.path}"
    response = probe.response
    if response is None:
        return _no_response(probe, config)
    status = response.status_code
    details = {"status": status, "seconds": round(probe.elapsed, 4)}
    summary = f"{where} answered {status} {response.reason_phrase} in {probe.elapsed * 1000:.0f} ms"
    if status < 400:
        return ok("health", summary, **details)
    said = _said(response)
    source = credential_source(config.auth)
    if status == 401:
        if config.auth is None:
            return fail(
                "health",
                summary,
                cause=f"the API wants credentials and tether.toml configures none: HTTP 401{said}",
                fix='add an auth table to the integration, e.g. auth = { type = "api_key", key = "${API_KEY}" }',
                **details,
            )
        return fail(
            "health",
            summary,
            cause=f"the API refused the credentials from {source}: HTTP 401{said}",
            fix=(
                f"the key in {source} is wrong or expired (or revoked): check its value, that it is the key for "
                "this environment (test or live), and replace it if it was rotated"
            ),
            credential_source=source,
            **details,
        )
    if status == 403:
        scopes = config.auth.scopes if isinstance(config.auth, OAuth2AuthConfig) else []
        asked = f" (token scopes: {' '.join(scopes)})" if scopes else ""
        return fail(
            "health",
            summary,
            cause=f"the credentials from {source or 'the request'} are valid but lack the permission for {where}"
            f"{asked}: HTTP 403{said}",
            fix=(
                "grant the key the permission or scope this endpoint needs in the provider's dashboard (for OAuth, "
                "add it to auth.scopes and log in again), or point health at an endpoint the key may call"
            ),
            **details,
        )
    if status == 429:
        return _rate_limited(probe, response, summary, details)
    if status >= 500:
        return fail(
            "health",
            summary,
            cause=f"the provider failed: HTTP {status}{said}",
            fix=(
                "check the provider's status page and retry later; tether retries 5xx (retry.statuses) and a "
                "fallback can serve stale responses meanwhile"
            ),
            **details,
        )
    if status == 404:
        fix = "check the health path and base_url (the version prefix, e.g. /v1) against the API's reference"
    else:
        fix = "the API refused the request; check the health request against the API's reference"
    return fail("health", summary, cause=f"HTTP {status}{said}", fix=fix, **details)


def _rate_limited(probe: Probe, response: httpx2.Response, summary: str, details: dict[str, Any]) -> Check:
    signal = read_rate_limit_headers(429, response.headers, now=probe.received_at)
    parts = []
    if signal.limit is not None:
        left = f", {signal.remaining:g} left" if signal.remaining is not None else ""
        parts.append(f"limit {signal.limit:g}{left}")
    if signal.pause and not signal.slow_down:
        parts.append(f"resets in {signal.pause:.0f}s (at {_clock(probe.received_at + signal.pause)})")
    said = "; ".join(parts) or "the API said neither its limit nor when it resets"
    return fail(
        "health",
        summary,
        cause=f"rate limited: {said}",
        fix=(
            "wait for the reset; then find what spends the budget (tether doctor --from-log, tether status) and set "
            "rate_limit in tether.toml a little below the API's limit so every process shares it"
        ),
        limit=signal.limit,
        remaining=signal.remaining,
        reset_in=signal.pause if not signal.slow_down else None,
        **details,
    )


def _no_response(probe: Probe, config: IntegrationConfig) -> Check:
    error = probe.error
    where = f"{probe.method} {probe.path}"
    details = {"error": type(error).__name__, "seconds": round(probe.elapsed, 4)}
    timeout = config.timeout
    if isinstance(error, errors.RequestTimeoutError):
        if isinstance(error, errors.ConnectTimeoutError):
            limit, key = timeout.connect, "timeout.connect"
        elif isinstance(error, errors.ReadTimeoutError) and timeout.read is not None:
            limit, key = timeout.read, "timeout.read"
        else:
            limit, key = timeout.total, "timeout.total"
        return fail(
            "health",
            f"{where} timed out after {probe.elapsed:.1f}s",
            cause=f"no answer within the configured {key} = {limit:g}s",
            fix=(
                "the API is slow or hanging (check its status page); if it is normally slower than that, raise "
                f"{key} in tether.toml; if connecting is what times out, a firewall drops the packets"
            ),
            timeout=limit,
            timeout_key=key,
            **details,
        )
    summary = getattr(error, "summary", None) or str(error)
    hint = getattr(error, "hint", None) or "see the checks above"
    if isinstance(error, errors.TLSError):
        cause = f"the certificate was refused: {summary}"
    elif isinstance(error, errors.ConnectionLostError):
        cause = f"the connection dropped before the answer: {summary}"
        hint = "a proxy, load balancer or the server closes connections; " + hint
    else:
        cause = summary
    return fail("health", f"{where} got no response", cause=redact_text(cause), fix=redact_text(hint), **details)


def check_clock(probe: Probe) -> Check:
    """This machine's clock against the server's ``Date`` header (signatures, JWTs and OAuth need them close)."""
    response = probe.response
    header = response.headers.get("date") if response is not None else None
    if not header:
        return skip("clock", "the API sent no Date header")
    try:
        server = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return skip("clock", f"the API's Date header is not a date: {header!r}")
    skew = server - probe.received_at  # positive: the server is ahead, this machine is behind
    details = {"server_date": header, "skew_seconds": round(skew, 1)}
    if abs(skew) <= _SKEW_WARN:
        return ok("clock", "this machine's clock agrees with the server's (within the Date header's 1 s)", **details)
    direction = "behind" if skew > 0 else "ahead of"
    said = f"this machine's clock is {_duration(abs(skew))} {direction} the server's"
    fix = (
        "synchronise the clock with NTP (timedatectl set-ntp true, chrony); signed requests, JWTs, OAuth tokens and "
        "webhook signatures are refused when clocks disagree"
    )
    if abs(skew) < _SKEW_FAIL:
        return warn("clock", said, cause="a small skew; signatures with a short tolerance may fail", fix=fix, **details)
    return fail("clock", said, cause=f"{said} (Date: {header})", fix=fix, **details)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check_content(probe: Probe) -> Check:
    """The response's Content-Type and whether its body is valid JSON."""
    response = probe.response
    if response is None:
        return skip("content", "no response to read")
    body = response.content
    content_type = response.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    details = {"content_type": content_type or None, "bytes": len(body)}
    if response.status_code == 204 or not body:
        return ok("content", f"no body (HTTP {response.status_code})", **details)
    if media == "application/json" or media.endswith("+json"):
        try:
            json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            truncated = _looks_truncated(exc, body.lstrip())
            how = "ends in the middle of the document (truncated)" if truncated else f"is not valid JSON: {exc}"
            return fail(
                "content",
                f"{media}, but the body {how}",
                cause=f"the body {how}; starts with {_snippet(body)}",
                fix=(
                    "a truncated body means the connection was cut (a proxy's size or time limit, a crashing server); "
                    "otherwise the provider sends broken JSON: report it with the request id"
                ),
                **details,
            )
        return ok("content", f"{media}, valid JSON ({len(body)} bytes)", **details)
    title = _TITLE.search(body)
    if media == "text/html" or body.lstrip()[:1] == b"<":
        page = f" ({title.group(2).decode(errors='replace').strip()[:_SNIPPET]!r})" if title else ""
        return fail(
            "content",
            f"an HTML page{page} instead of JSON",
            cause=f"Content-Type {content_type or 'missing'}: an HTML page{page} answered where the API's JSON was due",
            fix=(
                "HTML comes from something in front of the API (a proxy, load balancer, captive portal or "
                "maintenance page) or from a wrong base_url or path (the provider's website, not its API): check "
                "both, and try the URL with `tether call`"
            ),
            **details,
        )
    return fail(
        "content",
        f"{content_type or 'no Content-Type'}, not JSON",
        cause=f"the body is {content_type or 'of no declared type'}, starting {_snippet(body)}; .json() refuses it",
        fix="check base_url and the health path; if this endpoint is not JSON by design, point health at one that is",
        **details,
    )


def _snippet(body: bytes) -> str:
    text = body[:_SNIPPET].decode(errors="replace").replace("\n", " ")
    return repr(redact_text(text) + ("…" if len(body) > _SNIPPET else ""))


def check_latency(probe: Probe, threshold: float | None, *, connect: float | None, handshake: float | None) -> Check:
    """The health request's latency against the ``latency_p95`` alert threshold, with where the time went."""
    if probe.response is None:
        return skip("latency", "no response to time")
    elapsed = probe.elapsed
    spent = []
    if connect is not None:
        spent.append(f"connecting took {connect * 1000:.0f} ms")
    if handshake is not None:
        spent.append(f"the TLS check {handshake * 1000:.0f} ms")
    details = {"seconds": round(elapsed, 4), "threshold": threshold}
    summary = f"{elapsed * 1000:.0f} ms"
    if threshold is None:
        return ok("latency", summary + " (no latency alert configured)", **details)
    if elapsed <= threshold:
        return ok("latency", f"{summary}, under the {threshold:g}s alert threshold (latency_p95)", **details)
    breakdown = f"; {' and '.join(spent)}, so the rest is the API producing its answer" if spent else ""
    return warn(
        "latency",
        f"{summary}, over the {threshold:g}s alert threshold (latency_p95)",
        cause=f"one health request took {elapsed:.2f}s{breakdown}; if this is typical, the latency alert fires",
        fix=(
            "check the provider's status page and tether doctor --from-log for the slow tail; cache the endpoint, "
            "or raise alerts.latency_p95 for this integration if the API is slow by nature"
        ),
        **details,
    )


def check_version(probe: Probe, config: IntegrationConfig) -> Check:
    """The API version the response carries, against the configured one, and ``Deprecation``/``Sunset`` headers."""
    response = probe.response
    if response is None:
        return skip("version", "no response to read")
    headers = response.headers
    answered = headers.get(config.version_header) if config.version_header else None
    deprecation, sunset = headers.get("deprecation"), headers.get("sunset")
    links = _links(headers.get("link", ""))
    details = {
        "configured": config.version,
        "answered": answered,
        "deprecation": deprecation,
        "sunset": sunset,
        "links": links,
    }
    read_more = next((links[rel] for rel in ("successor-version", "deprecation", "sunset") if rel in links), None)
    see = f"; read {read_more}" if read_more else ""
    sunset_at = _date(sunset)
    if sunset_at is not None and sunset_at <= probe.received_at:
        return fail(
            "version",
            f"the API retired this version on {_day(sunset_at)} (Sunset)",
            cause=f"Sunset: {sunset}: calls may stop working at any moment",
            fix=f"migrate to the successor version now{see}; then update version in tether.toml",
            **details,
        )
    if deprecation or sunset:
        when = f", sunset {_day(sunset_at)}" if sunset_at is not None else ""
        since = _date(deprecation)
        deprecated = f"deprecated since {_day(since)}" if since is not None else "deprecated"
        return warn(
            "version",
            f"the API says this version is {deprecated}{when}",
            cause=f"Deprecation: {deprecation or '-'}, Sunset: {sunset or '-'}",
            fix=f"plan the migration before the sunset{see}; then update version in tether.toml",
            **details,
        )
    if answered and config.version and answered != config.version:
        return warn(
            "version",
            f"the API answered version {answered}; tether.toml sends {config.version}",
            cause=f"{config.version_header} came back as {answered}: the API ignored or overrode the configured one",
            fix="check version_header's name and the version's spelling against the API's reference",
            **details,
        )
    if config.version:
        shown = f"version {answered or config.version} ({config.version_header})"
        return ok("version", f"{shown}; not deprecated", **details)
    return ok("version", "no version configured; no Deprecation or Sunset header", **details)


def _links(value: str) -> dict[str, str]:
    links: dict[str, str] = {}
    for part in value.split(","):
        target, _, params = part.partition(";")
        rel = re.search(r'rel="?([^";]+)"?', params)
        if rel and target.strip().startswith("<"):
            links[rel.group(1).strip().lower()] = target.strip().strip("<>")
    return links


def _date(value: str | None) -> float | None:
    """A ``Sunset``/``Deprecation`` value as Unix time: an HTTP-date, or ``@epoch`` (RFC 9745)."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("@") and value[1:].isdigit():
        return float(value[1:])
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).date().isoformat()
