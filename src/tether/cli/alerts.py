"""``tether alerts``: the incidents ``tether serve`` raised, and the rules exported for Prometheus.

``list`` reads the incidents from the store (so it sees what every ``tether serve`` instance sharing it
raised); ``export --prometheus`` writes tether's alert rules, with the thresholds of ``tether.toml``, as a
Prometheus rule file. Exporting needs no secret: a ``${VAR}`` that is unset (a CI job rendering the rules
has no Slack URL) reads as a placeholder, because no notifier is built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tether.cli._output import console, esc, fail, local_time, print_json, reading_store, say
from tether.config.loader import load_config
from tether.errors import ConfigError
from tether.observe.incidents import Alerter, Incident
from tether.observe.notify import RULE_LABELS, iso_utc
from tether.observe.promrules import prometheus_rules
from tether.observe.redact import redact_text

__all__ = ["alerts"]

alerts = typer.Typer(
    name="alerts",
    help="Alert incidents (open and recent) and the alert rules exported for Prometheus.",
    no_args_is_help=True,
)


def _config_path(ctx: typer.Context) -> str | None:
    return ctx.obj.get("config") if ctx.obj else None


# --- export ---------------------------------------------------------------------------------------------------


@alerts.command()
def export(
    ctx: typer.Context,
    prometheus: bool = typer.Option(False, "--prometheus", help="Prometheus alerting rules (YAML)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to FILE instead of stdout."),
) -> None:
    """Write tether's alert rules, with the thresholds of tether.toml, for another alerting system."""
    if not prometheus:
        raise fail("say which format to export: --prometheus")
    try:
        config = load_config(_config_path(ctx), resolve_secrets=False)  # exporting rules reads no secret
    except ConfigError as exc:
        raise fail(str(exc)) from None
    rules = prometheus_rules(config)
    if output is None:
        sys.stdout.write(rules)
        return
    try:
        output.write_text(rules, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
    say(f"[green]✔[/green] wrote {esc(output)}; check it with `promtool check rules {esc(output)}`", error=True)


# --- list -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _alerter(ctx: typer.Context) -> Iterator[Alerter]:
    """An alerter on the configured store, for reading; store failures become a message and exit code 1."""
    with reading_store(ctx) as hub:
        yield Alerter(hub.store, [], resolve_after=hub.config.alerts.resolve_after)


def _lasted(incident: Incident) -> str:
    end = incident.resolved_at if incident.resolved_at is not None else incident.last_seen_at
    minutes = max(0, round((end - incident.started_at) / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def _record(incident: Incident) -> dict[str, Any]:
    record = dataclasses.asdict(incident)
    for key in ("started_at", "resolved_at", "last_seen_at"):
        record[key] = iso_utc(record[key])
    return record


def _table(title: str, incidents: list[Incident], *, resolved: bool) -> Table:
    table = Table(title=title)
    for column in ("id", "integration", "rule", "started", "resolved" if resolved else "last seen", "lasted"):
        table.add_column(column, justify="right" if column == "id" else "left")
    table.add_column("message", overflow="fold")
    for incident in incidents:
        table.add_row(
            str(incident.id),
            esc(incident.integration),
            RULE_LABELS.get(incident.rule, incident.rule),
            local_time(incident.started_at),
            local_time(incident.resolved_at if resolved else incident.last_seen_at),
            _lasted(incident),
            esc(redact_text(incident.message)),
        )
    return table


@alerts.command("list")
def list_incidents(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", min=1, help="At most this many resolved incidents, newest first."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON (timestamps in ISO-8601 UTC)."),
) -> None:
    """The open incidents, then the most recently resolved ones."""
    with _alerter(ctx) as alerter:
        active, history = alerter.active(), alerter.history(limit)
    if json_output:
        print_json({"active": [_record(each) for each in active], "resolved": [_record(each) for each in history]})
        return
    if active:
        console.print(_table("Open incidents", active, resolved=False))
    else:
        say("[green]✔[/green] no open incidents")
    if history:
        console.print(_table("Recently resolved", history, resolved=True))
    else:
        say("no resolved incidents yet")
