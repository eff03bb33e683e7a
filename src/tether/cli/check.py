"""``tether check``: validate tether.toml and summarise each integration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tether.auth.static import credential_source
from tether.cli._output import console, esc, print_json, say
from tether.config.loader import find_config, load_config
from tether.config.models import IntegrationConfig, TetherConfig
from tether.errors import ConfigError, ConfigProblem

__all__ = ["check"]


def _summary(name: str, integration: IntegrationConfig) -> dict[str, Any]:
    auth = integration.auth
    return {
        "name": name,
        "base_url": str(integration.base_url),
        "auth": f"{auth.type} ({credential_source(auth) or 'literal username'})" if auth else "none",
        "timeout": f"{integration.timeout.total:g}s total, {integration.timeout.connect:g}s connect",
        "retry": f"{integration.retry.attempts} attempts, backoff {integration.retry.backoff:g}s",
        "version": f"{integration.version_header}: {integration.version}" if integration.version else "-",
        "owner": integration.owner or "-",
    }


def _check_documents(config: TetherConfig, path: Path) -> None:
    """Read each integration's OpenAPI document now, so a missing or broken one is found here and not at the
    first ``response.json()`` of a call that validates."""
    from tether.openapi.document import load_document

    problems = []
    for name, integration in sorted(config.integrations.items()):
        if integration.openapi is None:
            continue
        try:
            load_document(path.resolve().parent / integration.openapi)
        except ConfigError as exc:
            problems += [
                ConfigProblem(f"integrations.{name}.openapi", f"{exc.file}: {p.message}") for p in exc.problems
            ]
    if problems:
        raise ConfigError(str(path), problems)


def check(ctx: typer.Context, json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Validate tether.toml and print a summary; exit 1 on any problem."""
    path = find_config(ctx.obj.get("config"))
    try:
        config = load_config(path)
        _check_documents(config, path)
    except ConfigError as exc:
        if json_output:
            problems = [{"path": p.path, "message": p.message} for p in exc.problems]
            print_json({"ok": False, "file": exc.file, "problems": problems})
        else:
            say(f"[red]✘[/red] {len(exc.problems)} problem(s) in {esc(exc.file)}:", error=True)
            for problem in exc.problems:
                say(f"  {esc(exc.file)}: {esc(problem)}", error=True)
        raise typer.Exit(1) from None
    rows = [_summary(name, integration) for name, integration in sorted(config.integrations.items())]
    if json_output:
        print_json({"ok": True, "file": str(path), "integrations": rows})
        return
    table = Table(title=f"{path}: {len(rows)} integration(s)")
    for column in ("name", "base_url", "auth", "timeout", "retry", "version", "owner"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[key]) for key in row))
    console.print(table)
    say("[green]✔[/green] configuration is valid")
