"""The CORS preflight a browser would send from each configured origin, and whether the API allows the call."""

from __future__ import annotations

import httpx2

from tether.config.models import ApiKeyAuthConfig, IntegrationConfig
from tether.doctor.report import Check, fail, ok, skip
from tether.errors import HINTS

__all__ = ["check_cors", "preflight_headers"]

# Headers a browser sends without asking (RFC: CORS-safelisted request headers), plus what it sets itself.
_SAFELISTED = frozenset({"accept", "accept-language", "content-language", "content-type", "user-agent"})
_SIMPLE_METHODS = frozenset({"GET", "HEAD", "POST"})


def preflight_headers(config: IntegrationConfig) -> list[str]:
    """The request headers a browser would have to ask permission for (auth, version, configured headers)."""
    names: list[str] = []
    auth = config.auth
    if isinstance(auth, ApiKeyAuthConfig):
        if auth.in_ == "header":
            names.append(auth.name)
    elif auth is not None:
        names.append("Authorization")
    if config.version_header and config.version:
        names.append(config.version_header)
    names.extend(config.headers)
    return sorted({name.lower() for name in names} - _SAFELISTED)


def check_cors(client: httpx2.Client, url: str, method: str, origins: list[str], config: IntegrationConfig) -> Check:
    """Send the preflight (``OPTIONS`` with ``Origin``) from each origin and judge the answer as a browser would.

    Args:
        client: A client without credentials (a preflight never carries them), trusting the integration's CAs.
        url: The URL a browser would call (the health request's).
        method: The method it would use.
        origins: Browser origins, e.g. ``https://app.example.com``.
        config: The integration (for the headers a call sends).
    """
    if not origins:
        return skip("cors", "no browser origins configured")
    wanted = preflight_headers(config)
    problems: dict[str, str] = {}
    allowed: dict[str, str] = {}
    for origin in origins:
        headers = {"Origin": origin, "Access-Control-Request-Method": method}
        if wanted:
            headers["Access-Control-Request-Headers"] = ", ".join(wanted)
        try:
            response = client.options(url, headers=headers)
        except httpx2.HTTPError as exc:
            problems[origin] = f"the preflight failed: {type(exc).__name__}: {exc}"
            continue
        problem = _judge(response, origin, method, wanted)
        if problem is None:
            allowed[origin] = response.headers.get("access-control-allow-origin", "")
        else:
            problems[origin] = problem
    details = {"origins": origins, "request_headers": wanted, "problems": problems}
    if not problems:
        return ok("cors", f"the API allows {method} from {', '.join(origins)}", **details)
    cause = "; ".join(f"{origin}: {problem}" for origin, problem in problems.items())
    blocked = ", ".join(problems)
    return fail(
        "cors",
        f"a browser on {blocked} is blocked",
        cause=cause,
        fix=f"{HINTS['cors']}; if the API does support browsers, allow the origin in the provider's dashboard",
        **details,
    )


def _judge(response: httpx2.Response, origin: str, method: str, wanted: list[str]) -> str | None:
    headers = response.headers
    allow_origin = headers.get("access-control-allow-origin")
    if allow_origin is None:
        return f"the preflight answer (HTTP {response.status_code}) has no Access-Control-Allow-Origin header"
    if allow_origin.strip() not in ("*", origin):
        return f"Access-Control-Allow-Origin is {allow_origin!r}, not this origin"
    if response.status_code >= 300:
        return f"the preflight answered HTTP {response.status_code}; browsers need a 2xx"
    methods = {part.strip().upper() for part in headers.get("access-control-allow-methods", "").split(",")}
    if method.upper() not in _SIMPLE_METHODS and method.upper() not in methods and "*" not in methods:
        return f"Access-Control-Allow-Methods does not include {method}"
    allowed = {part.strip().lower() for part in headers.get("access-control-allow-headers", "").split(",")}
    # "*" covers every header but Authorization, which must be listed by name.
    missing = [name for name in wanted if name not in allowed and ("*" not in allowed or name == "authorization")]
    if missing:
        return f"Access-Control-Allow-Headers does not include {', '.join(missing)}"
    return None
