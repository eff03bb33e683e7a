"""``tether doctor``: diagnose integrations live, or from their call records with ``--from-log``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import typer

from tether._durations import parse_duration
from tether.cli._output import esc, print_json, reading_store, say
from tether.config.models import IntegrationConfig
from tether.doctor import Diagnosis, LogReport, analyse, diagnose
from tether.hub import Hub

__all__ = ["doctor"]


class _Result(Protocol):
    @property
    def ok(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=_Result)

_MARKS = {"ok": "[green]✔[/green]", "warn": "[yellow]![/yellow]", "fail": "[red]✘[/red]", "skip": "[dim]–[/dim]"}
_LEVELS = {"problem": "[red]✘[/red]", "warning": "[yellow]![/yellow]", "info": "[blue]•[/blue]"}
_LOG_LIMIT = 200_000


def doctor(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="The integration to diagnose (default: all)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    from_log: bool = typer.Option(False, "--from-log", help="Analyse recorded calls instead of calling the API."),
    since: str = typer.Option("1h", "--since", help="With --from-log: how far back, e.g. 15m, 1h, 1d."),
    origin: list[str] = typer.Option(
        None, "--origin", help="A browser origin to check CORS from, e.g. https://app.example.com (repeatable)."
    ),
) -> None:
    """Check DNS, TCP, TLS, proxy, clock, the health request, content, latency, version and CORS.

    Each finding says its cause and fix. Exits 1 when a check fails (or, with --from-log, a problem is found).
    """
    with reading_store(ctx, [name] if name else []) as hub:
        names = [name] if name else sorted(hub.integrations)
        if from_log:
            healthy = _from_log(hub, names, since, json_output)
        else:
            healthy = _live(hub, names, list(origin or []), json_output)
    if not healthy:
        raise typer.Exit(1)


def _origins(config: IntegrationConfig, extra: list[str]) -> list[str]:
    # The configured browser origins first, then any given with --origin.
    return list(dict.fromkeys([*config.cors_origins, *extra]))


def _live(hub: Hub, names: list[str], origins: list[str], json_output: bool) -> bool:
    results = [diagnose(hub, each, origins=_origins(hub.integration(each), origins)) for each in names]
    return _emit(results, json_output, _print_diagnosis)


def _emit(results: Sequence[R], json_output: bool, show: Callable[[R], None]) -> bool:
    """Print ``results`` (as JSON, or each with ``show``); whether every one is ok."""
    if json_output:
        print_json({"ok": all(r.ok for r in results), "integrations": [r.to_dict() for r in results]})
    else:
        for result in results:
            show(result)
    return all(result.ok for result in results)


def _print_diagnosis(result: Diagnosis) -> None:
    verdict = "[green]healthy[/green]" if result.ok else "[red]failing[/red]"
    say(f"[bold]{esc(result.integration)}[/bold] {esc(result.url)} — {verdict}")
    for check in result.checks:
        say(f"  {_MARKS[check.status]} {check.name:<8} {esc(check.summary)}")
        if check.cause:
            say(f"             cause: {esc(check.cause)}")
        if check.fix:
            say(f"             fix:   {esc(check.fix)}")
    say("")


def _from_log(hub: Hub, names: list[str], since: str, json_output: bool) -> bool:
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    now = time.time()
    start = now - seconds
    reports: list[LogReport] = []
    for each in names:
        stored = hub.call_log.calls(since=start, integration=each, limit=_LOG_LIMIT)
        config = hub.integration(each)
        rules = config.alerts.over(hub.config.alerts)
        reports.append(
            analyse(
                each,
                [call.record for call in stored],
                since=start,
                until=now,
                latency_threshold=rules.latency_p95,
                error_rate=rules.error_rate,
                near_limit=rules.rate_limit_usage,
                truncated=len(stored) >= _LOG_LIMIT,
            )
        )
    return _emit(reports, json_output, _print_report)


def _print_report(report: LogReport) -> None:
    verdict = "[green]no problem found[/green]" if report.ok else "[red]problems found[/red]"
    say(f"[bold]{esc(report.integration)}[/bold] — {report.calls} calls since {esc(report.since_text)} — {verdict}")
    for finding in report.findings:
        say(f"  {_LEVELS[finding.level]} {esc(finding.message)}")
        if finding.fix:
            say(f"      fix: {esc(finding.fix)}")
    say("")
