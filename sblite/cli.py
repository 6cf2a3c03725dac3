"""The ``sblite`` command line: a thin Typer layer over the library.

Each command parses its options, calls one library function, and prints a rich summary. Heavy libraries
(torch, transformers, trl, unsloth) are imported inside the commands that need them, so ``sblite --help``
is instant and works on any machine. Bad input ends with one red line and exit code 2, never a traceback.

    sblite recipes                       # what recipes exist
    sblite doctor                        # what this machine can run, which backend `auto` picks
    sblite train --recipe grpo-7b --dry-run
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

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


@app.command("recipes")
def recipes_cmd() -> None:
    """List the recipes: name, stages, model and purpose."""
    from sblite.config import RecipeError, list_recipes, load_recipe

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
    from sblite.config import RecipeError, load_recipe

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
    try:
        cfg = load_recipe(recipe, overrides)
    except RecipeError as err:
        raise fail(str(err)) from None

    if dry_run:
        _print_plan(cfg)
        return
    if num_processes > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_relaunch(num_processes, recipe, overrides, resume=resume, strict=strict))

    from sblite.train import TrainingError, ZeroSignalStop, run_training

    try:
        results = run_training(cfg, resume=resume, strict=strict, console=console)
    except ZeroSignalStop as err:
        raise fail(str(err), code=3) from None
    except (TrainingError, RecipeError, FileNotFoundError) as err:
        raise fail(str(err)) from None
    if int(os.environ.get("RANK", "0")) == 0:
        table = Table(title=f"trained: {cfg.resolved_output_dir}", title_justify="left")
        for col in ("stage", "steps", "seconds", "adapter", "notes"):
            table.add_column(col, overflow="fold")
        for r in results:
            steps = "skipped (done)" if r.skipped else str(r.global_step)
            table.add_row(r.stage, steps, f"{r.seconds:.1f}", r.adapter_dir, escape(str(r.notes or "")))
        console.print(table)


def _relaunch(num_processes: int, recipe: str, overrides: list[str], *, resume: bool, strict: bool) -> int:
    """Re-run this command data-parallel under an existing launcher: `accelerate launch` on CUDA,
    torch's own elastic launcher (`torchrun`, gloo) on CPU. sblite adds no distribution layer of its own."""
    import shutil
    import socket
    import subprocess

    from sblite.backends import cuda_available

    args = ["-m", "sblite.cli", "train", "--recipe", recipe]
    for item in overrides:
        args += ["--set", item]
    args += ["--resume"] * resume + ["--strict"] * strict
    if cuda_available() and shutil.which("accelerate"):
        cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(num_processes), *args]
    else:
        with socket.socket() as sock:  # a free port for the gloo rendezvous
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(num_processes),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            *args,
        ]
    console.print(f"[bold]launching {num_processes} processes:[/] {' '.join(cmd)}", highlight=False)
    return subprocess.call(cmd)


def _print_plan(cfg) -> None:
    from rich.syntax import Syntax

    from sblite.backends import lora_kwargs, select_backend, unsloth_load_kwargs
    from sblite.config import dump_recipe

    console.print(Syntax(dump_recipe(cfg), "yaml", theme="ansi_dark", background_color="default"))
    try:
        choice = select_backend(cfg.model.backend)
        console.print(f"[bold]backend:[/] {choice.name} ({choice.reason})")
        name = choice.name
    except RuntimeError as err:
        console.print(
            f"[bold]backend:[/] {cfg.model.backend} [yellow](not runnable on this machine: {err})[/]"
        )
        name = cfg.model.backend
    if name == "unsloth":
        console.print(
            "[bold]Unsloth FastLanguageModel.from_pretrained:[/]", unsloth_load_kwargs(cfg.model, cfg.lora)
        )
        console.print("[bold]Unsloth FastLanguageModel.get_peft_model:[/]", lora_kwargs(cfg.lora))
    else:
        console.print("[bold]PEFT LoRA:[/]", lora_kwargs(cfg.lora))
    console.print(f"[bold]stages:[/] {' → '.join(cfg.stages)}   [bold]run dir:[/] {cfg.resolved_output_dir}")
    console.print("[green]recipe is valid[/] (dry run: nothing was loaded or trained)")


# --- sblite prepare (issue 3) goes here ---


# --- sblite eval / generate (issue 6) go here ---


@app.command("demo")
def demo_cmd() -> None:
    """The embedded default job. Today: doctor, the recipe table, and a dry run of the CPU demo recipe."""
    doctor_cmd()
    recipes_cmd()
    train_cmd(recipe="smollm2-135m", dry_run=True)


def main() -> None:  # pragma: no cover - entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
