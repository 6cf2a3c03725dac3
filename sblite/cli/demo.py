"""``sblite demo``: the whole pipeline (``sblite.demo.run_demo``).

Parse, resolve, call one library function, print: no pipeline logic lives here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sblite.cli.app import app, console, fail


@app.command("demo")
def demo_cmd(
    out: Annotated[str, typer.Option(help="output folder (prepared data, run, evals, GGUF, report.md)")] = "demo-out",
    quick: Annotated[bool, typer.Option(help="a smaller run in a few minutes (a smoke test, not a result)")] = False,
    force: Annotated[bool, typer.Option(help="overwrite a non-empty --out")] = False,
) -> None:
    """The whole pipeline on SmolLM2-135M and bundled arithmetic problems, in about 15 minutes on 2 cores."""
    from sblite.demo import DemoOptions, run_demo

    opts = DemoOptions.quick(out=out, force=force) if quick else DemoOptions(out=out, force=force)
    try:
        summary = run_demo(opts, console=console)
    except FileExistsError as err:
        raise fail(str(err)) from None
    console.rule("[bold green]demo finished")
    console.print((Path(out) / "report.md").read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print(f"total {summary['timings_s']['total'] / 60:.1f} min; everything is in {out}/")
