"""``tether serve``: receive webhooks, serve metrics, alerts, the dashboard and the backend proxy, with uvicorn."""

from __future__ import annotations

import importlib
import os

import typer

from tether.cli._output import esc, say
from tether.config.loader import find_config
from tether.errors import ConfigError
from tether.hub import Hub
from tether.server.admin import MIN_TOKEN_LENGTH, TOKEN_ENV, is_loopback
from tether.server.proxy import TOKEN_ENV as PROXY_TOKEN_ENV

__all__ = ["serve"]


def _load_hub(spec: str) -> Hub:
    """``module:attribute`` naming the application's Hub (with its ``hub.on`` handlers registered)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter("--hub must look like 'package.module:hub'")
    hub = getattr(importlib.import_module(module_name), attribute, None)
    if not isinstance(hub, Hub):
        raise typer.BadParameter(f"{spec} is not a tether.Hub")
    return hub


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8700, help="Port to listen on."),
    hub_spec: str | None = typer.Option(
        None, "--hub", help="module:attribute of your app's tether.Hub, so its hub.on handlers run here."
    ),
    process: bool = typer.Option(True, "--process/--no-process", help="Process webhooks here, or only receive."),
    concurrency: int = typer.Option(8, min=1, help="Webhook events processed at once."),
    grace: float = typer.Option(10.0, min=0, help="Seconds requests and events in flight get at shutdown."),
) -> None:
    """Receive webhooks at POST /webhooks/NAME durably; the dashboard at /, /metrics, /healthz, /readyz (Ctrl-C stops).

    The dashboard needs TETHER_ADMIN_TOKEN, and the backend proxy (/proxy/NAME/PATH) TETHER_PROXY_TOKEN, unless
    --host is a loopback address.
    """
    import uvicorn

    from tether.server import create_app

    try:
        hub = _load_hub(hub_spec) if hub_spec else Hub.from_config(ctx.obj.get("config") if ctx.obj else None)
    except ConfigError as exc:
        say(f"[red]✘[/red] {esc(exc)}", error=True)
        raise typer.Exit(1) from None
    if not hub.webhook_configs():
        say(
            f"[yellow]![/yellow] no integration in {esc(find_config(ctx.obj.get('config') if ctx.obj else None))} "
            "has a [webhooks] table: no webhook will be received (the dashboard, /metrics and the probes answer)",
            error=True,
        )
    token = os.environ.get(TOKEN_ENV) or None
    proxy_token = os.environ.get(PROXY_TOKEN_ENV) or None
    loopback = is_loopback(host)
    app = create_app(
        hub,
        process=process,
        concurrency=concurrency,
        grace=grace,
        admin_token=token,
        loopback=loopback,
        proxy_token=proxy_token,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=max(1, round(grace)),
        server_header=False,
    )
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    say(f"tether serve on [bold]{esc(base)}[/bold]: POST /webhooks/NAME, GET /metrics, GET /healthz, GET /readyz")
    _announce_dashboard(base, token, loopback)
    _announce_proxy(base, hub, proxy_token, loopback, admin_token=token)
    uvicorn.Server(config).run()


def _announce_dashboard(base: str, token: str | None, loopback: bool) -> None:
    """Where the dashboard is and how to open it; never the token itself."""
    if token is not None:
        say(
            f"dashboard: [bold]{esc(base)}/[/bold] (open {esc(base)}/?token=… once with {TOKEN_ENV}'s value, "
            "or send Authorization: Bearer)"
        )
        _warn_if_short(TOKEN_ENV, token)
    elif loopback:
        say(f"dashboard: [bold]{esc(base)}/[/bold] (open: bound to loopback, reachable from this machine only)")
    else:
        say(
            f"[yellow]![/yellow] bound to a non-loopback address without {TOKEN_ENV}: the dashboard answers 403. "
            f"Set {TOKEN_ENV} to a long random value to open it, or bind to 127.0.0.1.",
            error=True,
        )


def _announce_proxy(base: str, hub: Hub, token: str | None, loopback: bool, *, admin_token: str | None) -> None:
    """Which integrations the backend proxy exposes and what it needs; never the token itself."""
    exposed = sorted(name for name, config in hub.integrations.items() if config.proxy and config.proxy.enabled)
    if not exposed:
        return
    say(f"backend proxy: [bold]{esc(base)}/proxy/NAME/PATH[/bold] for {esc(', '.join(exposed))}")
    if token is not None:
        _warn_if_short(PROXY_TOKEN_ENV, token)
        if admin_token is not None and token == admin_token:
            say(
                f"[yellow]![/yellow] {PROXY_TOKEN_ENV} equals {TOKEN_ENV}: browsers hold the proxy token, so "
                "whoever reads it from a page also opens the dashboard. Give each its own value.",
                error=True,
            )
    elif loopback:
        say("backend proxy: open to this machine only (bound to loopback, no token)")
    else:
        say(
            f"[yellow]![/yellow] bound to a non-loopback address without {PROXY_TOKEN_ENV}: the backend proxy "
            f"answers 403. Set {PROXY_TOKEN_ENV} to a long random value to open it, or bind to 127.0.0.1.",
            error=True,
        )


def _warn_if_short(env: str, token: str) -> None:
    if len(token) < MIN_TOKEN_LENGTH:
        say(
            f"[yellow]![/yellow] {env} is shorter than {MIN_TOKEN_LENGTH} characters: use a long random value "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            error=True,
        )
