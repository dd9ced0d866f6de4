"""The `tertulia` command line."""

from typing import Annotated

import typer
from rich.console import Console

from tertulia.kit.db import get_database
from tertulia.kit.errors import DomainError
from tertulia.kit.settings import get_settings

app = typer.Typer(help="Tertulia: omnichannel customer conversations.", no_args_is_help=True)
workspace_app = typer.Typer(help="Manage workspaces.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
contacts_app = typer.Typer(help="Import and export contacts.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")
app.add_typer(token_app, name="token")
app.add_typer(contacts_app, name="contacts")

err = Console(stderr=True)


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
) -> None:
    """Serve the web app and the API."""
    import uvicorn

    from tertulia.app import create_app

    uvicorn.run(create_app(), host=host, port=port, log_level=get_settings().log_level)


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    contacts: Annotated[int, typer.Option(help="How many demo contacts to create.")] = 200,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Seed only; do not start the server.")] = False,
) -> None:
    """Migrate, seed a demo workspace (once), print how to sign in, and serve."""
    from tertulia.users.service import do_create_api_token
    from tertulia.workspaces import demo as demo_data
    from tertulia.workspaces.service import get_workspace_by_name

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
        f"  owner:  {demo_data.DEMO_OWNER_EMAIL} / {demo_data.DEMO_PASSWORD}\n"
        f"  agent:  {demo_data.DEMO_AGENT_EMAIL} / {demo_data.DEMO_PASSWORD}\n"
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
    from tertulia.workspaces.setup import do_create_workspace_with_owner

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
) -> None:
    """Create an API token; prints only the token on stdout."""
    from tertulia.users.service import do_create_api_token
    from tertulia.workspaces.service import get_workspace_by_name

    try:
        with get_database().transaction() as session:
            issued = do_create_api_token(session, get_workspace_by_name(session, workspace).id, name)
    except DomainError as exc:
        raise fail(exc) from exc
    typer.echo(issued.secret)
