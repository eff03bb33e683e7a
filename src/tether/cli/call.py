"""``tether call NAME METHOD PATH``: the terminal Postman, through every policy of the integration."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx2
import typer
from rich.json import JSON
from rich.table import Table

from tether.cli._output import console, err_console, esc, print_json, say
from tether.errors import Attempt, CallError, ConfigError
from tether.hub import Hub
from tether.observe.redact import redact_headers, redact_text, redact_url

__all__ = ["call"]


def _pairs(values: list[str], separator: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, sep, rest = value.partition(separator)
        if not sep or not key.strip():
            raise typer.BadParameter(f"{what} must look like key{separator}value, got {value!r}")
        pairs.append((key.strip(), rest.strip() if separator == ":" else rest))
    return pairs


def _body(json_body: str | None, data: str | None) -> dict[str, Any]:
    if json_body is not None and data is not None:
        raise typer.BadParameter("give --json or -d, not both")
    if json_body is not None:
        try:
            return {"json": json.loads(json_body)}
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--json is not valid JSON: {exc}") from None
    if data is not None:
        if data.startswith("@"):
            try:
                return {"content": Path(data[1:]).read_bytes()}
            except OSError as exc:
                raise typer.BadParameter(f"cannot read {data[1:]}: {exc.strerror}") from None
        return {"content": data.encode()}
    return {}


def _attempts_table(attempts: tuple[Attempt, ...]) -> Table:
    table = Table(show_header=True, header_style="bold", box=None)
    for column in ("attempt", "outcome", "time", "then waited"):
        table.add_column(column)
    for attempt in attempts:
        outcome = str(attempt.status) if attempt.status is not None else (attempt.error or "?")
        wait = f"{attempt.wait:.2f}s" if attempt.wait else "-"
        table.add_row(str(attempt.number), redact_text(outcome), f"{attempt.elapsed * 1000:.1f} ms", wait)
    return table


def call(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Integration name from tether.toml."),
    method: str = typer.Argument(..., help="HTTP method."),
    path: str = typer.Argument(..., help="Path relative to the integration's base_url."),
    query: list[str] = typer.Option([], "-q", "--query", help="Query parameter key=value (repeatable)."),
    header: list[str] = typer.Option([], "-H", "--header", help="Header key:value (repeatable)."),
    json_body: str | None = typer.Option(None, "--json", help="JSON request body."),
    data: str | None = typer.Option(None, "-d", "--data", help="Raw body, or @FILE."),
    json_output: bool = typer.Option(False, "--json-output", help="Print the result as JSON."),
) -> None:
    """Make one call through the integration's full policy stack and show what happened."""
    try:
        hub = Hub.from_config(ctx.obj.get("config"))
        hub.integration(name)
    except ConfigError as exc:
        say(f"[red]✘[/red] {esc(exc)}", error=True)
        raise typer.Exit(1) from None
    except KeyError as exc:
        say(f"[red]✘[/red] {esc(exc.args[0])}", error=True)
        raise typer.Exit(1) from None
    request_options = {
        "params": _pairs(query, "=", "-q"),
        "headers": _pairs(header, ":", "-H"),
        **_body(json_body, data),
    }
    started = time.perf_counter()
    try:
        with hub.client(name) as client:
            response = client.request(method.upper(), path, **request_options)
    except CallError as exc:
        _report_failure(exc, json_output)
        raise typer.Exit(1) from None
    except httpx2.HTTPError as exc:  # raised before tether's transport (e.g. an invalid URL)
        say(f"[red]✘[/red] {type(exc).__name__}: {esc(exc)}", error=True)
        raise typer.Exit(1) from None
    elapsed = time.perf_counter() - started
    error = response.extensions.get("tether.error")
    attempts: tuple[Attempt, ...] = response.extensions.get("tether.attempts", ())
    if json_output:
        _print_json_result(response, attempts, elapsed, error)
    else:
        _print_result(response, attempts, elapsed, error)
    if error is not None:
        raise typer.Exit(1)


def _decoded_body(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _print_json_result(
    response: httpx2.Response, attempts: tuple[Attempt, ...], elapsed: float, error: CallError | None
) -> None:
    print_json(
        {
            "ok": error is None,
            "status": response.status_code,
            "url": redact_url(response.request.url),
            "elapsed": round(elapsed, 4),
            "attempts": [vars(attempt) for attempt in attempts],
            "headers": redact_headers(response.headers.multi_items()),
            "body": _decoded_body(response),
            "hint": error.hint if error else None,
            "error": type(error).__name__ if error else None,
        }
    )


def _print_result(
    response: httpx2.Response, attempts: tuple[Attempt, ...], elapsed: float, error: CallError | None
) -> None:
    colour = "green" if response.status_code < 400 else "red"
    say(
        f"[bold {colour}]{response.status_code} {response.reason_phrase}[/] "
        f"{response.request.method} {esc(redact_url(response.request.url))}  "
        f"[dim]{elapsed * 1000:.0f} ms, {len(attempts)} attempt(s)[/dim]"
    )
    if len(attempts) > 1:
        console.print(_attempts_table(attempts))
    body = _decoded_body(response)
    if isinstance(body, dict | list):
        console.print(JSON(redact_text(json.dumps(body))))
    elif body:
        say(esc(body[:4000]))
    if error is not None:
        say(f"[red]✘[/red] {type(error).__name__}: {esc(error.summary)}", error=True)
        say(f"  [yellow]hint:[/yellow] {esc(error.hint)}", error=True)


def _report_failure(exc: CallError, json_output: bool) -> None:
    if json_output:
        print_json(
            {
                "ok": False,
                "error": type(exc).__name__,
                "message": exc.summary,
                "hint": exc.hint,
                "url": exc.url,
                "attempts": [vars(attempt) for attempt in exc.attempts],
                "elapsed": round(exc.elapsed, 4),
            }
        )
        return
    say(f"[red]✘ {type(exc).__name__}[/red]: {esc(exc.summary)}  [dim]{exc.method} {esc(exc.url)}[/dim]", error=True)
    if exc.attempts:
        err_console.print(_attempts_table(exc.attempts))
    say(f"  [yellow]hint:[/yellow] {esc(exc.hint)}", error=True)
