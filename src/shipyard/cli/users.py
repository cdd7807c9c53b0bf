"""`shipyard users ...`"""

from __future__ import annotations

from typing import Annotated

import typer

from shipyard.cli.common import JsonOpt, KeyOpt, UrlOpt, client, console, table

app = typer.Typer(help="Users of the current workspace.", no_args_is_help=True)


@app.command("list")
def list_(url: UrlOpt = None, key: KeyOpt = None, json: JsonOpt = False) -> None:
    """Members of the workspace with their roles."""
    with client(url, key) as c:
        table(c.users.list(), ["id", "email", "name", "role", "created_at"], json)


@app.command()
def create(
    email: str,
    role: Annotated[str, typer.Option(help="viewer, developer, admin or owner")] = "developer",
    name: str = "",
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)
    ] = "",
    platform_admin: Annotated[
        bool, typer.Option(help="Also a platform administrator (needs one to grant it).")
    ] = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Create a user who can log in to the web UI."""
    with client(url, key) as c:
        user = c.users.create(email, password, name=name, role=role, platform_admin=platform_admin)
    extra = ", platform administrator" if user.platform_admin else ""
    console.print(f"created user [bold]{user.email}[/bold] ({user.id}) as {user.role.value}{extra}")


@app.command()
def update(
    user: Annotated[str, typer.Argument(help="User id or e-mail.")],
    platform_admin: Annotated[
        bool | None,
        typer.Option(
            "--platform-admin/--no-platform-admin",
            help="Grant or take back platform administration.",
        ),
    ] = None,
    active: Annotated[
        bool | None,
        typer.Option("--active/--deactivate", help="Reactivate or deactivate the account."),
    ] = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Instance-wide changes to an account, in every workspace (platform administrators)."""
    if platform_admin is None and active is None:
        raise typer.BadParameter(
            "give --platform-admin/--no-platform-admin or --active/--deactivate"
        )
    with client(url, key) as c:
        row = c.users.update(user, platform_admin=platform_admin, is_active=active)
    console.print(
        f"{row.email}: platform administrator {'yes' if row.platform_admin else 'no'}, "
        f"{'active' if row.is_active else 'deactivated'}"
    )


@app.command("set-role")
def set_role(user_id: str, role: str, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Change a member's role in the workspace."""
    with client(url, key) as c:
        c.users.set_role(user_id, role)
    console.print(f"{user_id} is now {role}")


@app.command()
def remove(user_id: str, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Remove a member from the workspace."""
    with client(url, key) as c:
        c.users.remove(user_id)
    console.print(f"removed {user_id} from the workspace")
