"""``sblite train``: options → ``sblite.train.run.run_training``; ``--dry-run`` prints ``train.plan``.

Parse, resolve, call one library function, print: no pipeline logic lives here."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sblite.cli.app import app, console, fail


@app.command("train")
def train_cmd(
    recipe: Annotated[
        str, typer.Option("--recipe", "-r", help="recipe name (see `sblite recipes`) or .yaml path")
    ],
    data: Annotated[str | None, typer.Option(help="a `sblite prepare` output directory")] = None,
    out: Annotated[str | None, typer.Option(help="run directory (default: the recipe's output_dir)")] = None,
    stage: Annotated[str, typer.Option(help="sft, grpo or all (the recipe's stages)")] = "all",
    backend: Annotated[str | None, typer.Option(help="auto, unsloth or hf (overrides model.backend)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a recipe key: a.b=value")] = None,
    resume: Annotated[
        bool, typer.Option(help="continue from the last checkpoint in the run directory")
    ] = False,
    num_processes: Annotated[int, typer.Option(help="data-parallel processes via accelerate")] = 1,
    strict: Annotated[bool, typer.Option(help="stop when the zero-signal guard fires")] = False,
    dry_run: Annotated[bool, typer.Option(help="print the resolved, validated recipe and exit")] = False,
) -> None:
    """Budget SFT and budget-guided GRPO from a recipe."""
    from sblite.config import RecipeError
    from sblite.recipes import load_recipe_with_sources

    overrides = list(set_ or [])
    if backend:
        overrides.append(f"model.backend={backend}")
    if stage != "all":
        if stage not in ("sft", "grpo"):
            raise fail(f"--stage {stage!r}: choose sft, grpo or all")
        overrides.append(f"stages=[{stage}]")
    if data:
        overrides.append(f"data.path={data}")
    if out:
        overrides.append(f"output_dir={out}")
    labels = {"model.backend": "--backend", "stages": "--stage", "data.path": "--data", "output_dir": "--out"}
    try:
        cfg, sources = load_recipe_with_sources(recipe, overrides, labels=labels)
    except RecipeError as err:
        raise fail(str(err)) from None

    if dry_run:
        _print_plan(cfg, sources)
        return
    if num_processes > 1 and "WORLD_SIZE" not in os.environ:
        from sblite.train.launch import relaunch

        raise typer.Exit(relaunch(num_processes, recipe, overrides, resume=resume, strict=strict, console=console))

    from sblite.train import TrainingError, ZeroSignalStop
    from sblite.train.run import is_main_process, run_training

    try:
        results = run_training(cfg, resume=resume, strict=strict, console=console)
    except ZeroSignalStop as err:
        raise fail(str(err), code=3) from None
    except (TrainingError, RecipeError, FileNotFoundError) as err:
        raise fail(str(err)) from None
    if is_main_process():
        table = Table(title=f"trained: {cfg.resolved_output_dir}", title_justify="left")
        for col in ("stage", "steps", "seconds", "adapter", "notes"):
            table.add_column(col, overflow="fold")
        for r in results:
            steps = "skipped (done)" if r.skipped else str(r.global_step)
            table.add_row(r.stage, steps, f"{r.seconds:.1f}", r.adapter_dir, escape(str(r.notes or "")))
        console.print(table)


def _print_plan(cfg, sources) -> None:
    """``sblite train --dry-run``: the recipe with each value's origin, then what each consumer receives."""
    from rich.pretty import Pretty
    from rich.syntax import Syntax

    from sblite.backends import select_backend
    from sblite.recipes import annotated_yaml
    from sblite.train.plan import train_plan

    console.print(Syntax(annotated_yaml(cfg, sources), "yaml", theme="ansi_dark", background_color="default"))
    try:
        choice = select_backend(cfg.model.backend)
        console.print(f"[bold]backend:[/] {choice.name} ({choice.reason})")
        name = choice.name
    except RuntimeError as err:
        console.print(f"[bold]backend:[/] {cfg.model.backend} [yellow](not runnable on this machine: {err})[/]")
        name = cfg.model.backend
    plan = train_plan(cfg)
    shown = {"model (transformers)": "AutoModelForCausalLM.from_pretrained",
             "model (unsloth)": "Unsloth FastLanguageModel.from_pretrained"}
    for key, value in plan.items():
        if key in shown:
            if (key == "model (unsloth)") != (name == "unsloth"):
                continue
            key = shown[key]
        console.print(f"[bold]{escape(key)}:[/]", Pretty(value))
    console.print("[green]recipe is valid[/] (dry run: nothing was loaded or trained)")
