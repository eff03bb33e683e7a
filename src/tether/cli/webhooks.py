"""``tether webhooks``: look into the inbox of received webhook events and replay them.

``list`` and ``show`` read the inbox; ``replay`` makes events pending again with a fresh attempt count, so a
running ``tether serve`` (or worker) processes them again. Bulk replays select their events first, say how many,
ask before going on, then replay them in chunks, oldest first. Everything printed goes through the redaction of
secrets: the inbox keeps no credentials or signatures, but a body may still quote a configured secret.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tether._durations import parse_duration
from tether.cli._output import console, err_console, esc, fail, local_time, print_json, reading_store, say
from tether.hub import Hub
from tether.observe.redact import redact_headers, redact_text
from tether.webhooks.inbox import STATUSES, Inbox, Status, StoredEvent

__all__ = ["webhooks"]

webhooks = typer.Typer(
    name="webhooks",
    help="The webhook inbox: list received events, show one, replay failed or dead-lettered ones.",
    no_args_is_help=True,
)

_CHUNK = 100  # ids per replay statement: small enough that the progress bar moves
_ERROR_WIDTH = 60
_COLOURS = {"pending": "yellow", "processing": "cyan", "done": "green", "dead": "red"}
_SINCE_HELP = "Received at or after TIME: ISO-8601 ('2026-11-23T14:05', '2026-11-23'; local time) or ago ('1h', '2d')."
_INTEGRATION_HELP = "Only the events of this integration."

# --- shared ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _inbox(ctx: typer.Context) -> Iterator[tuple[Hub, Inbox]]:
    """The hub of the global ``--config`` and its inbox; store failures become a message and exit code 1."""
    with reading_store(ctx) as hub:
        yield hub, hub.inbox


def _integration(hub: Hub, name: str | None) -> str | None:
    if name is None:
        return None
    try:
        hub.integration(name)
    except KeyError as exc:
        raise fail(exc.args[0]) from None
    if name not in hub.webhook_configs():
        raise fail(
            f"integration {name!r} has no [integrations.{name}.webhooks] table, so it receives no webhooks",
            f"configured with webhooks: {', '.join(sorted(hub.webhook_configs())) or 'none'}",
        )
    return name


def _since(text: str | None) -> float | None:
    """An ISO-8601 date/time (naive means local time), or a duration before now."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            return time.time() - parse_duration(text)
        except ValueError:
            raise typer.BadParameter(
                f"expected an ISO-8601 date/time ('2026-11-23T14:05', '2026-11-23') or a duration ago "
                f"('1h', '30m', '2d'), got {text!r}",
                param_hint="--since",
            ) from None
    return (moment.astimezone() if moment.tzinfo is None else moment).timestamp()


def _utc(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cell(value: object) -> str:
    return esc(redact_text(str(value)))


def _plural(count: int, noun: str = "event") -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _record(event: StoredEvent) -> dict[str, Any]:
    record = dataclasses.asdict(event)
    for key in ("received_at", "due_at", "completed_at"):
        record[key] = _utc(record[key])
    return record


def _next(event: StoredEvent) -> str:
    if event.status == "pending":
        return local_time(event.due_at)
    if event.status == "processing":
        return f"lease until {local_time(event.due_at)}"
    return f"done {local_time(event.completed_at)}" if event.status == "done" else "-"


def _short(error: str | None) -> str:
    if not error:
        return "-"
    line = " ".join(redact_text(error).split())
    return line if len(line) <= _ERROR_WIDTH else line[: _ERROR_WIDTH - 1] + "…"


# --- list -----------------------------------------------------------------------------------------------------


@webhooks.command("list")
def list_events(
    ctx: typer.Context,
    status: str | None = typer.Option(None, "--status", help="pending, processing, done or dead."),
    integration: str | None = typer.Option(None, "--integration", help=_INTEGRATION_HELP),
    since: str | None = typer.Option(None, "--since", help=_SINCE_HELP),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many events, newest first."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON list (timestamps in ISO-8601 UTC)."),
) -> None:
    """The newest events in the inbox, with the count of each status per integration under the table."""
    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"expected one of {', '.join(STATUSES)}, got {status!r}", param_hint="--status")
    start = _since(since)
    with _inbox(ctx) as (hub, inbox):
        name = _integration(hub, integration)
        events = inbox.events(status=status, integration=name, since=start, limit=limit)
        counts = inbox.counts()
    if json_output:
        print_json([_record(event) for event in events])
        return
    if not events:
        say("no events match" if status or name or start is not None else "the inbox is empty")
    else:
        table = Table(title="Webhook inbox (newest first)")
        for column in ("id", "integration", "event id", "type", "status", "attempts", "received", "next / completed"):
            table.add_column(column, justify="right" if column in ("id", "attempts") else "left")
        table.add_column("last error", overflow="fold")
        for event in events:
            table.add_row(
                str(event.id),
                _cell(event.integration),
                _cell(event.event_id),
                _cell(event.event_type or "-"),
                f"[{_COLOURS[event.status]}]{event.status}[/]",
                str(event.attempts),
                local_time(event.received_at),
                _next(event),
                esc(_short(event.last_error)),
            )
        console.print(table)
    for each, by_status in sorted(counts.items()):
        if name is None or each == name:
            summary = ", ".join(f"{count} {state}" for state, count in by_status.items())
            say(f"{esc(each)}: {summary}")


# --- show -----------------------------------------------------------------------------------------------------


def _body_text(body: bytes) -> str:
    """Pretty-printed JSON when the body is JSON, else text with bytes that are not UTF-8 escaped."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body.decode("utf-8", errors="backslashreplace")


def _body_json(body: bytes) -> dict[str, Any]:
    try:
        return {"body": body.decode("utf-8"), "body_base64": False}
    except UnicodeDecodeError:
        # Bytes map one to one onto latin-1 characters, so a secret quoted in the body is masked in the bytes too.
        masked = redact_text(body.decode("latin-1")).encode("latin-1")
        return {"body": base64.b64encode(masked).decode("ascii"), "body_base64": True}


@webhooks.command()
def show(
    ctx: typer.Context,
    id_: int = typer.Argument(..., metavar="ID", help="Inbox id (the first column of `tether webhooks list`)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON (a body that is not UTF-8 in base64)."),
    with_body: bool = typer.Option(True, "--body/--no-body", help="Include the body."),
) -> None:
    """One event: its state, headers and body."""
    with _inbox(ctx) as (_, inbox):
        found = inbox.get(id_)
    if found is None:
        raise fail(f"no event with id {id_} in the inbox", "`tether webhooks list` shows the ids")
    event, headers, body = found
    headers = redact_headers(headers)
    if json_output:
        print_json({**_record(event), "headers": headers, **(_body_json(body) if with_body else {})})
        return
    say(f"[bold]event {event.id}[/bold] of {esc(event.integration)}: {esc(event.event_id)}")
    facts = Table.grid(padding=(0, 2))
    rows = [
        ("type", _cell(event.event_type or "-")),
        ("status", f"[{_COLOURS[event.status]}]{event.status}[/], {_plural(event.attempts, 'attempt')}"),
        ("received", local_time(event.received_at)),
        ("next / completed", _next(event)),
        ("last error", _cell(event.last_error or "-")),
    ]
    for label, value in rows:
        facts.add_row(f"  {label}", value)
    console.print(facts)
    say("[bold]headers[/bold]")
    for header, value in sorted(headers.items()):
        say(f"  {esc(header)}: {esc(value)}")
    if with_body:
        say(f"[bold]body[/bold] ({_plural(len(body), 'byte')})")
        if body:
            console.print(redact_text(_body_text(body)), markup=False, highlight=False, soft_wrap=True)


# --- replay ---------------------------------------------------------------------------------------------------


def _confirm(count: int, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise fail(f"not replaying {_plural(count)} without confirmation: stdin is not a terminal, pass --yes")
    if not typer.confirm(f"Replay {_plural(count)}?", default=False):
        raise fail("nothing replayed")


def _replay(inbox: Inbox, ids: list[int], integration: str | None) -> list[int]:
    """Replay ``ids`` chunk by chunk, with a progress bar on stderr; the ids that were replayed."""
    replayed: list[int] = []
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("replay", total=len(ids))
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            replayed += inbox.replay(ids=chunk, integration=integration)
            progress.advance(task, len(chunk))
    return replayed


def _by_id(inbox: Inbox, ids: list[int], integration: str | None) -> list[int]:
    """The ids to replay out of ``ids``: every one must exist; those of another integration are left alone."""
    chosen = []
    for id_ in dict.fromkeys(ids):
        found = inbox.get(id_)
        if found is None:
            raise fail(f"no event with id {id_} in the inbox", "nothing was replayed")
        if integration is not None and found[0].integration != integration:
            say(f"[yellow]![/yellow] left alone: event {id_} belongs to {esc(found[0].integration)}")
        else:
            chosen.append(id_)
    return chosen


def _selected(inbox: Inbox, *, since: float | None, dead: bool, integration: str | None) -> list[int]:
    """The ids a bulk replay takes, oldest first, once the user has seen how many and agreed."""
    status: Status | None = "dead" if dead else None
    events = inbox.events(status=status, integration=integration, since=since, limit=None)
    chosen = [event for event in reversed(events) if event.status != "processing"]
    busy = len(events) - len(chosen)
    if chosen:
        tally = Counter(event.status for event in chosen)
        said = ", ".join(f"{count} {state}" for state, count in sorted(tally.items()))
        say(f"{_plural(len(chosen))} will be replayed ({said})")
    if busy:
        say(f"{_plural(busy)} being processed right now will be left alone")
    return [event.id for event in chosen]


@webhooks.command()
def replay(
    ctx: typer.Context,
    ids: list[int] | None = typer.Argument(None, metavar="[ID]...", help="Inbox ids of the events to replay."),
    since: str | None = typer.Option(None, "--since", help=_SINCE_HELP),
    dead: bool = typer.Option(False, "--dead", help="Every dead-lettered event (with --since: received since TIME)."),
    integration: str | None = typer.Option(None, "--integration", help=_INTEGRATION_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before a bulk replay (required without a TTY)."),
) -> None:
    """Make events pending again with a fresh attempt count: by id, received --since TIME, or --dead.

    Events being processed right now are left alone. A bulk replay says how many events it takes and asks first.
    """
    if not ids and since is None and not dead:
        raise fail("say which events to replay: inbox ids, --since TIME or --dead")
    if ids and (since is not None or dead):
        raise fail("give either inbox ids or --since/--dead, not both")
    start = _since(since)
    with _inbox(ctx) as (hub, inbox):
        name = _integration(hub, integration)
        if ids:
            chosen = _by_id(inbox, ids, name)
        else:
            chosen = _selected(inbox, since=start, dead=dead, integration=name)
            if chosen:
                _confirm(len(chosen), yes)
        replayed = _replay(inbox, chosen, name) if chosen else []
    missed = sorted(set(chosen) - set(replayed))
    if missed:
        left = ", ".join(map(str, missed))
        say(f"[yellow]![/yellow] not replayed, being processed right now: {esc(left)}")
    if not replayed:
        say("no events to replay")
        return
    say(f"[green]✔[/green] replayed {_plural(len(replayed))}: they are pending again with 0 attempts")
    say("a running `tether serve` (or worker) processes them within its poll interval")
