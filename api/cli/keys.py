"""`lore keys`: create, list and revoke API keys (no model is loaded)."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.components import open_lore, read_settings
from api.cli.options import JsonOption, checked_collection
from api.cli.output import print_json

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who or what will use the key, e.g. payroll-bot.")],
    role: Annotated[
        str, typer.Option(help="admin (everything), or reader or writer of --collection.")
    ] = "reader",
    collections: Annotated[
        list[str] | None,
        typer.Option("--collection", "-c", help="A collection the key reaches (repeatable)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Make an API key. It is printed once and stored only as a hash: keep it safe."""
    reach = [checked_collection(c) for c in collections or []]
    with open_lore(read_settings()) as lore:
        created, key = lore.keys.create(name, role, reach)
    if as_json:
        print_json({**created.as_json(), "key": key})
        return
    scope = ", ".join(created.collections) or "every collection"
    typer.echo(f"Created key {created.key_id} ({created.role} of {scope}) for {created.name}.")
    typer.echo(f"Key (shown only now): {key}")


@app.command("list")
def keys_list(as_json: JsonOption = False) -> None:
    """Show every key (never the secret): id, name, role, collections, whether revoked."""
    with open_lore(read_settings()) as lore:
        records = lore.keys.list()
    if as_json:
        print_json([r.as_json() for r in records])
        return
    for r in records:
        state = "revoked" if r.revoked_at is not None else "active"
        reach = ", ".join(r.collections) or "*"
        typer.echo(f"{r.key_id}  {state:7s} {r.role:6s} {r.name}  [{reach}]")


@app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id, as `lore keys list` shows it.")],
) -> None:
    """Revoke a key; requests with it are refused from now on."""
    with open_lore(read_settings()) as lore:
        revoked = lore.keys.revoke(key_id)
    typer.echo(f"Revoked key {revoked.key_id} ({revoked.name}).")
