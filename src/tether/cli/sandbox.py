"""``tether sandbox``: run the local fake third-party API."""

from __future__ import annotations

import typer

from tether.cli._output import say

__all__ = ["sandbox"]

_MODES = ("none", "valid", "expired", "self_signed", "wrong_host")


def sandbox(
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8787, help="Port to listen on."),
    tls: str = typer.Option("none", help="TLS listener: none, valid, expired, self_signed or wrong_host."),
) -> None:
    """Run the sandbox API: JSON resources, API-key and bearer auth, and faults on demand (Ctrl-C stops)."""
    from tether.sandbox import SANDBOX_API_KEY, SANDBOX_BEARER_TOKEN, SandboxServer, serve

    if tls not in _MODES:
        raise typer.BadParameter(f"--tls must be one of {', '.join(_MODES)}")

    def ready(server: SandboxServer) -> None:
        say(f"sandbox API on [bold]{server.url}[/bold]")
        say(f"  X-API-Key: {SANDBOX_API_KEY}   or   Authorization: Bearer {SANDBOX_BEARER_TOKEN}")
        if server.ca_cert is not None:
            say(f"  TLS ({tls}); CA certificate: {server.ca_cert}")
        say(
            "  faults: ?fault=status:503 | 429&retry_after=2 | latency:1.5 | reset | truncated_json | … "
            "(&fail_times=N&key=K to fail only the first N)"
        )

    serve(host=host, port=port, tls=tls, on_ready=ready)  # type: ignore[arg-type]
