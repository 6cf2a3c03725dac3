"""The Typer app and what every command shares: the consoles, ``fail`` (one red line, exit 2) and the
``--dry-run`` printer of resolved settings. Commands live in the sibling modules, one per pipeline stage.

No command logic lives here, and nothing heavy is imported.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="sblite",
    help="SelfBudgeter for everyone: train LLMs to state a token budget, then reason within it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one red line and return the Exit to raise (``raise fail(...)``)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def resolve_settings(command: str, mapping: dict[str, str], cli: dict, recipe: str | None, target: str | None = None,
                     *, dry_run: bool = False, required: dict[str, str] | None = None):
    """The command's options resolved against ``--recipe`` (or the run ``target`` belongs to): a bad value or a
    missing ``required`` option (option → recipe key) is one red line; ``--dry-run`` prints them and returns
    None, so the command returns before loading anything."""
    from sblite.config import RecipeError
    from sblite.options import find_command_recipe, resolve

    try:
        settings = resolve(mapping, cli, *find_command_recipe(recipe, target))
    except RecipeError as err:
        raise fail(str(err)) from None
    for option, key in (required or {}).items():
        if settings[option] is None:
            raise fail(f"--{option} is missing: give --{option}, or a --recipe whose {key} is set")
    if dry_run:
        print_settings(command, settings)
        return None
    return settings


def print_settings(command: str, settings) -> None:
    """The resolved options of a command and where each came from (its ``--dry-run``), one per line as
    ``option: value  # source`` like ``sblite train --dry-run``'s recipe."""
    from sblite.recipes import yaml_value

    title = f"{command}: resolved settings" + (f" (recipe {settings.recipe})" if settings.recipe else "")
    console.print(f"[bold]{escape(title)}[/]")
    for option, value in settings.values.items():
        console.print(
            f"{option}: {escape(yaml_value(value))}  [dim]# {escape(settings.sources[option])}[/]",
            highlight=False,
            soft_wrap=True,
        )
    console.print("[green]dry run:[/] nothing was loaded or written")
