"""``tether auth``: log in to OAuth 2.0 integrations, see where their tokens stand, forget them.

``login`` runs the authorization code grant the way RFC 8252 asks a native app to: PKCE (RFC 7636, S256), a
random ``state``, and a one-shot listener on loopback that receives the browser's redirect. The tokens go to the
store the application's processes share, so a login here is what every client of the integration uses next.
Nothing here prints a token or a secret; ``status`` reports their state only.
"""

from __future__ import annotations

import secrets
import time
import webbrowser
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import typer
from rich.table import Table

from tether._durations import parse_duration
from tether.auth.oauth2 import TokenManager
from tether.auth.tokens import SECRET_KEY_ENV, TokenSet
from tether.cli._loopback import LoopbackServer, listen, page, pkce_pair, wait
from tether.cli._output import console, esc, fail, print_json, say
from tether.config.models import OAuth2AuthConfig
from tether.errors import AuthError, ConfigError
from tether.hub import Hub
from tether.observe.redact import redact_text

__all__ = ["auth"]

auth = typer.Typer(
    name="auth",
    help="OAuth 2.0 tokens: log in (authorization code + PKCE), show their state, forget them.",
    no_args_is_help=True,
)

# --- shared ---------------------------------------------------------------------------------------------------


def _hub(ctx: typer.Context) -> Hub:
    try:
        return Hub.from_config(ctx.obj.get("config") if ctx.obj else None)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _oauth(hub: Hub, name: str) -> tuple[OAuth2AuthConfig, TokenManager]:
    try:
        config = hub.integration(name).auth
    except KeyError as exc:
        raise fail(exc.args[0]) from None
    if not isinstance(config, OAuth2AuthConfig):
        kind = config.type if config is not None else "none"
        raise fail(f"integration {name!r} does not use OAuth 2.0 (auth type: {kind}); there is no token to manage")
    try:
        return config, hub.token_manager(name)
    except ValueError as exc:  # e.g. a TETHER_SECRET_KEY too short to be a key
        raise fail(f"{name}: {exc}") from None


def _human(seconds: float) -> str:
    """``54m``, ``2h 5m``, ``3d 4h``: a duration the way a person reads it."""
    if 0 < abs(seconds) < 1:
        return f"{abs(seconds):.1g}s"
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 3600:
        return f"{minutes}m"
    if seconds < 86400:
        return f"{hours}h {minutes % 60}m" if minutes % 60 else f"{hours}h"
    return f"{days}d {hours % 24}h" if hours % 24 else f"{days}d"


def _expiry(tokens: TokenSet, now: float) -> str:
    if tokens.revoked or not tokens.access_token:
        return "-"
    if tokens.expires_at is None:
        return "no expiry given"
    left = tokens.expires_at - now
    return f"in {_human(left)}" if left > 0 else f"expired {_human(left)} ago"


# --- login ----------------------------------------------------------------------------------------------------


def _authorization_url(config: OAuth2AuthConfig, client_id: str, redirect_uri: str, state: str, challenge: str) -> str:
    parts = urlsplit(str(config.authorize_url))
    query = parse_qsl(parts.query, keep_blank_values=True)  # the provider's own parameters stay
    query += [("response_type", "code"), ("client_id", client_id), ("redirect_uri", redirect_uri)]
    if config.scopes:
        query.append(("scope", " ".join(config.scopes)))
    query += [("state", state), ("code_challenge", challenge), ("code_challenge_method", "S256")]
    if config.audience:
        query.append(("audience", config.audience))
    if config.resource:
        query.append(("resource", config.resource))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


@dataclass
class _Outcome:
    tokens: TokenSet | None = None
    error: str | None = None
    hint: str | None = None


def _code_flow(
    name: str, config: OAuth2AuthConfig, manager: TokenManager, server: LoopbackServer
) -> tuple[str, _Outcome]:
    """Arm ``server`` for the redirect (check it, exchange the code, keep the tokens); the URL to send the user to."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(32)
    redirect_uri = server.redirect_uri
    outcome = _Outcome()

    def answer(params: dict[str, str]) -> tuple[int, str]:
        if not secrets.compare_digest(params.get("state", ""), state):
            outcome.error = "the redirect's state does not match this login (a forged or stale redirect)"
            outcome.hint = f"run `tether auth login {name}` again and finish it in the browser it opens"
            return 400, page("Login failed", "The state parameter does not match. Run tether auth login again.")
        if "error" in params:
            error = params["error"]
            description = params.get("error_description", "")
            if error == "access_denied":
                outcome.error = "authorization was denied at the provider (access_denied)"
                outcome.hint = "approve the request in the browser, or check the user may use this client"
            else:
                said = f"{error}: {description}" if description else error
                outcome.error = f"the provider refused the authorization: {redact_text(said)}"
                outcome.hint = "check client_id, scopes and the redirect URI registered with the provider"
            return 400, page("Login failed", f"The provider said: {error}. You can close this tab.")
        code = params.get("code")
        if not code:
            outcome.error, outcome.hint = "the redirect carried no authorization code", "run the login again"
            return 400, page("Login failed", "No authorization code arrived. You can close this tab.")
        endpoint = manager.endpoint
        try:
            tokens = endpoint.request(endpoint.code_form(code, redirect_uri=redirect_uri, verifier=verifier))
        except AuthError as exc:
            outcome.error, outcome.hint = f"exchanging the code failed: {exc.summary}", exc.hint
            return 502, page("Login failed", "The token endpoint refused the code. See the terminal.")
        manager.store_tokens(tokens)
        outcome.tokens = tokens
        return 200, page(f"Logged in to {name}", "tether has its tokens. You can close this tab.")

    server.answer = answer
    return _authorization_url(config, _client_id(config), redirect_uri, state, challenge), outcome


def _client_id(config: OAuth2AuthConfig) -> str:
    value = config.client_id
    return value if isinstance(value, str) else value.value if value is not None else ""


def _say_logged_in(tokens: TokenSet) -> None:
    expiry = _expiry(tokens, time.time())
    expires = f"expires {expiry}" if expiry.startswith("in ") else expiry
    scopes = tokens.scope or "-"
    refresh = "with" if tokens.refresh_token else "without"
    say(f"[green]✔[/green] logged in: {esc(expires)}, scopes {esc(scopes)} ({refresh} a refresh token)")


def _obtain(name: str, config: OAuth2AuthConfig, manager: TokenManager) -> None:
    """Grants without a user: obtain a token now, through the manager so renewal stays single-flight."""
    try:
        current = manager.stored()
        tokens = manager.token(rejected=current.access_token if current is not None else None)
    except AuthError as exc:
        raise fail(str(exc.summary), exc.hint) from None
    say(f"{esc(name)} uses grant {config.grant!r}, which needs no browser; obtained a token with it.")
    _say_logged_in(tokens)


@auth.command()
def login(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Integration name from tether.toml."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Print the URL only; do not open a browser."),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="Loopback port for the redirect (default: redirect_uri's, else any)."
    ),
    timeout: str = typer.Option("300", "--timeout", help="How long to wait for the redirect: 300, '5m'."),
) -> None:
    """Authorize NAME in the browser (authorization code + PKCE) and store its tokens.

    Integrations with another grant obtain a token right away with it, which checks the credentials.
    """
    try:
        seconds = parse_duration(timeout)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--timeout") from None
    with _hub(ctx) as hub:
        config, manager = _oauth(hub, name)
        if config.grant != "authorization_code":
            _obtain(name, config, manager)
            return
        try:
            server = listen(config.redirect_uri, port)
        except OSError as exc:
            raise fail(
                f"cannot listen on loopback for the redirect: {exc.strerror}",
                "another program uses that port; pick another with --port (and register it with the provider)",
            ) from None
        try:
            url, outcome = _code_flow(name, config, manager, server)
            say(f"Open this URL to authorize [bold]{esc(name)}[/bold] (waiting {_human(seconds)} for the redirect):")
            console.print(url, soft_wrap=True, markup=False, highlight=False)  # one line, for copying
            if not no_browser and not webbrowser.open(url):
                say("(no browser could be opened here: open the URL above on this machine)")
            arrived = wait(server, seconds)
        finally:
            server.server_close()
    if not arrived:
        raise fail(
            f"no redirect arrived within {_human(seconds)}",
            "finish the login in the browser sooner, or give more time with --timeout",
        )
    if outcome.tokens is None:
        raise fail(outcome.error or "the login failed", outcome.hint)
    _say_logged_in(outcome.tokens)


# --- status ---------------------------------------------------------------------------------------------------


def _action(name: str, config: OAuth2AuthConfig) -> str:
    if config.grant == "authorization_code":
        return f"run `tether auth login {name}`"
    if config.grant == "refresh_token":
        return f"put a fresh refresh token in tether.toml's refresh_token, then `tether auth reset {name}`"
    return f"`tether auth login {name}` obtains a new token (check the client at the provider if it fails)"


def _oauth_row(name: str, config: OAuth2AuthConfig, manager: TokenManager, now: float) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        "type": "oauth2",
        "grant": config.grant,
        "encrypted": manager.store.sealer.encrypts,
        "token_stored": False,
        "expires_at": None,
        "expires": "-",
        "scopes": [],
        "refresh_token": False,
        "revoked": False,
        "needs_login": False,
        "problem": None,
        "action": None,
    }
    try:
        tokens = manager.stored()
    except AuthError as exc:
        return {**row, "problem": exc.summary, "action": exc.hint}
    if tokens is None:
        needs_user = config.grant == "authorization_code" or (
            config.grant == "refresh_token" and config.refresh_token is None
        )
        if needs_user:
            return {**row, "needs_login": True, "problem": "no token stored", "action": _action(name, config)}
        return {**row, "action": "obtained on the first call"}
    row.update(
        token_stored=not tokens.revoked and bool(tokens.access_token),
        expires_at=tokens.expires_at,
        expires=_expiry(tokens, now),
        scopes=(tokens.scope or "").split(),
        refresh_token=tokens.refresh_token is not None,
        revoked=tokens.revoked,
    )
    if tokens.revoked:
        return {**row, "problem": "the grant was revoked", "action": _action(name, config)}
    if config.grant == "authorization_code" and tokens.refresh_token is None and not tokens.valid(now):
        return {**row, "needs_login": True, "problem": "expired, no refresh token", "action": _action(name, config)}
    return row


def _static_row(name: str, kind: str) -> dict[str, Any]:
    return {"name": name, "type": kind, "credentials": f"static credentials ({kind})" if kind != "none" else "none"}


def _rows(hub: Hub, names: list[str]) -> list[dict[str, Any]]:
    now = time.time()
    rows = []
    for name in names:
        config = hub.integration(name).auth
        if isinstance(config, OAuth2AuthConfig):
            _, manager = _oauth(hub, name)
            rows.append(_oauth_row(name, config, manager, now))
        else:
            rows.append(_static_row(name, config.type if config is not None else "none"))
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title="OAuth 2.0 tokens", show_lines=False)
    for column in ("name", "grant", "token", "expires", "scopes", "refresh token", "at rest", "state"):
        table.add_column(column)
    for row in rows:
        if row["type"] != "oauth2":
            table.add_row(esc(row["name"]), esc(row["credentials"]), "-", "-", "-", "-", "-", "-")
            continue
        token = "revoked" if row["revoked"] else "stored" if row["token_stored"] else "none"
        state = "[green]ok[/green]" if row["problem"] is None else f"[red]{esc(row['problem'])}[/red]"
        if row["action"]:
            state += f": {esc(row['action'])}" if row["problem"] else f" ({esc(row['action'])})"
        table.add_row(
            esc(row["name"]),
            esc(row["grant"]),
            token,
            esc(row["expires"]),
            esc(" ".join(row["scopes"]) or "-"),
            "yes" if row["refresh_token"] else "no",
            "encrypted" if row["encrypted"] else "plain",
            state,
        )
    console.print(table)


@auth.command()
def status(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="One integration (default: all)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Where each OAuth 2.0 integration's tokens stand; exit 1 if one needs a login or was revoked."""
    with _hub(ctx) as hub:
        if name is not None:
            try:
                hub.integration(name)
            except KeyError as exc:
                raise fail(exc.args[0]) from None
        rows = _rows(hub, [name] if name is not None else sorted(hub.integrations))
    oauth_rows = [row for row in rows if row["type"] == "oauth2"]
    encrypted = all(row["encrypted"] for row in oauth_rows) if oauth_rows else None
    ok = all(row["problem"] is None for row in oauth_rows)
    if json_output:
        print_json({"ok": ok, "encrypted": encrypted, "integrations": rows})
    else:
        _print_table(rows)
        if encrypted is False:
            say(f"[yellow]![/yellow] tokens are stored unencrypted: set {SECRET_KEY_ENV} to encrypt them at rest")
        if not oauth_rows:
            say("no integration uses OAuth 2.0")
    if not ok:
        raise typer.Exit(1)


# --- reset ----------------------------------------------------------------------------------------------------


@auth.command()
def reset(ctx: typer.Context, name: str = typer.Argument(..., help="Integration name from tether.toml.")) -> None:
    """Delete NAME's stored tokens: the next call obtains new ones, or needs `tether auth login`."""
    with _hub(ctx) as hub:
        config, manager = _oauth(hub, name)
        manager.forget()
    then = "log in again with `tether auth login " + name + "`" if config.grant == "authorization_code" else None
    say(f"[green]✔[/green] deleted the stored tokens of {esc(name)}" + (f"; {esc(then)}" if then else ""))
