"""The troubleshooting runbook: the seven classic failures of an API integration, tailored to one integration.

401, 403, 429, timeouts, a body that is not the expected format, CORS and TLS certificates. Each entry says
what the on-call engineer sees (the tether error class), the likely cause given this integration's config, what
to do, and the command that confirms it. Credentials are named by where they are kept, never shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from tether.config.auth import (
    ApiKeyAuthConfig,
    AuthConfig,
    BasicAuthConfig,
    BearerAuthConfig,
    JwtAuthConfig,
    OAuth2AuthConfig,
)
from tether.config.models import IntegrationConfig
from tether.docs._text import code, duration, item, url
from tether.docs.credentials import stored_in
from tether.docs.reference import rate_text

__all__ = ["Failure", "failures", "troubleshooting_lines"]


@dataclass(frozen=True)
class Failure:
    """One failure's entry: its title and four parts, each Markdown."""

    title: str
    symptom: str
    cause: str
    action: str
    confirm: str

    def lines(self) -> list[str]:
        """The entry as a level-4 heading and a list."""
        return [
            f"#### {self.title}",
            "",
            item("Symptom", self.symptom),
            item("Likely cause", self.cause),
            item("What to do", self.action),
            item("Confirm with", self.confirm),
            "",
        ]


def troubleshooting_lines(name: str, config: IntegrationConfig, *, state: str) -> list[str]:
    """Every failure's entry for integration ``name``."""
    lines: list[str] = []
    for failure in failures(name, config, state=state):
        lines += failure.lines()
    return lines


def failures(name: str, config: IntegrationConfig, *, state: str) -> list[Failure]:
    """The seven failures, tailored to ``config``; ``state`` is the config's top-level ``state``."""
    doctor = _doctor(name, config)
    return [
        _unauthorized(name, config.auth, doctor),
        _forbidden(name, config.auth, doctor),
        _rate_limited(name, config, state),
        _timeout(name, config),
        _bad_format(name, config),
        _cors(name, config),
        _tls(name, config),
    ]


def _doctor(name: str, config: IntegrationConfig) -> str:
    if config.health is None:
        return f"`tether doctor {name}` (set `health` first: without a request it cannot test the credentials)"
    return (
        f"`tether doctor {name}` (sends {code(f'{config.health.method} {config.health.path}')} with these credentials)"
    )


def _credential(auth: AuthConfig | None) -> str:
    """The credential a 401 is about, as Markdown: ``the key in env var `NAME` ``."""
    if isinstance(auth, ApiKeyAuthConfig):
        return f"the API key in {stored_in(auth.key)}"
    if isinstance(auth, BearerAuthConfig):
        return f"the token in {stored_in(auth.token)}"
    if isinstance(auth, BasicAuthConfig):
        secret = auth.password if auth.password is not None else auth.username
        return f"the Basic credentials ({stored_in(secret)})"
    if isinstance(auth, JwtAuthConfig):
        return f"the JWT signed with the key in {stored_in(auth.private_key)}"
    if isinstance(auth, OAuth2AuthConfig):
        if auth.client_secret is not None:
            return f"the OAuth client secret in {stored_in(auth.client_secret)}"
        if auth.assertion is not None:
            return f"the assertion signed with the key in {stored_in(auth.assertion.private_key)}"
        return "the OAuth grant"
    return "the credentials"


def _unauthorized(name: str, auth: AuthConfig | None, doctor: str) -> Failure:
    symptom = "`tether.AuthenticationError` (HTTP 401); its hint names where the key comes from"
    if auth is None:
        return Failure(
            "401 Unauthorized",
            symptom,
            "this integration sends no credentials (`auth` is not set) and the API wants some",
            f"add an `auth` table to `[integrations.{name}]` with the key as `${{ENV}}` or `file:PATH`",
            doctor,
        )
    if isinstance(auth, OAuth2AuthConfig):
        renew = (
            f"tether renews tokens at {url(auth.token_url)} ahead of expiry and once on a 401 (replaying the "
            "request once), so a 401 that reaches you came with a fresh token: "
        )
        cause = renew + (
            "the token lacks the audience or scopes the API expects, or the grant was revoked "
            "(`tether.GrantRevokedError`); a failing token endpoint raises `tether.TokenEndpointError`"
        )
        action = (
            f"check {_credential(auth)} is current for this environment, then `tether auth status` for the token's "
            "state"
        )
        if auth.grant in ("authorization_code", "refresh_token"):
            action += f"; after a revoked grant, log in again with `tether auth login {name}`"
        symptom = (
            "`tether.AuthenticationError` (HTTP 401) from the API; from the token endpoint, "
            "`tether.TokenEndpointError`, `tether.GrantRevokedError` (invalid_grant) or `tether.LoginRequiredError`"
        )
        return Failure("401 Unauthorized", symptom, cause, action, f"{doctor}; `tether auth status`")
    cause = f"{_credential(auth)} is wrong, expired, revoked, or the key of another environment (test vs live)"
    if isinstance(auth, JwtAuthConfig):
        cause += "; or this machine's clock is off, so `iat`/`exp` look wrong to the API"
    action = (
        f"check {_credential(auth)} in the environment of the process that calls the API; after replacing it, "
        "restart that process (tether reads it when it loads `tether.toml`)"
    )
    confirm = f"{doctor}; `tether doctor --from-log {name}` (401s by endpoint and hour)"
    return Failure("401 Unauthorized", symptom, cause, action, confirm)


def _forbidden(name: str, auth: AuthConfig | None, doctor: str) -> Failure:
    cause = "the credentials are valid but lack the permission or scope for this request"
    action = "grant the permission to this key in the provider's dashboard, or use a key that has it"
    if isinstance(auth, OAuth2AuthConfig):
        scopes = ", ".join(code(scope) for scope in auth.scopes) or "none"
        cause += f"; the configured scopes are {scopes}"
        action = (
            "add the missing scope to `scopes` (the next token tether obtains carries it), or grant it to the client"
        )
    cause += "; some APIs also answer 403 to an IP address outside their allow-list or an account on the wrong plan"
    confirm = f"{doctor}; `tether doctor --from-log {name}` (which endpoints get 403)"
    return Failure("403 Forbidden", "`tether.PermissionDeniedError` (HTTP 403)", cause, action, confirm)


def _rate_limited(name: str, config: IntegrationConfig, state: str) -> Failure:
    symptom = (
        "`tether.RateLimitError` (HTTP 429 after tether's retries), or `tether.ThrottledError` when tether's own "
        "limiter or a pause the API asked for would hold the call longer than it may wait"
    )
    if config.rate_limit is not None:
        limit = rate_text(config.rate_limit, queueing=False)
        cause = f"more calls than the API allows; tether's client-side limit is {limit}"
    else:
        cause = (
            "more calls than the API allows; no client-side `rate_limit` is configured, so tether learns the limit "
            "only from 429s and the API's headers"
        )
    if state == "memory":
        cause += '; with `state = "memory"` each process counts on its own, so N processes send up to N times the rate'
    if config.tokens_per_minute is not None:
        cause += f"; or the AI token budget ({config.tokens_per_minute:,} per minute) is spent"
    retry = config.retry
    does = (
        "tether pauses every caller of this integration until the reset the API gave (`Retry-After` or "
        "`X-RateLimit-Reset`)"
    )
    if not retry.respect_retry_after:
        does = "tether ignores `Retry-After` here (`respect_retry_after = false`)"
    if 429 in retry.statuses and retry.attempts > 1:
        does += f" and retries the call within its {code(duration(config.timeout.total))} deadline"
    does += "; a 429 that says nothing lowers the rate in effect by 10% for five minutes"
    action = (
        f'{does}. Set `rate_limit` to the API\'s documented limit, share it with `state = "redis://…"` when '
        "several processes call, cache GET responses (`cache`), and spread batch jobs out"
    )
    confirm = (
        f"`tether status {name}` (rate-limit usage); `tether doctor --from-log {name}` (429s by endpoint and hour)"
    )
    return Failure("429 Too Many Requests", symptom, cause, action, confirm)


def _timeout(name: str, config: IntegrationConfig) -> Failure:
    timeout = config.timeout
    read = code(duration(timeout.read)) if timeout.read is not None else "the rest of the deadline"
    cause = (
        f"the API or the network is slower than the configured limits: connect {code(duration(timeout.connect))}, "
        f"read {read}, {code(duration(timeout.total))} in total across every attempt; an API's own 408 means it "
        "gave up waiting for the request"
    )
    if config.breaker.enabled:
        cause += "; repeated timeouts open the circuit breaker (`tether.CircuitOpenError`)"
    action = (
        "check the provider's status page; if one endpoint is legitimately slow, raise `timeout.read` and "
        "`timeout.total` for this integration"
    )
    if not config.fallback.configured:
        action += ', and consider `fallback = "stale"` so readers get the last good answer meanwhile'
    confirm = (
        f"`tether doctor {name}` (tcp and latency checks); `tether doctor --from-log {name}` (the slow tail by "
        "endpoint, hour and backend address)"
    )
    symptom = (
        "`tether.ConnectTimeoutError`, `tether.ReadTimeoutError` or `tether.DeadlineExceededError` (all "
        "`tether.RequestTimeoutError`); an API's 408 is retried, then raised as `tether.APIStatusError`"
    )
    return Failure("Timeout or 408", symptom, cause, action, confirm)


def _bad_format(name: str, config: IntegrationConfig) -> Failure:
    cause = (
        f"an HTML error page from a proxy, load balancer or captive portal; a wrong base URL ({url(config.base_url)}); "
        "a body cut short by a dropped connection"
    )
    if config.version is None:
        cause += "; or a change of the API's format: the version is not pinned (`version`, `version_header`)"
    else:
        cause += f"; or a format other than version {code(config.version)}'s"
    action = f"look at the raw answer with `tether call {name} GET /path`; fix `base_url` or pin `version`"
    symptom = (
        "`tether.NotJSONError`, `tether.TruncatedJSONError` or `tether.UnexpectedContentTypeError` (all "
        "`tether.ResponseFormatError`) from `response.json()`"
    )
    if config.openapi is not None and config.validate_responses:
        action += f"; responses are checked against {code(config.openapi)}: the error names the first mismatch"
        symptom += "; `tether.SchemaMismatchError` when the JSON is not what the OpenAPI document says"
    confirm = f"`tether doctor {name}` (the content check: the type, whether the JSON parses, an HTML page's title)"
    if config.health is None:
        confirm += "; it needs `health` set"
    return Failure("JSON parse error or unexpected format", symptom, cause, action, confirm)


def _cors(name: str, config: IntegrationConfig) -> Failure:
    symptom = "no tether error: the browser's console says the request was blocked by CORS policy, and `fetch` rejects"
    if config.cors_origins:
        origins = ", ".join(code(origin) for origin in config.cors_origins)
        cause = f"the API does not allow one of the configured origins ({origins}), or the page runs on another one"
    else:
        cause = "a web page calls the API directly, and no browser origin is configured for it (`cors_origins`)"
    proxy = config.proxy
    if proxy is not None and proxy.enabled:
        allowed = ", ".join(code(pattern) for pattern in proxy.allow)
        action = f"call it through the backend proxy `/proxy/{name}/…` on `tether serve` instead (it allows {allowed})"
    else:
        action = (
            f"call the API from your backend, or enable the backend proxy (`[integrations.{name}.proxy] allow = […]`)"
        )
    action += "; never put the API key in browser code"
    confirm = f"`tether doctor {name}` (the preflight from each configured origin; `--origin URL` for another)"
    return Failure("CORS", symptom, cause, action, confirm)


def _tls(name: str, config: IntegrationConfig) -> Failure:
    symptom = (
        "`tether.CertificateExpiredError`, `tether.UntrustedCertificateError`, `tether.SelfSignedCertificateError` "
        "or `tether.HostnameMismatchError` (all `tether.TLSError`)"
    )
    confirm = (
        f"`tether doctor {name}` (the tls check: chain, expiry date, host name); the `tls_expiry` alert warns ahead"
    )
    if config.base_url.scheme == "http":
        cause = (
            f"none from the API: {url(config.base_url)} is plain HTTP, so the credentials travel unencrypted (use "
            "`https://` for anything beyond loopback)"
        )
        if isinstance(config.auth, OAuth2AuthConfig) and config.auth.token_url.scheme == "https":
            cause += "; the token endpoint is HTTPS, so its certificate can still be refused"
        action = "once the URL is `https://`, a private CA or an intercepting proxy needs `ca_bundle` (its PEM file)"
        return Failure("SSL/TLS certificate", symptom, cause, action, confirm)
    cause = (
        "the provider's certificate expired, or a corporate proxy or private CA signs it and this machine does not "
        "trust that CA"
    )
    if config.ca_bundle is not None:
        action = (
            f"tether trusts the system store plus {code(config.ca_bundle)} (`ca_bundle`): make sure it holds the CA "
            "that signs the chain"
        )
    else:
        action = "for a private CA or an intercepting proxy, set `ca_bundle` to its PEM file (or `SSL_CERT_FILE`)"
    action += "; an expired certificate is the provider's to renew. Never turn verification off"
    return Failure("SSL/TLS certificate", symptom, cause, action, confirm)
