"""A document's ``securitySchemes`` as tether's ``auth`` table, with every secret an ``${ENV}`` reference.

The scheme chosen is the first one of the document's top-level ``security`` requirements that tether can use
as it is (then the other declared schemes, in order); the others are named in comments. What tether cannot
do, or should not do unattended (a person logging in), is written as a comment that says why and how.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

from tether.openapi.document import OpenAPIDocument
from tether.openapi.refs import Locator, escape
from tether.openapi.render import AuthDraft, toml_value

__all__ = ["AUTH_CHOICES", "auth_from_document", "auth_template", "env_prefix"]

AUTH_CHOICES = ("bearer", "api_key", "basic", "oauth2", "none")


def env_prefix(name: str) -> str:
    """The environment variable prefix for an integration: ``openai`` → ``OPENAI``, ``my-crm`` → ``MY_CRM``."""
    prefix = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper() or "API"
    return f"API_{prefix}" if prefix[0].isdigit() else prefix


def _ref(prefix: str, suffix: str) -> str:
    return "${" + f"{prefix}_{suffix}" + "}"


def _secret_note(*names: str) -> str:
    return "Export " + ", ".join(names) + " before starting tether (`tether check` says what is missing)."


def auth_template(kind: str, name: str, base_url: str) -> AuthDraft:
    """The auth table of ``tether init NAME --auth KIND`` (no document to go by)."""
    prefix = env_prefix(name)
    if kind == "bearer":
        return AuthDraft(
            {"type": "bearer", "token": _ref(prefix, "API_KEY")},
            ["How each request is authenticated: Authorization: Bearer <token>.", _secret_note(f"{prefix}_API_KEY")],
        )
    if kind == "api_key":
        return AuthDraft(
            {"type": "api_key", "key": _ref(prefix, "API_KEY"), "name": "X-API-Key"},
            [
                "How each request is authenticated: the key in a header (name). TODO: the header the API expects;"
                ' add prefix = "Token " if it wants text before the key, or in = "query" for ?name=<key>.',
                _secret_note(f"{prefix}_API_KEY"),
            ],
        )
    if kind == "basic":
        return AuthDraft(
            {"type": "basic", "username": _ref(prefix, "USERNAME"), "password": _ref(prefix, "PASSWORD")},
            [
                "How each request is authenticated: HTTP Basic.",
                f'An API that takes the key as the username wants username = "{_ref(prefix, "API_KEY")}", no password.',
                _secret_note(f"{prefix}_USERNAME", f"{prefix}_PASSWORD"),
            ],
        )
    if kind == "oauth2":
        host = urlsplit(base_url)
        return AuthDraft(
            _client_credentials(prefix, f"{host.scheme}://{host.netloc}/oauth/token", []),
            [
                "How each request is authenticated: OAuth 2.0 client credentials; tether fetches tokens from"
                " token_url and renews them before they expire. TODO: the provider's token endpoint and scopes.",
                'For a user\'s authorization instead, see grant = "authorization_code" in docs/configuration.md.',
                _secret_note(f"{prefix}_CLIENT_ID", f"{prefix}_CLIENT_SECRET"),
            ],
        )
    if kind == "none":
        return AuthDraft(
            notes=[
                "No credentials are sent. If the API needs them, add an auth table (docs/configuration.md#auth):",
                f'auth = {{ type = "bearer", token = "{_ref(prefix, "API_KEY")}" }}',
            ]
        )
    raise ValueError(f"unknown auth type {kind!r}; expected one of {', '.join(AUTH_CHOICES)}")


def _client_credentials(prefix: str, token_url: str, scopes: list[str]) -> dict[str, Any]:
    return {
        "type": "oauth2",
        "token_url": token_url,
        "client_id": _ref(prefix, "CLIENT_ID"),
        "client_secret": _ref(prefix, "CLIENT_SECRET"),
        "scopes": scopes,
    }


def auth_from_document(document: OpenAPIDocument, locator: Locator, name: str, base_url: str) -> AuthDraft:
    """The auth table for the document's security schemes."""
    components = document.data.get("components")
    raw = components.get("securitySchemes") if isinstance(components, dict) else None
    schemes: dict[str, dict[str, Any]] = {}
    for scheme_name, value in (raw or {}).items():
        scheme, _ = locator.follow(value, f"/components/securitySchemes/{escape(str(scheme_name))}")
        if isinstance(scheme, dict):
            schemes[str(scheme_name)] = scheme
    if not schemes:
        notes = ["The document declares no securitySchemes, so no credentials are sent."]
        return AuthDraft(notes=notes + auth_template("none", name, base_url).notes[1:])
    requirements = [req for req in document.data.get("security") or [] if isinstance(req, dict)]
    scopes: dict[str, list[str]] = {}
    order: list[str] = []
    for requirement in requirements:
        for scheme_name, wanted in requirement.items():
            if scheme_name in schemes and scheme_name not in order:
                order.append(scheme_name)
                scopes[scheme_name] = [str(scope) for scope in wanted or []]
    order += [scheme_name for scheme_name in schemes if scheme_name not in order]
    drafts = {
        scheme_name: _scheme(scheme_name, schemes[scheme_name], scopes.get(scheme_name, []), name, base_url)
        for scheme_name in order
    }
    chosen = next((scheme_name for scheme_name in order if drafts[scheme_name].keys), order[0])
    draft = drafts[chosen]
    others = [f"{other} ({_kind(schemes[other])})" for other in order if other != chosen]
    if others:
        draft.notes.append(
            "The document also declares " + ", ".join(others) + "; an operation that needs another scheme can go"
            " through a second integration with the same base_url."
        )
    combined = [req for req in requirements if chosen in req and len(req) > 1]
    if combined:
        draft.notes.append(
            "The document asks for " + " and ".join(combined[0]) + " together; tether sends one credential."
        )
    if any(not req for req in requirements):
        draft.notes.append("The document says credentials are optional (an empty security requirement).")
    return draft


def _kind(scheme: dict[str, Any]) -> str:
    kind = str(scheme.get("type", "?"))
    if kind == "http":
        return f"HTTP {scheme.get('scheme', '?')}"
    if kind == "apiKey":
        return f"API key in {scheme.get('in', '?')} {scheme.get('name', '?')!s}"
    return kind


def _scheme(scheme_name: str, scheme: dict[str, Any], scopes: list[str], name: str, base_url: str) -> AuthDraft:
    prefix = env_prefix(name)
    origin = f"How each request is authenticated: securitySchemes.{scheme_name}, {_kind(scheme)}."
    kind = scheme.get("type")
    if kind == "http":
        http = str(scheme.get("scheme", "")).lower()
        if http == "bearer":
            token_format = f" (a {scheme['bearerFormat']})" if scheme.get("bearerFormat") else ""
            return AuthDraft(
                {"type": "bearer", "token": _ref(prefix, "API_KEY")},
                [origin[:-1] + token_format + ".", _secret_note(f"{prefix}_API_KEY")],
            )
        if http == "basic":
            draft = auth_template("basic", name, base_url)
            draft.notes[0] = origin
            return draft
        return AuthDraft(notes=[origin, f"tether does not send HTTP {http} credentials; no auth is written."])
    if kind == "apiKey":
        where, header = scheme.get("in"), str(scheme.get("name") or "X-API-Key")
        keys: dict[str, Any] = {"type": "api_key", "key": _ref(prefix, "API_KEY"), "name": header}
        notes = [origin, _secret_note(f"{prefix}_API_KEY")]
        if where == "header":
            if header.lower() == "authorization":
                notes.append('TODO: if the API wants text before the key (prefix = "Token "), add it.')
            return AuthDraft(keys, notes)
        if where == "query":
            notes.append(
                "tether masks the parameter in its own logs, but query strings land in proxies' and the provider's"
                " access logs: prefer a header if the API accepts one."
            )
            return AuthDraft({**keys, "in": "query"}, notes)
        return AuthDraft(
            notes=[origin, f"tether sends API keys in a header or the query, not in a {where}; no auth is written."]
        )
    if kind == "oauth2":
        return _oauth2(origin, scheme, scopes, prefix, name, base_url)
    if kind == "openIdConnect":
        url = scheme.get("openIdConnectUrl", "?")
        return AuthDraft(
            notes=[
                origin,
                f"tether does not read OpenID Connect discovery ({url}): its token_endpoint is the token_url"
                " of an oauth2 auth table, as in this commented example. TODO: fill it in, or keep no auth.",
            ],
            example=_oauth2_example("client_credentials", "https://…/token", None, prefix, scopes),
        )
    return AuthDraft(notes=[origin, f"tether cannot send {kind} credentials (client certificates); no auth."])


def _oauth2(origin: str, scheme: dict[str, Any], scopes: list[str], prefix: str, name: str, base_url: str) -> AuthDraft:
    flows = scheme.get("flows")
    if not isinstance(flows, dict):
        flows = {}
    credentials = flows.get("clientCredentials")
    if isinstance(credentials, dict) and credentials.get("tokenUrl"):
        token_url = urljoin(base_url, str(credentials["tokenUrl"]))
        offered = list((credentials.get("scopes") or {}).keys())
        notes = [origin, "tether fetches tokens from token_url (client credentials) and renews them itself."]
        if offered and not scopes:
            notes.append("TODO: the scopes to ask for; the document offers " + ", ".join(offered[:12]) + ".")
        notes.append(_secret_note(f"{prefix}_CLIENT_ID", f"{prefix}_CLIENT_SECRET"))
        return AuthDraft(_client_credentials(prefix, token_url, scopes), notes)
    code = flows.get("authorizationCode")
    if isinstance(code, dict):
        authorize = urljoin(base_url, str(code.get("authorizationUrl", "")))
        token_url = urljoin(base_url, str(code.get("tokenUrl", "")))
        return AuthDraft(
            notes=[
                origin,
                "The authorization code flow needs a person to log in once (`tether auth login "
                f"{name}`); tether then keeps and renews the token. To use it, uncomment:",
            ],
            example=_oauth2_example("authorization_code", token_url, authorize, prefix, scopes),
        )
    unsupported = ", ".join(sorted(flows)) or "no flows"
    return AuthDraft(
        notes=[
            origin,
            f"tether does not support the {unsupported} flow(s) (the OAuth 2.0 Security BCP retires implicit and"
            " password); ask the provider for client credentials or the authorization code flow. No auth is written.",
        ]
    )


def _oauth2_example(grant: str, token_url: str, authorize: str | None, prefix: str, scopes: list[str]) -> list[str]:
    lines = ['auth.type = "oauth2"']
    if grant != "client_credentials":
        lines.append(f"auth.grant = {toml_value(grant)}")
    if authorize:
        lines.append(f"auth.authorize_url = {toml_value(authorize)}")
    lines += [
        f"auth.token_url = {toml_value(token_url)}",
        f"auth.client_id = {toml_value(_ref(prefix, 'CLIENT_ID'))}",
        f"auth.client_secret = {toml_value(_ref(prefix, 'CLIENT_SECRET'))}",
        f"auth.scopes = {toml_value(scopes)}",
    ]
    return lines
