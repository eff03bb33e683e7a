"""``tether sandbox``: run the local fake third-party API."""

from __future__ import annotations

import typer

from tether.cli._output import say

__all__ = ["sandbox"]


def sandbox(
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8787, help="Port to listen on."),
    tls: str = typer.Option("none", help="TLS listener: none, valid, expired, self_signed or wrong_host."),
) -> None:
    """Run the sandbox API: JSON resources, API-key and bearer auth, and faults on demand."""
    from tether.sandbox.server import serve

    if tls not in ("none", "valid", "expired", "self_signed", "wrong_host"):
        raise typer.BadParameter("--tls must be none, valid, expired, self_signed or wrong_host")
    scheme = "http" if tls == "none" else "https"
    say(f"sandbox on {scheme}://{host}:{port}  (API key: sk_test_sandbox, bearer: tok_sandbox; Ctrl-C stops)")
    serve(host=host, port=port, tls=tls)  # type: ignore[arg-type]
