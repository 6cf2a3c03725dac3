"""``sblite eval``: options → ``sblite.eval.run.run_eval``; the summary table.

Parse, resolve, call one library function, print: no pipeline logic lives here."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from sblite.cli.app import app, console, fail, resolve_settings


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
    budget_guard: Annotated[str | None, typer.Option(help="off (the model alone), cap (land each solution by its "
                                                     "budget) or band (also not before 0.6x) [eval.budget_guard]")] = None,
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
    from sblite.options import EVAL

    if (model is None) == (gguf is None):
        raise fail("give exactly one of --model and --gguf")
    budget_list = None
    if budgets is not None:
        try:
            budget_list = [int(b) for b in budgets.split(",") if b.strip()]
        except ValueError:
            raise fail(f"--budgets {budgets!r}: give comma-separated whole numbers, e.g. 64,128,256") from None
    cli = dict(dataset=dataset, limit=limit, mode=mode, budgets=budget_list, n_samples=n_samples,
               temperature=temperature, max_new_tokens=max_new_tokens, batch_size=batch_size,
               budget_guard=budget_guard)
    settings = resolve_settings("sblite eval", EVAL, cli, recipe, model, dry_run=dry_run)
    if settings is None:
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
