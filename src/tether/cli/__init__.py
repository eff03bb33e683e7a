"""The ``tether`` command line (typer + rich)."""

from __future__ import annotations

import typer

from tether import __version__
from tether.cli._logging import configure_logging
from tether.cli.alerts import alerts
from tether.cli.auth import auth
from tether.cli.call import call
from tether.cli.check import check
from tether.cli.demo import demo
from tether.cli.docs import docs
from tether.cli.doctor import doctor
from tether.cli.init import init
from tether.cli.sandbox import sandbox
from tether.cli.serve import serve
from tether.cli.status import status
from tether.cli.webhooks import webhooks

__all__ = ["app", "main"]

app = typer.Typer(
    name="tether",
    help="Production-grade third-party API integrations, declared once in tether.toml.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"tether {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: str | None = typer.Option(
        None, "--config", "-c", help="Path to tether.toml (default: $TETHER_CONFIG, then ./tether.toml)."
    ),
    log_format: str = typer.Option("text", "--log-format", help="Log format on stderr: text or json."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="-v: one line per call; -vv: per attempt."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    if log_format not in ("text", "json"):
        raise typer.BadParameter("--log-format must be 'text' or 'json'")
    configure_logging(log_format, verbose)
    ctx.obj = {"config": config}


app.command()(check)
app.command()(call)
app.command()(sandbox)
app.command()(demo)
app.command()(doctor)
app.command()(init)
app.command()(docs)
app.command()(serve)
app.command()(status)
app.add_typer(alerts, name="alerts")
app.add_typer(auth, name="auth")
app.add_typer(webhooks, name="webhooks")


def main() -> None:
    """Console-script entry point."""
    app()
