"""``tether serve``: receive webhooks (and serve health) with uvicorn."""

from __future__ import annotations

import importlib

import typer

from tether.cli._output import esc, say
from tether.config.loader import find_config
from tether.errors import ConfigError
from tether.hub import Hub

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
    """Receive webhooks at POST /webhooks/NAME, durably; /healthz and /readyz for probes (Ctrl-C stops)."""
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
            "has a [webhooks] table: only /healthz and /readyz will answer",
            error=True,
        )
    app = create_app(hub, process=process, concurrency=concurrency, grace=grace)
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
    say(f"tether serve on [bold]http://{host}:{port}[/bold]: POST /webhooks/NAME, GET /healthz, GET /readyz")
    uvicorn.Server(config).run()
