"""``sblite prepare``: options → ``sblite.data.prepare.run_prepare``; the report table.

Parse, resolve, call one library function, print: no pipeline logic lives here."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from sblite.cli.app import app, console, err_console, fail, resolve_settings


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
    renderings: Annotated[
        str | None, typer.Option(help="add each worked solution (arith data) re-said at these lengths as pre-filled "
                                      "SFT rows: answer, short, reference, steps, stated, explained, checked [data.renderings]")
    ] = None,
    self_renderings: Annotated[
        str | None, typer.Option(help="of --renderings, those written as self rows: the model learns to state their "
                                      "length as its own budget [data.self_renderings]")
    ] = None,
    stating_questions: Annotated[
        int | None, typer.Option(help="the N records after the first --limit give their --self-renderings rows only "
                                      "(no sampling): more questions to learn the budget each needs from "
                                      "[data.stating_questions]")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="sampling engine: auto (vLLM on a GPU when installed), hf, vllm")
    ] = "auto",
    force: Annotated[bool, typer.Option(help="overwrite a non-empty --out")] = False,
    dry_run: Annotated[bool, typer.Option(help="print the resolved settings and where each came from, and exit")] = False,
) -> None:
    """Label a dataset with budgets and difficulty: sft.jsonl, grpo.jsonl, rejects.jsonl, report.json.

    With ``--recipe``, options left out come from its ``data:``/``model:`` sections, so the directory written is
    the one ``sblite train --recipe`` reads."""
    from sblite.options import PREPARE

    cli = dict(dataset=dataset, out=out, labels=labels, limit=limit, seed=seed, max_prompt_tokens=max_prompt_tokens,
               model=model, instruction_in_user=instruction_in_user,
               renderings=_names(renderings), self_renderings=_names(self_renderings),
               stating_questions=stating_questions)
    settings = resolve_settings("sblite prepare", PREPARE, cli, recipe, dry_run=dry_run,
                                required={"dataset": "data.source", "out": "data.path"})
    if settings is None:
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


def _names(text: str | None) -> list[str] | None:
    """A comma-separated option as its names; None (not given: the recipe's value stands) stays None."""
    return None if text is None else [v.strip() for v in text.split(",") if v.strip()]
