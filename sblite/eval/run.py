"""``sblite eval``: accuracy, length and budget adherence of a model on a dataset, with a report and plots.

    sblite eval --model builtin:smollm2-135m --dataset gsm8k-test --mode none --limit 50 --out eval/base
    sblite eval --model runs/demo --dataset gsm8k-test --mode self --baseline eval/base/results.json --out eval/self
    sblite eval --model runs/demo --dataset gsm8k-test --mode prefill --budgets 32,64,128 --out eval/sweep

Modes: ``self`` (the model states its budget), ``prefill`` (each ``--budgets`` value is pre-filled: a sweep),
``none`` (plain prompting without the budget format: the base model's own length, the baseline for
compression). Every sample is generated in batches (``sblite.generate.batch``), graded with
``sblite.verify.is_correct`` (the same checker for every mode, so base and trained runs compare fairly) and
measured in solution tokens with ``protocol.count_solution_tokens``. Metrics are ``sblite.eval.metrics``.

Writes ``results.json`` (summary + one record per sample), ``report.md`` (paper-style tables) and PNG plots.

It never trains, and it scores nothing itself: grading is ``verify``, lengths ``protocol``, metrics ``eval/metrics``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sblite import protocol
from sblite.eval.metrics import EvalRecord, report

MODES = ("self", "prefill", "none")


class EvalError(ValueError):
    """Bad eval input; the message is one line saying what to fix."""


@dataclass
class EvalOptions:
    model: str
    dataset: str
    out: str
    mode: str = "self"
    budgets: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    n_samples: int = 1
    temperature: float = 0.0
    limit: int | None = None
    max_new_tokens: int = 512
    batch_size: int = 16
    seed: int = 0
    baseline: str | None = None
    data_dir: str | None = None
    stage: str | None = None
    question_field: str | None = None
    answer_field: str | None = None
    instruction_in_user: bool | None = None  # None: what the run trained with (False for plain models)
    gguf: str | None = None  # evaluate this GGUF (llama.cpp, or transformers reading it) instead of --model
    plots: bool = True
    budget_guard: str = "off"  # guard.GUARD_MODES: enforce each budget while decoding (transformers only)
    style: str = "plain"  # mode none: the instruction (protocol.SAMPLE_STYLES), e.g. brief for a terse baseline
    sources: dict[str, str] | None = None  # where each option came from (sblite.options); kept in results.json


# ---------------------------------------------------------------------------------------------- questions


def load_questions(
    spec: str,
    *,
    data_dir: str | None = None,
    limit: int | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
    rejects: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Questions with ``id``, ``question``, ``answer``, ``level``, ``difficulty`` from any ``prepare`` source,
    or from a prepared directory (its GRPO rows). A row that cannot be used is appended to ``rejects``
    (line, field, reason, detail — as ``prepare``'s rejects.jsonl), never dropped unseen."""
    from sblite.data.labels import static_difficulty
    from sblite.data.prepared import PreparedDataError, read_questions
    from sblite.data.readers import SourceError
    from sblite.data.rows import load_rows

    rejects = rejects if rejects is not None else []
    if Path(spec).is_dir():
        try:
            rows, bad = read_questions(spec)
        except PreparedDataError as err:
            raise EvalError(f"--dataset {spec}: {err}") from None
        rejects.extend(bad)
        out = [{k: r.get(k) for k in ("id", "question", "answer", "level", "difficulty")} for r in rows]
        return out[:limit] if limit else out
    try:
        loaded = load_rows(
            spec, data_dir=data_dir, max_rows=limit, question_field=question_field, answer_field=answer_field
        )
    except SourceError as err:
        raise EvalError(str(err)) from None
    rejects.extend(rj.to_json() for rj in loaded.rejects)
    out = []
    for row in loaded.rows:
        difficulty, _ = static_difficulty(row)
        out.append({"id": row.id, "question": row.question, "answer": row.answer, "level": row.level,
                    "difficulty": difficulty})  # fmt: skip
    if not out:
        raise EvalError(f"--dataset {spec}: no valid questions (check the fields with `sblite prepare`)")
    return out


# ---------------------------------------------------------------------------------------------- running


def _prompts(tok, rows, opts: EvalOptions, instruction_in_user: bool) -> list[tuple[dict, int | None, str]]:
    """(row, pre-filled budget, prompt text) for every generation job of the chosen mode."""
    jobs = []
    for row in rows:
        if opts.mode == "none":
            text = protocol.render_prompt(
                tok,
                row["question"],
                system_prompt=protocol.SAMPLE_STYLES[opts.style],
                instruction_in_user=instruction_in_user,
            )
            jobs.append((row, None, text))
        elif opts.mode == "self":
            jobs.append(
                (
                    row,
                    None,
                    protocol.render_prompt(tok, row["question"], instruction_in_user=instruction_in_user),
                )
            )
        else:
            for b in opts.budgets:
                text = protocol.render_prompt(
                    tok, row["question"], budget=b, instruction_in_user=instruction_in_user
                )
                jobs.append((row, b, text))
    return jobs


def score_generation(
    row: dict[str, Any], prefill_budget: int | None, gen, tok, mode: str, sample: int
) -> EvalRecord:
    """Grade and measure one generated sample."""
    from sblite.verify import is_correct

    text = gen.text if mode == "none" else protocol.cut_after_solution(gen.text)
    full = protocol.prefill(prefill_budget) + text if prefill_budget is not None else text
    parsed = protocol.parse_completion(full)
    if mode == "none":
        length, budget, fmt = gen.n_tokens, None, False
    else:  # one length measure for every mode: protocol.count_solution_tokens
        counted = protocol.count_solution_tokens(gen.token_ids, tok, forced_budget=prefill_budget)
        length = counted if counted is not None else gen.n_tokens
        budget = prefill_budget if prefill_budget is not None else parsed.budget
        fmt = parsed.ok
    return EvalRecord(
        qid=str(row["id"]),
        sample=sample,
        correct=is_correct(full, row["answer"]),
        format_ok=fmt,
        length=length,
        budget=budget,
        level=row.get("level"),
        difficulty=row.get("difficulty"),
        mode=mode,
        prefill_budget=prefill_budget,
        finish_reason=gen.finish_reason,
        answer=parsed.answer,
        gold=str(row["answer"]),
        text=full,
        generated_tokens=gen.n_tokens,
        guard_tokens=getattr(gen, "forced_tokens", 0),
    )


def load_records(path: str | Path) -> list[EvalRecord]:
    """The per-sample records of an earlier ``results.json`` (for ``--baseline``)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return [EvalRecord(**r) for r in data["records"]]
    except FileNotFoundError:
        raise EvalError(f"--baseline {path}: no such file; run `sblite eval --mode none` first") from None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise EvalError(f"--baseline {path}: not an sblite results.json ({err})") from None


def _engine(opts: EvalOptions, console):
    """(tokenizer, batched generate function, label, model info) for ``--model`` or ``--gguf``."""
    from sblite.generate.batch import open_batch_engine

    engine = open_batch_engine(
        model=None if opts.gguf else opts.model,
        gguf=opts.gguf or None,
        stage=opts.stage,
        seed=opts.seed,
        status=console.status,
    )
    return engine.tokenizer, engine.generate, engine.label, engine.info


def run_eval(opts: EvalOptions, console=None) -> dict[str, Any]:
    """Generate, grade, summarise and write the outputs; returns the results dict."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from sblite.logs import quiet_libraries

    console = console or Console()
    if opts.mode not in MODES:
        raise EvalError(f"--mode {opts.mode!r}: choose self, prefill or none")
    if opts.mode == "prefill" and (not opts.budgets or any(b < 1 for b in opts.budgets)):
        raise EvalError("--budgets: give positive whole numbers, e.g. --budgets 64,128,256")
    if opts.mode == "prefill" and (over := [b for b in opts.budgets if b > opts.max_new_tokens]):
        raise EvalError(
            f"--budgets {','.join(map(str, over))} > --max-new-tokens {opts.max_new_tokens}: every answer would be cut "
            f"before it could reach its budget; raise --max-new-tokens to at least {max(over)} or drop those budgets"
        )
    if opts.style not in protocol.SAMPLE_STYLES:
        raise EvalError(f"--style {opts.style!r}: choose {' or '.join(protocol.SAMPLE_STYLES)}")
    out = Path(opts.out)
    baseline = load_records(opts.baseline) if opts.baseline else None
    rejects: list[dict[str, Any]] = []
    rows = load_questions(
        opts.dataset,
        data_dir=opts.data_dir,
        limit=opts.limit,
        question_field=opts.question_field,
        answer_field=opts.answer_field,
        rejects=rejects,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "rejects.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rejects), encoding="utf-8")
    if rejects:
        reasons = sorted({r["reason"] for r in rejects})
        console.print(
            f"[yellow]{len(rejects)} rows of {opts.dataset} cannot be used ({', '.join(reasons)}); "
            f"each is in {out / 'rejects.jsonl'} with its line[/]"
        )
    from sblite.doctor import math_verify_problem

    if problem := math_verify_problem():
        console.print(f"[bold red]WARNING[/] {problem}")
    quiet_libraries()
    try:
        tok, generate, label, model_info = _engine(opts, console)
    except FileNotFoundError as err:
        raise EvalError(f"{'--gguf ' + opts.gguf if opts.gguf else '--model ' + opts.model}: {err}") from None
    in_user = model_info["instruction_in_user"] if opts.instruction_in_user is None else opts.instruction_in_user
    model_info["instruction_in_user"] = in_user
    jobs = _prompts(tok, rows, opts, in_user)
    stop = None if opts.mode == "none" else [protocol.SOLUTION_CLOSE]
    guard: dict[str, Any] = {}
    if opts.budget_guard != "off":
        if opts.mode == "none":
            raise EvalError(f"--budget-guard {opts.budget_guard}: --mode none has no budget to enforce")
        if model_info.get("engine") != "transformers":
            raise EvalError(f"--budget-guard {opts.budget_guard} runs in sblite's transformers decoder, not "
                            f"{model_info.get('engine')}; evaluate with --model, or --budget-guard off")  # fmt: skip
        guard["budget_guard"] = opts.budget_guard
    t0 = time.perf_counter()
    with Progress(
        TextColumn(f"[bold]eval {opts.mode}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("prompts"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("eval", total=len(jobs))
        gens = generate(
            [j[2] for j in jobs],
            max_new_tokens=opts.max_new_tokens,
            temperature=opts.temperature,
            num_return_sequences=opts.n_samples,
            batch_size=opts.batch_size,
            seed=opts.seed,
            stop_strings=stop,
            on_batch=lambda n: progress.advance(task, n),
            **guard,
        )
    seconds = time.perf_counter() - t0
    records = [
        score_generation(row, b, g, tok, opts.mode, i)
        for (row, b, _), samples in zip(jobs, gens, strict=True)
        for i, g in enumerate(samples)
    ]
    summary = report(records, baseline)
    generated = sum(g.n_tokens for samples in gens for g in samples)
    result = {
        "model": label,
        "model_spec": model_info,
        "dataset": opts.dataset,
        "mode": opts.mode,
        "questions": {"used": len(rows), "rejected": len(rejects)},
        "options": {k: v for k, v in vars(opts).items() if k not in ("model", "dataset", "mode")},
        "seconds": seconds,
        "generated_tokens": generated,
        "guard_tokens": sum(g.forced_tokens for samples in gens for g in samples),  # written by --budget-guard
        "tokens_per_s": generated / seconds if seconds > 0 else None,
        "summary": summary,
        "records": [r.to_json() for r in records],
    }
    write_outputs(result, out, plots=opts.plots)
    return result


# ---------------------------------------------------------------------------------------------- outputs


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "—"
    if pct:
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


ROW_COLUMNS = [
    ("n", "n", False),
    ("accuracy", "acc", True),
    ("format_rate", "format", True),
    ("mean_generated_tokens", "mean tok (all)", False),
    ("mean_tokens", "mean tok (solution)", False),
    ("median_tokens", "median tok (solution)", False),
    ("compression", "compression (all tok)", True),
    ("compression_solution", "compression (solution)", True),
    ("mean_budget", "mean budget", False),
    ("adherence_50", "within ±50%", True),
    ("adherence_10", "within ±10%", True),
    ("overrun_rate", "over-run", True),
    ("budget_mape", "MAPE", True),
    ("slope", "slope", False),
    ("r2", "R²", False),
    ("spearman_budget_level", "ρ(budget, level)", False),
]


def markdown_table(rows: list[tuple[str, dict[str, Any]]], first: str = "group") -> str:
    head = "| " + " | ".join([first] + [c[1] for c in ROW_COLUMNS]) + " |"
    sep = "| --- " + "| ---: " * len(ROW_COLUMNS) + "|"
    body = [
        "| " + " | ".join([name] + [_fmt(s.get(k), pct) for k, _, pct in ROW_COLUMNS]) + " |"
        for name, s in rows
    ]
    return "\n".join([head, sep, *body])


def render_report(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [
        f"# sblite eval: {result['model']} on {result['dataset']} ({result['mode']} mode)",
        "",
        f"{s['overall']['n']} samples over {s['overall']['questions']} questions in {result['seconds']:.0f} s "
        f"({_fmt(result['tokens_per_s'])} tok/s).",
        "",
        markdown_table([("overall", s["overall"])], "run"),
        "",
        "## By level",
        "",
        markdown_table(list(s["by_level"].items()), "level"),
    ]
    if "by_prefill_budget" in s:
        lines += [
            "",
            "## Pre-filled budget sweep",
            "",
            markdown_table(list(s["by_prefill_budget"].items()), "budget"),
        ]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict[str, Any], out: Path, *, plots: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    tmp.replace(out / "results.json")
    (out / "report.md").write_text(render_report(result), encoding="utf-8")
    if plots:
        from sblite.eval.plots import plot_eval

        plot_eval(result, out)
