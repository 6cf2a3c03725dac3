"""The ``sblite`` command line: a thin Typer layer over the library.

Each command parses its options, calls one library function, and prints a rich summary. Heavy libraries
(torch, transformers, trl, unsloth) are imported inside the commands that need them, so ``sblite --help``
is instant and works on any machine. Bad input ends with one red line and exit code 2, never a traceback.

    sblite recipes                       # what recipes exist
    sblite doctor                        # what this machine can run, which backend `auto` picks
    sblite train --recipe grpo-7b --dry-run

Layout: ``app.py`` (the Typer app, consoles, ``fail``), then one module per command group in pipeline order:
``info`` (recipes, doctor), ``prepare``, ``train``, ``evaluate`` (eval), ``generate``, ``export`` (merge,
export), ``demo``. Each parses options, resolves them (``sblite.options``), calls one library function and
prints a summary.
"""

from __future__ import annotations

import sys

# isort: off
from sblite.cli.app import app, console, err_console, fail

# importing a command module registers its commands, in pipeline order in --help
from sblite.cli import info, prepare, train, evaluate, generate, export, demo  # noqa: F401
# isort: on

__all__ = ["app", "console", "err_console", "fail", "main"]


def main() -> None:  # pragma: no cover - entry point
    sys.exit(app())
