"""The `tertulia` command line."""

import dataclasses
import os
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from tertulia.kit.db import get_database
from tertulia.kit.errors import DomainError
from tertulia.kit.logging import configure_logging, uvicorn_options
from tertulia.kit.settings import Settings, get_settings

if TYPE_CHECKING:
    from tertulia.contacts.importer import ImportReport

app = typer.Typer(help="Tertulia: omnichannel customer conversations.", no_args_is_help=True)
workspace_app = typer.Typer(help="Manage workspaces.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
contacts_app = typer.Typer(help="Import and export contacts.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")
app.add_typer(token_app, name="token")
app.add_typer(contacts_app, name="contacts")
mail_app = typer.Typer(help="The outgoing mail queue.", no_args_is_help=True)
app.add_typer(mail_app, name="mail")
events_app = typer.Typer(help="The event log and its consumers.", no_args_is_help=True)
app.add_typer(events_app, name="events")
channel_app = typer.Typer(help="Connect and list channels (web chat, Telegram, ...).", no_args_is_help=True)
app.add_typer(channel_app, name="channel")
reports_app = typer.Typer(help="The reports' data.", no_args_is_help=True)
app.add_typer(reports_app, name="reports")

err = Console(stderr=True)


@app.callback()
def start() -> None:
    configure_logging(get_settings())


def fail(exc: DomainError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc.message}")
    for path, reason in (exc.details or {}).items() if isinstance(exc.details, dict) else ():
        err.print(f"  {path}: {reason}")
    return typer.Exit(code=1)


@app.command()
def migrate() -> None:
    """Upgrade the database to the latest schema."""
    from tertulia.migrations import upgrade

    url = get_settings().resolved_database_url()
    upgrade(url)
    err.print(f"[green]Database is up to date[/green] ({url.split('@')[-1]})")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port. More than one needs TERTULIA_REALTIME_URL=redis://... "
            "so every process's sockets get every event.",
        ),
    ] = 1,
) -> None:
    """Serve the web app and the API."""
    import uvicorn

    from tertulia.kit.sockets import MAX_FRAME_CHARS

    settings = get_settings()
    if workers > 1 and not settings.realtime_url.startswith(("redis://", "rediss://")):
        err.print("[red]error:[/red] --workers above 1 needs TERTULIA_REALTIME_URL=redis://...")
        raise typer.Exit(code=2)
    uvicorn.run(
        "tertulia.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **uvicorn_options(settings),
        # Chat frames are a few hundred bytes: compressing them costs both ends CPU and saves nothing.
        ws_per_message_deflate=False,
        # The socket loop refuses frames over MAX_FRAME_CHARS; this keeps bigger ones from being
        # buffered at all (uvicorn closes with 1009), at up to 4 UTF-8 bytes a character.
        ws_max_size=4 * MAX_FRAME_CHARS,
    )


@app.command()
def worker(
    workers: Annotated[int, typer.Option(help="Worker threads in this process.")] = 4,
) -> None:
    """Run queued jobs (message sending, ...) in a separate process; for a Redis or PostgreSQL queue."""
    from tertulia import tasks  # noqa: F401  (registers every task with huey)
    from tertulia.kit import queue

    if not get_settings().realtime_url.startswith(("redis://", "rediss://")):
        # The jobs write incoming messages and delivery ticks; with in-process realtime their events
        # would reach only this process, and the agents' inboxes would never show them.
        err.print(
            "[red]error:[/red] a separate worker needs TERTULIA_REALTIME_URL=redis://... so the web "
            "processes' sockets get the events of the jobs it runs"
        )
        raise typer.Exit(code=2)
    queue.run_worker(
        workers,
        # Said once its threads take tasks, not before the start-up jobs: scripts wait for this line.
        on_started=lambda: err.print(
            f"[green]Worker started[/green] ({get_settings().resolved_queue_url().split('@')[-1]}, {workers} threads)"
        ),
    )


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    contacts: Annotated[int, typer.Option(help="How many demo contacts to create.")] = 200,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Seed only; do not start the server.")] = False,
) -> None:
    """Migrate, seed a demo workspace (once), print how to sign in, and serve."""
    from tertulia import consumers
    from tertulia import demo as demo_data
    from tertulia.users.service import do_create_api_token
    from tertulia.workspaces.service import get_workspace_by_name

    # Served elsewhere than the default address: links in mail and the web chat's allowed origins
    # follow, unless a public URL was configured.
    if get_settings().base_url == Settings.model_fields["base_url"].default:
        os.environ["TERTULIA_BASE_URL"] = f"http://{host}:{port}"
        get_settings.cache_clear()
    # The seed writes customers' messages through the inbox, whose hooks (a reply to a broadcast
    # recorded against it) run only once installed, as in every serving process.
    consumers.install()
    migrate()
    db = get_database()
    with db.transaction() as session:
        try:
            workspace = get_workspace_by_name(session, demo_data.DEMO_WORKSPACE)
            err.print("Demo workspace already exists; keeping its data.")
        except DomainError:
            with err.status("Seeding the demo workspace..."):
                workspace = demo_data.seed_demo(session, contacts=contacts).workspace
        issued = do_create_api_token(session, workspace.id, "demo")
    err.print(
        f"\n[bold]Tertulia is starting at http://{host}:{port}[/bold]\n"
        f"  owner:   {demo_data.DEMO_OWNER_EMAIL} / {demo_data.DEMO_PASSWORD}\n"
        f"  manager: {demo_data.DEMO_MANAGER_EMAIL} / {demo_data.DEMO_PASSWORD}\n"
        f"  agent:   {demo_data.DEMO_AGENT_EMAIL} / {demo_data.DEMO_PASSWORD}\n"
        f"  API token: {issued.secret}\n"
        f"  API docs:  http://{host}:{port}/api/docs\n"
    )
    if not no_serve:
        serve(host=host, port=port)


@workspace_app.command("create")
def workspace_create(
    name: str,
    owner_email: Annotated[str, typer.Option(help="The owner's email; the user is created if new.")],
    owner_password: Annotated[str, typer.Option(help="The owner's password (at least 8 characters).")],
    default_country: Annotated[str | None, typer.Option(help="ISO country for phone numbers, e.g. MX.")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. Europe/Madrid.")] = "UTC",
    language: Annotated[str, typer.Option(help="Default language: en or es.")] = "en",
) -> None:
    """Create a workspace and its owner."""
    from tertulia.provisioning import do_create_workspace_with_owner

    try:
        with get_database().transaction() as session:
            created = do_create_workspace_with_owner(
                session,
                name,
                owner_email,
                owner_password,
                default_country=default_country,
                timezone=timezone,
                default_language=language,
            )
            workspace_id = created.workspace.id
    except DomainError as exc:
        raise fail(exc) from exc
    err.print(f"[green]Created workspace[/green] {name!r} (id {workspace_id}), owner {owner_email}")


@token_app.command("create")
def token_create(
    workspace: Annotated[str, typer.Option(help="Workspace name.")],
    name: Annotated[str, typer.Option("--name", help="A label for the token.")] = "API token",
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="admin (default), read_only, contacts, messages or broadcasts; repeatable."),
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="When it stops working: an ISO 8601 time with its offset.")
    ] = None,
) -> None:
    """Create an API token; prints only the token on stdout."""
    from datetime import datetime

    from tertulia.users.service import do_create_api_token
    from tertulia.workspaces.service import get_workspace_by_name

    try:
        expires_at = datetime.fromisoformat(expires) if expires else None
    except ValueError as exc:
        raise typer.BadParameter(
            "must be an ISO 8601 time, e.g. 2027-01-31T23:59:00+01:00", param_hint="--expires"
        ) from exc
    try:
        with get_database().transaction() as session:
            issued = do_create_api_token(
                session,
                get_workspace_by_name(session, workspace).id,
                name,
                scopes=scope or ["admin"],
                expires_at=expires_at,
            )
    except DomainError as exc:
        raise fail(exc) from exc
    typer.echo(issued.secret)


@app.command("reencrypt-secrets")
def reencrypt_secrets() -> None:
    """Re-encrypt stored secrets under the current TERTULIA_SECRET_KEY (after rotating it)."""
    from tertulia.kit.crypto import SecretKeyError, reencrypt_all
    from tertulia.models import Base

    try:
        with get_database().transaction() as session:
            changed = reencrypt_all(session.connection(), Base.metadata)
    except SecretKeyError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from exc
    err.print(f"[green]{changed} stored secret(s) re-encrypted[/green]")


@contacts_app.command("import")
def contacts_import(
    file: Annotated[Path, typer.Argument(help="The CSV file (UTF-8 or Latin-1; comma or semicolon separated).")],
    workspace: Annotated[str, typer.Option(help="Workspace name.")],
    mapping: Annotated[
        str | None, typer.Option(help='Column mapping overriding the guess, e.g. "Nombre=first_name,Plan=custom:plan".')
    ] = None,
    update_existing: Annotated[
        bool, typer.Option("--update-existing", help="Update contacts matched by id, email or phone.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would happen; write nothing.")] = False,
    rejected_out: Annotated[
        Path | None, typer.Option(help="Write the rejected rows here, with an extra error column.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Rows per committed batch.")] = 2000,
    workers: Annotated[
        int | None, typer.Option(help="Processes validating rows (default: 1 for files of 20,000 rows or more).")
    ] = None,
) -> None:
    """Import contacts from a CSV file, committing batch by batch, and report every rejected row."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tertulia.contacts.import_jobs import record_command_line_import
    from tertulia.contacts.importer import ImportOptions, ImportReport, import_contacts, parse_mapping_option
    from tertulia.kit.clock import utcnow
    from tertulia.users.permissions import Actor
    from tertulia.workspaces.service import get_workspace_by_name

    written: list[ImportReport] = []
    workspace_id: int | None = None
    started_at = utcnow()
    session = get_database().session()
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("Importing" if not dry_run else "Checking (dry run)", total=None)

            def on_progress(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            def on_batch_written(report: ImportReport) -> None:
                session.commit()
                # A copy: the report goes on counting rows that the next commit may never store.
                written[:] = [dataclasses.replace(report, rejected=list(report.rejected))]

            options = ImportOptions(
                mapping=parse_mapping_option(mapping) if mapping else None,
                update_existing=update_existing,
                dry_run=dry_run,
                batch_size=batch_size,
                workers=workers,
            )
            workspace_id = get_workspace_by_name(session, workspace).id
            actor = Actor.system(workspace_id, kind="import")
            report = import_contacts(
                session, actor, file, options, on_progress=on_progress, on_batch_written=on_batch_written
            )
        if dry_run:
            session.rollback()
        else:
            record_command_line_import(session, workspace_id, file.name, report, started_at=started_at)
            session.commit()
    except DomainError as exc:
        session.rollback()
        _record_partial(workspace_id, file.name, written, started_at, exc.message)
        _report_partial(written)
        raise fail(exc) from exc
    except BaseException as exc:
        session.rollback()
        _record_partial(workspace_id, file.name, written, started_at, f"The import stopped: {type(exc).__name__}.")
        _report_partial(written)
        raise
    finally:
        session.close()
    _print_import_report(report)
    if rejected_out is not None:
        from tertulia.contacts.importer import write_rejected_csv

        try:
            count = write_rejected_csv(report, rejected_out)
        except OSError as exc:
            err.print(f"[red]error:[/red] cannot write {rejected_out}: {exc.strerror or exc}")
            raise typer.Exit(code=1) from exc
        err.print(f"Wrote {count} rejected rows to {rejected_out}")


def _record_partial(
    workspace_id: int | None, filename: str, written: list["ImportReport"], started_at: datetime, error: str
) -> None:
    """An import that stopped after committing batches is recorded as failed with what they wrote,
    so its contacts are counted and it shows in the imports history."""
    if workspace_id is None or not written or written[0].dry_run or not written[0].written_through_line:
        return
    from tertulia.contacts.import_jobs import record_command_line_import

    with get_database().transaction() as session:
        record_command_line_import(session, workspace_id, filename, written[0], started_at=started_at, error=error)


def _report_partial(written: list["ImportReport"]) -> None:
    if written and written[0].written_through_line:
        err.print(
            f"[yellow]Rows up to line {written[0].written_through_line} were written;"
            " later rows were not. Rerun with --update-existing to finish safely.[/yellow]"
        )


def _print_import_report(report: "ImportReport", shown: int = 50) -> None:
    from rich.markup import escape
    from rich.table import Table

    heading = "Dry run: nothing was written." if report.dry_run else "Import finished."
    delimiter = {"\t": "tab"}.get(report.delimiter, report.delimiter)
    err.print(f"[bold]{heading}[/bold] ({report.encoding}, separator {delimiter!r}, {report.total_rows} rows)")
    err.print("  columns: " + escape(", ".join(f"{h} -> {t}" for h, t in report.mapping.items())))
    if report.ignored_headers:
        err.print("  ignored: " + escape(", ".join(report.ignored_headers)))
    verb = "would be " if report.dry_run else ""
    err.print(f"  {verb}created: {report.created}")
    err.print(f"  {verb}updated: {report.updated}")
    err.print(f"  unchanged: {report.unchanged}")
    err.print(f"  {verb}merged into the contact of an earlier row: {report.merged}")
    err.print(f"  rejected: {len(report.rejected)}")
    if report.rejected:
        table = Table("line", "values", "reasons", title="Rejected rows", show_lines=False)
        for row in report.rejected[:shown]:
            values = ", ".join(f"{h}={v!r}" for h, v in zip(report.headers, row.values, strict=False) if v.strip())
            table.add_row(str(row.line), escape(values[:120]), escape(row.error))
        err.print(table)
        if len(report.rejected) > shown:
            err.print(f"  ... and {len(report.rejected) - shown} more (use --rejected-out FILE to get them all)")


@contacts_app.command("export")
def contacts_export(
    workspace: Annotated[str, typer.Option(help="Workspace name.")],
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    fields: Annotated[
        str | None, typer.Option(help="Comma-separated fields: standard names, custom:<key>, tags.")
    ] = None,
    bom: Annotated[bool, typer.Option("--bom", help="Start with a UTF-8 BOM so Excel detects the encoding.")] = False,
) -> None:
    """Export the workspace's contacts as CSV, streamed."""
    import sys

    from tertulia.contacts.exporter import export_contacts
    from tertulia.users.permissions import Actor
    from tertulia.workspaces.service import get_workspace_by_name

    chosen = [f for f in fields.split(",") if f.strip()] if fields else None
    try:
        with get_database().transaction(write=False) as session:
            actor = Actor.system(get_workspace_by_name(session, workspace).id, kind="export")
            chunks = export_contacts(session, actor, fields=chosen, bom=bom)
            if output is None:
                for chunk in chunks:
                    sys.stdout.write(chunk)
                sys.stdout.flush()
            else:
                with output.open("w", encoding="utf-8", newline="") as handle:
                    for chunk in chunks:
                        handle.write(chunk)
    except DomainError as exc:
        raise fail(exc) from exc
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write {output}: {exc.strerror or exc}")
        raise typer.Exit(code=1) from exc


@mail_app.command("deliver")
def mail_deliver(
    limit: Annotated[int, typer.Option(help="Send at most this many emails.")] = 100,
) -> None:
    """Send queued emails that are still unsent and due (for example after an SMTP outage)."""
    from tertulia.mail.delivery import deliver_pending

    sent = deliver_pending(get_database(), limit=limit)
    err.print(f"[green]{sent} email(s) sent[/green]")


@events_app.command("status")
def events_status() -> None:
    """Each event consumer's position, how many events it is behind, and its last error."""
    from rich.table import Table

    from tertulia import consumers
    from tertulia.events.dispatcher import consumer_status, newest_event_id

    consumers.install()
    database = get_database()
    statuses = consumer_status(database)
    out = Console()
    out.print(f"newest event: {newest_event_id(database)}")
    if not statuses:
        out.print("no consumers registered")
        return
    table = Table("consumer", "registered", "position", "behind", "failures", "retry at", "last error")
    for status in statuses:
        table.add_row(
            status.name,
            "yes" if status.registered else "no",
            str(status.last_event_id),
            str(status.behind),
            str(status.attempts),
            status.retry_at.isoformat(timespec="seconds") if status.retry_at else "",
            status.last_error or "",
        )
    out.print(table)


def _day_option(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        err.print(f"[red]error:[/red] {option} takes a date as YYYY-MM-DD, got {value!r}")
        raise typer.Exit(code=2) from None


@reports_app.command("rebuild")
def reports_rebuild(
    workspace: Annotated[str, typer.Option(help="The workspace's id (or its name).")],
    since: Annotated[
        str | None,
        typer.Option(help="First local day to rebuild (YYYY-MM-DD); default: the first the event log holds whole."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last local day to rebuild (YYYY-MM-DD); default: no end.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Events replayed per transaction.")] = 500,
) -> None:
    """Rebuild a workspace's report rollups and drill-down items from the event log, for a range of
    its local days (or every day the log holds), while the reports' consumer keeps running."""
    from tertulia.kit.types import is_id_text
    from tertulia.reports.rebuild import RebuildProgress, RebuildStart, rebuild
    from tertulia.workspaces.models import Workspace
    from tertulia.workspaces.service import get_workspace_by_name

    first, last = _day_option(since, "--since"), _day_option(until, "--until")
    database = get_database()
    try:
        with database.transaction(write=False) as session:
            key = workspace.strip()
            found = session.get(Workspace, int(key)) if is_id_text(key) else None
            workspace_id = found.id if found is not None else get_workspace_by_name(session, key).id
    except DomainError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(code=2) from exc

    def started(begun: RebuildStart) -> None:
        days = f"{begun.first_day or 'the start'} to {begun.last_day or 'now'}"
        err.print(
            f"Rebuilding workspace {begun.workspace_id}, {days}: removed {begun.deleted_rollups} rollup rows, "
            f"{begun.deleted_items} items and {begun.deleted_facts} conversation facts; "
            f"replaying its events up to event {begun.upto}"
        )

    def progress(step: RebuildProgress) -> None:
        err.print(f"  {step.replayed} events replayed (event {step.position}; the consumer is at {step.upto})")

    try:
        summary = rebuild(
            database,
            workspace_id,
            first,
            last,
            retention_days=get_settings().event_retention_days,
            batch_size=batch_size,
            on_start=started,
            on_progress=progress,
        )
    except DomainError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(code=2) from exc
    rate = summary.replayed / summary.seconds if summary.seconds > 0 else 0.0
    typer.echo(
        f"rebuilt: {summary.replayed} events replayed ({summary.in_range} in the range) in {summary.batches} "
        f"batches, {summary.rollup_rows} rollup increments and {summary.items} items written, "
        f"{summary.seconds:.1f} s ({rate:.0f} events/s)"
    )


def _settings_pairs(pairs: list[str], option: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            err.print(f"[red]error:[/red] {option} takes key=value, got {pair!r}")
            raise typer.Exit(code=2)
        values[key.strip()] = value
    return values


@channel_app.command("connect")
def channel_connect(
    channel_type: Annotated[str, typer.Argument(metavar="TYPE", help="The channel type: telegram, webchat, ...")],
    workspace: Annotated[str, typer.Option(help="Workspace name.")],
    name: Annotated[str, typer.Option("--name", help="A label for the team (default: the provider's name).")] = "",
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="A setting or secret as key=value, e.g. bot_token=123:AA... (repeatable)."),
    ] = None,
    from_env: Annotated[
        list[str] | None,
        typer.Option(
            "--set-from-env",
            help="A setting or secret read from an environment variable: key=VARIABLE (keeps it out of the "
            "shell history), e.g. bot_token=TELEGRAM_BOT_TOKEN.",
        ),
    ] = None,
) -> None:
    """Connect a channel exactly as Settings > Channels does; prints {"id", "callback_url"} as JSON."""
    import json
    import os

    from tertulia.channels.service import callback_url, do_connect_channel, split_settings
    from tertulia.users.permissions import Actor
    from tertulia.workspaces.service import get_workspace_by_name

    values = _settings_pairs(settings or [], "--set")
    for key, variable in _settings_pairs(from_env or [], "--set-from-env").items():
        if variable not in os.environ:
            err.print(f"[red]error:[/red] the environment variable {variable} is not set")
            raise typer.Exit(code=2)
        values[key] = os.environ[variable]
    base_url = get_settings().base_url
    try:
        with get_database().transaction() as session:
            found = get_workspace_by_name(session, workspace)
            actor = Actor.system(found.id, "cli")
            config, secrets = split_settings(channel_type, values)
            channel = do_connect_channel(session, actor, channel_type, name, config, secrets, base_url=base_url)
            result = {"id": channel.id, "callback_url": callback_url(base_url, channel)}
    except DomainError as exc:
        raise fail(exc) from exc
    typer.echo(json.dumps(result))


@channel_app.command("watch-email")
def channel_watch_email() -> None:
    """Only the email channels' watchers, without the queue's workers: one IMAP IDLE connection per
    active mailbox (a server without IDLE, or POP3, read every poll_seconds), picking up channels
    connected, changed or disconnected while it runs. `tertulia worker` and `tertulia serve` (with its
    embedded queue) run the same watchers; each mailbox has one watcher whichever processes run,
    and the processes split the mailboxes between them.
    Runs until stopped; the mail goes through the queue like any callback."""
    import signal
    import threading

    from tertulia.conversations.ingress.mailbox import MailWatchers

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    watchers = MailWatchers(get_database(), kind="watch-email")
    watchers.start()
    typer.echo("watching the email channels' mailboxes")
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        stop.set()
    watchers.stop()


@channel_app.command("list")
def channel_list(workspace: Annotated[str, typer.Option(help="Workspace name.")]) -> None:
    """The workspace's channels, one JSON object a line: id, type, name, state, callback URL."""
    import json

    from tertulia.channels.health import health_of
    from tertulia.channels.service import callback_url, list_channels
    from tertulia.workspaces.service import get_workspace_by_name

    base_url = get_settings().base_url
    try:
        with get_database().transaction(write=False) as session:
            found = get_workspace_by_name(session, workspace)
            rows = [
                {
                    "id": c.id,
                    "type": c.type,
                    "name": c.name,
                    "state": health_of(c).state.value,
                    "callback_url": callback_url(base_url, c),
                }
                for c in list_channels(session, found.id)
            ]
    except DomainError as exc:
        raise fail(exc) from exc
    for row in rows:
        typer.echo(json.dumps(row))
