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
from pathlib import Path
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


@app.command("prepare")
def prepare_cmd(
    dataset: Annotated[
        str | None,
        typer.Option(
            help="gsm8k, gsm8k-test, math, math500, svamp, a .jsonl/.json/.parquet/.csv file, or hf:owner/name[:split]"
            " [recipe data.source]"
        ),
    ] = None,
    out: Annotated[str | None, typer.Option(
        help="output directory (sft/grpo/rejects .jsonl, report.json) [data.path]")] = None,
    recipe: Annotated[str | None, typer.Option(
        help="take defaults from this recipe's data: and model: sections (what `sblite train` will read)")] = None,
    labels: Annotated[
        str | None, typer.Option(help="reference (offline, reference solutions) or sample (base model) [data.labels]")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="model to sample from: builtin:smollm2-135m, a directory, a hub id "
                                 "[model.name_or_path]")
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="tokenizer that counts budgets (default: the model's)")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="samples per question (sample mode)")] = 4,
    temperature: Annotated[float, typer.Option(help="sampling temperature (sample mode)")] = 0.7,
    top_p: Annotated[float, typer.Option(help="nucleus sampling (sample mode)")] = 0.95,
    max_new_tokens: Annotated[
        int, typer.Option(help="longest response sampled; longer ones count as wrong")
    ] = 512,
    batch_size: Annotated[int, typer.Option(help="questions per generation batch (sample mode)")] = 8,
    limit: Annotated[int | None, typer.Option(help="read only the first N records [data.limit]")] = None,
    seed: Annotated[int | None, typer.Option(help="sampling seed [data.seed]")] = None,
    question_field: Annotated[str | None, typer.Option(help="record key of the question")] = None,
    answer_field: Annotated[str | None, typer.Option(help="record key of the gold answer")] = None,
    solution_field: Annotated[str | None, typer.Option(help="record key of the reference solution")] = None,
    level_field: Annotated[str | None, typer.Option(help="record key of the difficulty level")] = None,
    id_field: Annotated[str | None, typer.Option(help="record key of the question id")] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(help="local copies of known datasets (default: $SBLITE_DATA, ../shared/data)"),
    ] = None,
    instruction_in_user: Annotated[
        bool | None, typer.Option("--instruction-in-user/--no-instruction-in-user",
                                  help="put the instruction in the user turn (small models) [model.instruction_in_user]")
    ] = None,
    max_prompt_tokens: Annotated[
        int | None, typer.Option(help="reject questions whose prompt is longer [data.max_prompt_length]")
    ] = None,
    styles: Annotated[
        str, typer.Option(help="sample mode: instructions to sample under, comma-separated: plain, brief")
    ] = "plain",
    targets: Annotated[
        str, typer.Option(help="sample mode: shortest (one SFT row per question) or all correct responses")
    ] = "shortest",
    backend: Annotated[
        str, typer.Option(help="sampling engine: auto (vLLM on a GPU when installed), hf, vllm")
    ] = "auto",
    force: Annotated[bool, typer.Option(help="overwrite a non-empty --out")] = False,
    dry_run: Annotated[bool, typer.Option(help="print the resolved settings and where each came from, and exit")] = False,
) -> None:
    """Label a dataset with budgets and difficulty: sft.jsonl, grpo.jsonl, rejects.jsonl, report.json.

    With ``--recipe``, options left out come from its ``data:``/``model:`` sections, so the directory written is
    the one ``sblite train --recipe`` reads."""
    from sblite.config import RecipeError
    from sblite.options import PREPARE, find_command_recipe, resolve

    cli = dict(dataset=dataset, out=out, labels=labels, limit=limit, seed=seed, max_prompt_tokens=max_prompt_tokens,
               model=model, instruction_in_user=instruction_in_user)
    try:
        settings = resolve(PREPARE, cli, *find_command_recipe(recipe))
    except RecipeError as err:
        raise fail(str(err)) from None
    for option, key in (("dataset", "data.source"), ("out", "data.path")):
        if settings[option] is None:
            raise fail(f"--{option} is missing: give --{option}, or a --recipe whose {key} is set")
    if dry_run:
        _print_settings("sblite prepare", settings)
        return
    from sblite.data.prepare import PrepareError, PrepareOptions, run_prepare
    from sblite.data.report import render_report
    from sblite.logs import progress_bars

    opts = PrepareOptions(
        **settings.values,
        tokenizer=tokenizer,
        k=k,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        question_field=question_field,
        answer_field=answer_field,
        solution_field=solution_field,
        level_field=level_field,
        id_field=id_field,
        data_dir=data_dir,
        force=force,
        styles=tuple(s.strip() for s in styles.split(",") if s.strip()),
        targets=targets,
        backend=backend,
        command=sys.argv[1:],
        sources=settings.sources,
    )
    try:
        with progress_bars(err_console) as progress:
            result = run_prepare(opts, progress=progress)
    except PrepareError as err:
        raise fail(str(err)) from None
    console.print(render_report(result.report))
    console.print(
        f"[green]wrote[/] {escape(str(result.out))}: sft.jsonl, grpo.jsonl, rejects.jsonl, report.json"
    )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@app.command("merge")
def merge_cmd(
    src: Annotated[str, typer.Argument(help="RUN_DIR (newest stage) or a LoRA adapter directory")],
    out: Annotated[str, typer.Option(help="directory for the merged model (safetensors + tokenizer)")],
    dtype: Annotated[str | None, typer.Option(
        help="bf16, f16, f32 or auto (the base model's) [export.merge_dtype of the run's recipe]")] = None,
    recipe: Annotated[str | None, typer.Option(help="take --dtype's default from this recipe's export: section")] = None,
    force: Annotated[bool, typer.Option(help="overwrite a non-empty --out")] = False,
    dry_run: Annotated[bool, typer.Option(help="print the resolved settings and where each came from, and exit")] = False,
) -> None:
    """Merge a trained LoRA adapter into its base model; checks merged logits against the adapter's."""
    from sblite.config import RecipeError
    from sblite.options import EXPORT, find_command_recipe, resolve

    try:
        settings = resolve({"dtype": EXPORT["dtype"]}, {"dtype": dtype}, *find_command_recipe(recipe, src))
    except RecipeError as err:
        raise fail(str(err)) from None
    if dry_run:
        _print_settings("sblite merge", settings)
        return
    from sblite.export import ExportError, merge_adapter

    try:
        with console.status("merging…") as status:
            result = merge_adapter(src, out, settings["dtype"], force, log=lambda m: status.update(escape(m)))
    except (ExportError, OSError) as err:
        raise fail(str(err)) from None
    c = result.check
    table = Table(title=f"merged: {result.out}", title_justify="left")
    for col in ("base", "dtype", "params", "size", "seconds", "max |Δlogit| (rel)", "top-1 agree"):
        table.add_column(col, overflow="fold")
    table.add_row(escape(result.base), result.dtype, f"{result.n_params / 1e6:.2f} M", _mb(result.bytes),
                  f"{result.seconds:.1f}", f"{c['max_abs_logit_diff']:.2e} ({c['rel_logit_diff']:.1e} ≤ "
                  f"{c['tolerance']:.0e})", f"{c['top1_agreement']:.1%}")
    console.print(table)


@app.command("export")
def export_cmd(
    src: Annotated[str, typer.Argument(help="merged/full MODEL_DIR, builtin: name, RUN_DIR or adapter dir")],
    out: Annotated[str, typer.Option(help="output directory for NAME-QUANT.gguf (+ merged/ for a run)")],
    gguf: Annotated[bool, typer.Option("--gguf", help="export GGUF (the only format today)")] = False,
    recipe: Annotated[str | None, typer.Option(help="take defaults from this recipe's export: section "
                                               "(default: the run's own recipe when SRC is a run)")] = None,
    quant: Annotated[str | None, typer.Option(
        help="f32, f16, bf16, q8_0 (no llama.cpp needed); q4_k_m, q5_k_m, q6_k, … (llama.cpp) [export.quant]")] = None,
    ollama: Annotated[bool | None, typer.Option("--ollama/--no-ollama",
                                                help="also write an Ollama Modelfile [export.ollama]")] = None,
    verify: Annotated[bool | None, typer.Option("--verify/--no-verify",
                                                help="check the file with transformers and llama.cpp [export.verify]")] = None,
    dtype: Annotated[str | None, typer.Option(help="merge dtype when SRC is a run: bf16, f16, f32, auto "
                                              "[export.merge_dtype]")] = None,
    force: Annotated[bool, typer.Option(help="overwrite existing outputs")] = False,
    dry_run: Annotated[bool, typer.Option(help="print the resolved settings and where each came from, and exit")] = False,
) -> None:
    """Export a model to GGUF (merging a run first), verified by transformers and llama.cpp.

    Options left out come from the recipe's ``export:`` section (``--recipe``, or the run's own recipe)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sblite.config import RecipeError
    from sblite.options import EXPORT, find_command_recipe, resolve

    if not gguf:
        raise fail("choose a format: --gguf")
    try:
        settings = resolve(EXPORT, dict(quant=quant, ollama=ollama, verify=verify, dtype=dtype),
                           *find_command_recipe(recipe, src))
    except RecipeError as err:
        raise fail(str(err)) from None
    if dry_run:
        _print_settings("sblite export", settings)
        return
    from sblite.export import ExportError, VerificationError, export_gguf

    quant = settings["quant"]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("preparing", total=None)

        def progress(name: str, done: int, total: int) -> None:
            bar.update(task, description=f"writing {quant} tensors", completed=done, total=total)

        def log(message: str) -> None:
            bar.update(task, description=escape(message))

        try:
            result = export_gguf(src, out, quant, ollama=settings["ollama"], verify=settings["verify"], force=force,
                                 dtype=settings["dtype"], progress=progress, log=log)
            failure = None
        except VerificationError as err:
            result, failure = err.result, str(err)
        except (ExportError, OSError, RuntimeError) as err:
            bar.stop()
            raise fail(str(err)) from None
    _print_export(result)
    if failure:
        raise fail(failure, code=1)


def _print_export(result) -> None:
    table = Table(title=f"exported: {result.gguf}", title_justify="left")
    table.add_column("item")
    table.add_column("value", overflow="fold")
    if result.merged is not None:
        m = result.merged
        how = "reused (same adapter)" if m.reused else f"{m.seconds:.1f} s"
        table.add_row("merged", f"{m.out} ({m.dtype}, {_mb(m.bytes)}, {how}; merge check "
                      f"{m.check.get('rel_logit_diff', float('nan')):.1e} rel)")
    table.add_row("gguf", f"{result.arch}, {result.quant}, {_mb(result.bytes)}, pre-tokenizer {result.pre_tokenizer}")
    table.add_row("sha256", result.sha256)
    table.add_row("times", ", ".join(f"{k} {v:.2f} s" for k, v in result.seconds.items()))
    v = result.verification
    if not v:
        table.add_row("verification", "[yellow]skipped (--no-verify)[/]")
    else:
        tf = v["transformers"]
        ok = "[green]ok[/]" if tf["passed"] else "[bold red]FAILED[/]"
        table.add_row("transformers", f"{ok} {tf['metric']} {tf[tf['metric']]:.1e} ≤ {tf['tolerance']:.0e}; max "
                      f"|Δlogit| {tf['max_abs_logit_diff']:.2e} (rel {tf['rel_logit_diff']:.1e}), mean KL "
                      f"{tf['mean_kl']:.1e}, top-1 agreement {tf['top1_agreement']:.1%} over {tf['positions']} "
                      "positions")
        lc = v["llama_cpp"]
        if isinstance(lc, str):
            table.add_row("llama.cpp", f"[yellow]{escape(lc)}[/]")
        else:
            tok_ok = "[green]ok[/]" if lc["tokenization_match"] else "[bold red]FAILED[/]"
            tie = " (a tie)" if lc["greedy_divergence_is_tie"] else ""
            at = lc["greedy_diverged_at"]
            greedy = "equal" if at is None else f"diverged at token {at}{tie}"
            table.add_row("llama.cpp tokens", f"{tok_ok} {lc['tokenization_checked']} texts incl. budget tags")
            table.add_row("llama.cpp greedy", f"{greedy} over {lc['greedy_tokens']} tokens "
                          f"({'must match' if lc['exact_required'] else 'reported'}); first-step max |Δlogit| "
                          f"{lc['first_step_max_abs_logit_diff']:.2e}")
    if result.modelfile:
        table.add_row("ollama", f"{result.modelfile} (ollama create NAME -f {result.modelfile.name})")
    table.add_row("provenance", str(result.provenance))
    console.print(table)


@app.command("eval")
def eval_cmd(
    out: Annotated[str, typer.Option(help="output dir: results.json, report.md, PNG plots")],
    model: Annotated[str | None, typer.Option(help="RUN_DIR, adapter dir, model dir, builtin: name or hub id")] = None,
    gguf: Annotated[str | None, typer.Option(help="evaluate a GGUF file instead (llama.cpp when installed)")] = None,
    recipe: Annotated[str | None, typer.Option(help="take defaults from this recipe's eval: section "
                                               "(default: the run's own recipe when --model is a RUN_DIR)")] = None,
    dataset: Annotated[str | None, typer.Option(help="as in `sblite prepare` (gsm8k-test, math500, a file, hf:…) "
                                                "or a prepared DIR [recipe eval.dataset]")] = None,
    mode: Annotated[str | None, typer.Option(help="self (model states its budget), prefill (sweep --budgets), "
                                             "none (plain) [eval.mode]")] = None,
    budgets: Annotated[str | None, typer.Option(help="comma-separated budgets for --mode prefill [eval.budgets]")] = None,
    style: Annotated[str, typer.Option(help="--mode none: the instruction, plain (step by step) or brief")] = "plain",
    n_samples: Annotated[int | None, typer.Option(help="samples per question (pass@1 is their mean) [eval.n_samples]")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy [eval.temperature]")] = None,
    limit: Annotated[int | None, typer.Option(help="first N valid questions [eval.limit]")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="generation cap per sample [eval.max_new_tokens]")] = None,
    batch_size: Annotated[int | None, typer.Option(help="prompts per generation batch [eval.batch_size]")] = None,
    baseline: Annotated[str | None, typer.Option(help="results.json of a --mode none run, for compression")] = None,
    data_dir: Annotated[str | None, typer.Option(help="where known dataset names live (default $SBLITE_DATA)")] = None,
    stage: Annotated[str | None, typer.Option(help="sft or grpo inside a RUN_DIR (default: newest)")] = None,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    question_field: Annotated[str | None, typer.Option(help="question column of a custom file")] = None,
    answer_field: Annotated[str | None, typer.Option(help="answer column of a custom file")] = None,
    dry_run: Annotated[bool, typer.Option(help="print the resolved settings and where each came from, and exit")] = False,
) -> None:
    """Accuracy, length, compression and budget adherence on a dataset; writes a report and plots.

    Options left out come from the recipe's ``eval:`` section (``--recipe``, or the run's own recipe)."""
    from sblite.config import RecipeError
    from sblite.options import EVAL, find_command_recipe, resolve

    if (model is None) == (gguf is None):
        raise fail("give exactly one of --model and --gguf")
    budget_list = None
    if budgets is not None:
        try:
            budget_list = [int(b) for b in budgets.split(",") if b.strip()]
        except ValueError:
            raise fail(f"--budgets {budgets!r}: give comma-separated whole numbers, e.g. 64,128,256") from None
    cli = dict(dataset=dataset, limit=limit, mode=mode, budgets=budget_list, n_samples=n_samples,
               temperature=temperature, max_new_tokens=max_new_tokens, batch_size=batch_size)
    try:
        settings = resolve(EVAL, cli, *find_command_recipe(recipe, model))
    except RecipeError as err:
        raise fail(str(err)) from None
    if dry_run:
        _print_settings("sblite eval", settings)
        return
    from sblite.eval.run import EvalError, EvalOptions, run_eval

    opts = EvalOptions(model=model or "", gguf=gguf, out=out, baseline=baseline, data_dir=data_dir, stage=stage,
                       seed=seed, question_field=question_field, answer_field=answer_field, style=style,
                       sources=settings.sources, **settings.values)
    try:
        result = run_eval(opts, console=console)
    except (EvalError, FileNotFoundError, OSError) as err:
        raise fail(str(err)) from None
    _print_eval(result, out)


def _print_settings(command: str, settings) -> None:
    """The resolved options of a command and where each came from (its ``--dry-run``), one per line as
    ``option: value  # source`` like ``sblite train --dry-run``'s recipe."""
    import yaml

    title = f"{command}: resolved settings" + (f" (recipe {settings.recipe})" if settings.recipe else "")
    console.print(f"[bold]{escape(title)}[/]")
    for option, value in settings.values.items():
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
        console.print(f"{option}: {escape(text)}  [dim]# {escape(settings.sources[option])}[/]", highlight=False,
                      soft_wrap=True)
    console.print("[green]dry run:[/] nothing was loaded or written")


def _print_eval(result: dict, out: str) -> None:
    from sblite.eval.run import ROW_COLUMNS, _fmt

    shown = {"n", "accuracy", "format_rate", "mean_generated_tokens", "mean_tokens", "compression", "mean_budget",
             "adherence_50",
             "adherence_10", "slope", "spearman_budget_level"}
    cols = [c for c in ROW_COLUMNS if c[0] in shown]
    table = Table(title=f"{result['model']} · {result['dataset']} · {result['mode']}", title_justify="left")
    table.add_column("group")
    for _, name, _ in cols:
        table.add_column(name.replace("within ", ""), justify="right")
    s = result["summary"]
    rows = [("overall", s["overall"]), *s["by_level"].items(), *s.get("by_prefill_budget", {}).items()]
    for name, stats in rows:
        table.add_row(str(name), *[_fmt(stats.get(k), pct) for k, _, pct in cols])
    console.print(table)
    console.print(f"wrote {out}/results.json, report.md (all metrics) and plots")


@app.command("generate")
def generate_cmd(
    question: Annotated[str, typer.Argument(help="the question to answer")],
    model: Annotated[str, typer.Option(help="RUN_DIR, adapter dir, model dir, builtin: name or hub id")] = (
        "builtin:smollm2-135m"
    ),
    budget: Annotated[int | None, typer.Option(help="pre-fill this budget: <budget>N</budget><solution>")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="hard cap on generated tokens")] = 512,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    stage: Annotated[str | None, typer.Option(help="sft or grpo inside a RUN_DIR (default: newest)")] = None,
    gguf: Annotated[str | None, typer.Option(help="answer from this GGUF (llama.cpp; transformers if absent)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object, no live view")] = False,
) -> None:
    """Answer one question, showing the model's budget as soon as it is stated and progress against it."""
    import json
    import threading

    from sblite import protocol
    from sblite.generate.loading import load_model, resolve_model_spec
    from sblite.generate.stream import render_live, stream_answer, stream_gguf_answer, summary_line
    from sblite.logs import quiet_libraries

    quiet_libraries()
    if budget is not None and not 1 <= budget <= protocol.MAX_BUDGET:
        raise fail(f"--budget {budget}: choose a whole number in 1..{protocol.MAX_BUDGET}")
    stop = threading.Event()
    kwargs = dict(budget=budget, max_new_tokens=max_new_tokens, temperature=temperature, stop_event=stop)
    try:
        if gguf:
            stream, label = stream_gguf_answer(gguf, question, status=console.status, **kwargs)
        else:
            spec = resolve_model_spec(model, stage=stage)
            label = spec.label or spec.base
            with console.status(f"loading {label}…"):
                lm, tok = load_model(spec)
            stream = stream_answer(lm, tok, question, instruction_in_user=spec.instruction_in_user, **kwargs)
    except (FileNotFoundError, OSError, ValueError) as err:
        raise fail(f"{'--gguf ' + gguf if gguf else '--model ' + model}: {err}") from None
    state = None
    if json_out:
        try:
            for snapshot in stream:
                state = snapshot
        except KeyboardInterrupt:
            stop.set()
            for snapshot in stream:
                state = snapshot
        print(json.dumps({"question": question, "model": label, **state.to_json()}))
        return
    from rich.live import Live

    with Live(console=console, refresh_per_second=12, transient=False) as live:
        try:
            for state in stream:
                live.update(render_live(state, question))
        except KeyboardInterrupt:
            stop.set()
            for state in stream:
                live.update(render_live(state, question))
    console.print(summary_line(state), highlight=False)


@app.command("demo")
def demo_cmd(
    out: Annotated[str, typer.Option(help="output folder (prepared data, run, evals, GGUF, report.md)")] = "demo-out",
    quick: Annotated[bool, typer.Option(help="a smaller run in a few minutes (a smoke test, not a result)")] = False,
    force: Annotated[bool, typer.Option(help="overwrite a non-empty --out")] = False,
) -> None:
    """The whole pipeline on SmolLM2-135M and bundled arithmetic problems, in about 15-20 minutes on 2 cores."""
    from sblite.demo import DemoOptions, run_demo

    opts = DemoOptions.quick(out=out, force=force) if quick else DemoOptions(out=out, force=force)
    try:
        summary = run_demo(opts, console=console)
    except FileExistsError as err:
        raise fail(str(err)) from None
    console.rule("[bold green]demo finished")
    console.print((Path(out) / "report.md").read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print(f"total {summary['timings_s']['total'] / 60:.1f} min; everything is in {out}/")


def main() -> None:  # pragma: no cover - entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
