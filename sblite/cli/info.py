"""``sblite recipes`` and ``sblite doctor``: what recipes exist, and what this machine can run.

Parse, resolve, call one library function, print: no pipeline logic lives here."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from sblite.cli.app import app, console


@app.command("recipes")
def recipes_cmd() -> None:
    """List the recipes: name, stages, model and purpose."""
    from sblite.config import RecipeError
    from sblite.recipes import list_recipes, load_recipe

    table = Table(title="sblite recipes", title_justify="left")
    for col in ("name", "stages", "model", "purpose"):
        table.add_column(col, overflow="fold")
    for name, path in list_recipes().items():
        try:
            r = load_recipe(str(path))
            table.add_row(name, " → ".join(r.stages), r.model.name_or_path, r.description)
        except RecipeError as err:
            table.add_row(name, "—", "—", f"[red]invalid: {escape(str(err))}[/]")
    console.print(table)
    console.print("Run one with [bold]sblite train --recipe NAME --data DIR[/]; add --dry-run to inspect it.")


@app.command("doctor")
def doctor_cmd() -> None:
    """Check this machine: Python, torch, CUDA, Unsloth, TRL versions, llama.cpp, and the `auto` backend."""
    from sblite.doctor import run_checks

    style = {"ok": "green", "warn": "yellow", "fail": "bold red", "info": "cyan"}
    table = Table(title="sblite doctor", title_justify="left")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    checks = run_checks()
    for c in checks:
        table.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", escape(c.detail))
    console.print(table)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
