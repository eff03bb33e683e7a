"""``tether status``: each integration's health in the terminal, from the store (as the dashboard shows it)."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import typer
from rich.table import Table

from tether._durations import parse_duration
from tether.cli._output import console, esc, print_json, reading_store, say
from tether.observe.health import Health, latency_text, overview
from tether.observe.incidents import Alerter

__all__ = ["status"]


def status(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="Integrations to show (default: all)."),
    window: str = typer.Option("1h", "--window", "-w", help="How far back the numbers go, e.g. 15m, 1h, 1d."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show requests, error rate, latency, limits, breaker, tokens, webhooks and alerts per integration.

    Reads the call records every process writes to the store. Exits 1 while an alert is open.
    """
    try:
        seconds = parse_duration(window)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--window") from None
    with reading_store(ctx, names or []) as hub:
        incidents = [asdict(incident) for incident in Alerter(hub.store, [], resolve_after=0).active()]
        result = overview(hub, window=seconds, now=time.time(), alerts=incidents, errors=3, names=names or None)
    if json_output:
        print_json(result.to_dict())
    else:
        _print(result.integrations, window)
    if incidents:
        raise typer.Exit(1)


def _print(rows: list[Health], window: str) -> None:
    table = Table(title=f"tether status (last {window})")
    for column in ("integration", "requests", "errors", "p50", "p95", "usage", "breaker", "token", "webhooks"):
        table.add_column(column, justify="right" if column in ("requests", "errors", "p50", "p95", "usage") else "left")
    for row in rows:
        errors = f"{row.error_rate:.1%}" if row.requests else "-"
        if row.error_rate >= 0.05 and row.requests:
            errors = f"[red]{errors}[/red]"
        breaker = "[red]open[/red]" if row.breaker == "open" else row.breaker
        table.add_row(
            esc(row.name),
            str(row.requests),
            errors,
            latency_text(row.p50),
            latency_text(row.p95),
            "-" if row.usage is None else f"{row.usage:.0%}" + (f" of {row.rate_limit}" if row.rate_limit else ""),
            breaker,
            esc(_token(row.token)),
            esc(_inbox(row.inbox)),
        )
    console.print(table)
    for row in rows:
        for alert in row.alerts:
            say(f"[red]● {esc(row.name)}[/red] {esc(alert['rule'])}: {esc(alert['message'])}")
        if row.deprecation or row.sunset:
            say(f"[yellow]![/yellow] {esc(row.name)}: deprecated by the API (sunset {esc(row.sunset or '-')})")
        for error in row.errors:
            outcome = error["status"] or error["error"]
            say(
                f"  [dim]{esc(row.name)} {esc(error['method'])} {esc(error['endpoint'])}: {esc(outcome)}[/dim]"
                + (f" — {esc(error['hint'])}" if error.get("hint") else "")
            )


def _token(token: dict[str, Any] | None) -> str:
    if token is None:
        return "-"
    if token.get("expires_in") is not None and token["state"] == "valid":
        return f"valid, {token['expires_in']:.0f}s left"
    return str(token["state"])


def _inbox(inbox: dict[str, int] | None) -> str:
    if inbox is None:
        return "-"
    return ", ".join(f"{count} {state}" for state, count in inbox.items() if count) or "empty"
