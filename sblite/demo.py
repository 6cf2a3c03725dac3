"""``sblite demo``: the whole SelfBudgeter pipeline on SmolLM2-135M and the bundled arithmetic problems.

    make demo                       # = sblite demo --out demo-out

1. prepare   sample k answers per training question from the base model under a step-by-step and a brief
             instruction; every distinct correct answer is an SFT target labelled with its own token length
             (``sblite prepare --labels sample --styles plain,brief --targets all``), and each worked solution
             re-said at six lengths, the reference one as a self row (``--renderings``, ``--self-renderings``)
2. train     budget SFT with budget-stating and budget-reading rows (``sft.budget_stating_rows``,
             ``sft.budget_reading_tokens``/``_samples``/``_prompt``) on batches that compute each shared prompt
             once (``sft.pack_shared_prompts``, ``sft.budget_rows_by_question``), then budget-guided GRPO
             (``sblite train --recipe smollm2-135m``), in bfloat16 where the CPU has it
3. eval      the base model (plain and brief prompting) and the trained model (self-budgeted, and a sweep of
             pre-filled budgets with and without the budget guard) on held-out problems
4. export    merge the adapter, write the recipe's export.quant GGUF (q8_0), verify it (transformers, llama.cpp)
5. generate  answer one question from the GGUF (or the merged model), budget first

Every step is a library call with its own rich progress; the outputs land in one folder with a
``report.md`` holding the comparison table. Defaults are sized to finish in under 15 minutes on two CPU
cores (``benchmarks/results/demo_default.md``: 14 min); ``--quick`` runs a smaller version in a few minutes.

The demo only calls the library's stage functions; it must not hold pipeline logic of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEMO_QUESTION = "Mia has 7 stickers and gets 5 more. How many stickers does Mia have now?"


@dataclass
class DemoOptions:
    out: str = "demo-out"
    model: str = "builtin:smollm2-135m"
    recipe: str = "smollm2-135m"
    #: the reproduction's "our SFT" cold start (benchmarks/reproduce_cpu.py) at the demo's size: the bundled
    #: solutions re-said at six lengths (data.renderings), the reference one as the self row whose budget the
    #: model states (data.self_renderings) with 2 budget-stating copies (sft.budget_stating_rows), and 3-token
    #: budget-reading rows at 30 drawn budgets per question, each with its question's prompt
    #: (sft.budget_reading_tokens/_samples/_prompt), 3 epochs. It fits the demo's time because each batch's
    #: shared prompts are computed once (share_prompts); without that the same cold start (less the reading
    #: prompt) took 24 min (benchmarks/results/demo_candidate_checked.md). The five-rendering cold start before
    #: it bound the pre-fill less (slope 0.65) and not the stated budget (ρ 0.00): demo_before_sharing.md
    train_questions: int = 24
    k: int = 4
    eval_questions: int = 30
    sft_epochs: float = 3.0
    styles: tuple[str, ...] = ("plain", "brief")
    targets: str = "all"
    grpo_steps: int = 3
    renderings: tuple[str, ...] = ("answer", "short", "reference", "stated", "explained", "checked")
    self_renderings: tuple[str, ...] = ("reference",)
    reading_tokens: int = 3
    reading_samples: int = 30
    reading_prompt: bool = True  # sft.budget_reading_prompt: each budget-reading row with its question's prompt
    stating_rows: int = 2
    #: data.stating_questions: budget-stating rows of this many more bundled questions (no sampling). Off: not
    #: yet measured in the demo (benchmarks/results/reproduce_cpu_stating.md: ρ 0.52 → 0.83 at 96, slope
    #: 0.91 → 0.76, SFT 734 s instead of ≈560)
    stating_questions: int = 0
    stating_length: str | None = None  # sft.budget_stating_length (None: the recipe's)
    #: sft.pack_shared_prompts (exact) and, with budget rows, sft.budget_rows_by_question: each batch's shared
    #: prompts computed once (benchmarks/results/sft_packing.json)
    share_prompts: bool = True
    tag_weight: float = 1.0  # sft.budget_tag_weight: a self row's budget tags weigh this much in the SFT loss
    #: None: bfloat16 on a CPU with native bf16 (2.66× per step with tcmalloc: cpu_train_speed.json), else
    #: the recipe's model.dtype
    dtype: str | None = None
    prefill_budgets: tuple[int, ...] = (8, 16, 32, 64, 128)  # the report's pre-fill sweep
    #: also sweep the brief-prompt base's mean length on the sweep's questions (rounded), as
    #: benchmarks/reproduce_cpu.py does: "beats just asking for brevity" then compares at that length, not at
    #: the nearest of prefill_budgets (32 against the brief base's 25 tokens before)
    brief_budget: bool = True
    #: the sweep (and its guarded repeat) runs on the first this-many eval questions: 2 × 5 budgets × 30
    #: questions were 300 of the eval's 420 generations, the most of its 6 min
    sweep_questions: int = 16
    max_new_tokens: int = 160
    quant: str | None = None  # None: the recipe's export.quant
    seed: int = 0
    force: bool = False

    @classmethod
    def quick(cls, **kw) -> DemoOptions:
        return cls(train_questions=8, eval_questions=10, sft_epochs=1.0, grpo_steps=2, max_new_tokens=96,
                   reading_samples=4, prefill_budgets=(16, 64), sweep_questions=10, **kw)


def _native_bf16_or_none() -> str | None:
    """``bfloat16`` on a CPU that runs it natively (no CUDA), else None: the recipe's ``model.dtype``."""
    import torch

    from sblite.backends import cpu_native_bf16

    return "bfloat16" if not torch.cuda.is_available() and cpu_native_bf16() else None


def _stage(console, n: int, total: int, title: str) -> float:
    console.rule(f"[bold]{n}/{total} {title}")
    return time.perf_counter()


def run_demo(opts: DemoOptions, console=None) -> dict[str, Any]:
    """Run every step; returns the summary written to ``OUT/demo.json``."""
    from rich.console import Console

    from sblite.data.prepare import PrepareOptions, run_prepare
    from sblite.eval.metrics import beats_brief, summary_on
    from sblite.eval.plots import plot_frontier
    from sblite.eval.run import EvalOptions, run_eval
    from sblite.logs import progress_bars, quiet_libraries
    from sblite.options import EVAL, EXPORT, PREPARE, resolve
    from sblite.recipes import load_recipe_with_sources
    from sblite.rundir import RunDir
    from sblite.train.run import run_training

    console = console or Console()
    quiet_libraries()
    out = Path(opts.out)
    if out.exists() and any(out.iterdir()) and not opts.force:
        raise FileExistsError(f"{out} is not empty; pass --force to overwrite it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    total = 5
    t_all = time.perf_counter()
    prepared, run = out / "prepared", RunDir(out / "run")
    if run.root.exists():  # only with --force: start over, never resume stages an earlier demo finished
        shutil.rmtree(run.root)
    dtype = opts.dtype or _native_bf16_or_none()
    # the demo's own sizes win; everything else comes from the recipe, as `sblite <command> --recipe` would
    overrides = {
        "data.path": prepared, "output_dir": run, "sft.num_train_epochs": opts.sft_epochs,
        "grpo.max_steps": opts.grpo_steps, "grpo.num_completions_to_print": 1, "model.name_or_path": opts.model,
        **({"data.renderings": f"[{','.join(opts.renderings)}]"} if opts.renderings else {}),
        **({"data.self_renderings": f"[{','.join(opts.self_renderings)}]"} if opts.self_renderings else {}),
        **({"data.stating_questions": opts.stating_questions, "data.limit": opts.train_questions}
           if opts.stating_questions else {}),
        **({"sft.budget_reading_tokens": opts.reading_tokens, "sft.budget_reading_samples": opts.reading_samples,
            # reading rows train in batches of their own, every digit count mixed (train/datasets.py)
            "sft.trl_args.train_sampling_strategy": "group_by_length"} if opts.reading_tokens else {}),
        **({"sft.budget_reading_prompt": True} if opts.reading_prompt else {}),
        **({"sft.budget_stating_rows": opts.stating_rows} if opts.stating_rows else {}),
        **({"sft.pack_shared_prompts": True} if opts.share_prompts else {}),
        **({"sft.budget_rows_by_question": True} if opts.share_prompts and opts.reading_tokens else {}),
        **({"sft.budget_stating_length": opts.stating_length} if opts.stating_length else {}),
        **({"sft.budget_tag_weight": opts.tag_weight} if opts.tag_weight != 1 else {}),
        **({"model.dtype": dtype} if dtype else {}),
    }  # fmt: skip
    recipe, sources = load_recipe_with_sources(opts.recipe, [f"{k}={v}" for k, v in overrides.items()],
                                               labels=dict.fromkeys(overrides, "sblite demo"))
    demo_flags = dict.fromkeys(("dataset", "out", "labels", "limit", "seed", "max_new_tokens", "quant"), "sblite demo")
    settings = {
        "prepare": resolve(PREPARE, dict(dataset="arith", out=str(prepared), labels="sample",
                                         limit=opts.train_questions, seed=opts.seed), recipe, sources, flags=demo_flags),
        "eval": resolve(EVAL, dict(dataset="arith-test", limit=opts.eval_questions, max_new_tokens=opts.max_new_tokens),
                        recipe, sources, flags=demo_flags),
        "export": resolve(EXPORT, dict(quant=opts.quant), recipe, sources, flags=demo_flags),
    }

    t = _stage(console, 1, total, f"prepare: {opts.k} samples × {opts.train_questions} questions from {opts.model}")
    with progress_bars(console) as progress:
        prep = run_prepare(
            PrepareOptions(**settings["prepare"].values, k=opts.k, temperature=0.8, max_new_tokens=opts.max_new_tokens,
                           batch_size=opts.k * 8, force=True, styles=opts.styles, targets=opts.targets,
                           sources=settings["prepare"].sources),
            progress=progress,
        )
    timings["prepare"] = time.perf_counter() - t
    console.print(f"prepared: {prep.sft} SFT rows, {prep.grpo} GRPO prompts")

    t = _stage(console, 2, total, "train: budget SFT → budget-guided GRPO")
    run_training(recipe, console=console)
    timings["train"] = time.perf_counter() - t

    e = settings["eval"]
    t = _stage(console, 3, total, f"eval: base vs trained on {e['limit']} held-out problems")
    common = {k: v for k, v in e.values.items() if k != "mode"}  # each row below picks its own mode
    common.update(seed=opts.seed, instruction_in_user=recipe.model.instruction_in_user, sources=e.sources)
    base = run_eval(EvalOptions(model=opts.model, out=str(out / "eval-base"), mode="none", **common), console)
    baseline = str(out / "eval-base" / "results.json")
    brief = run_eval(EvalOptions(model=opts.model, out=str(out / "eval-base-brief"), mode="none", style="brief",
                                 baseline=baseline, **common), console)
    sft = run_eval(EvalOptions(model=str(run), stage="sft", out=str(out / "eval-sft"), mode="self",
                               baseline=baseline, **common), console)
    trained = run_eval(EvalOptions(model=str(run), out=str(out / "eval-trained"), mode="self",
                                   baseline=baseline, **common), console)
    brief_b = brief_length_budget(opts, brief)
    budgets = sorted({*opts.prefill_budgets, *([brief_b] if brief_b else [])})
    swept = {**common, "budgets": budgets, "limit": min(opts.sweep_questions, e["limit"])}
    sweep = run_eval(EvalOptions(model=str(run), out=str(out / "eval-prefill"), mode="prefill", baseline=baseline,
                                 **swept), console)
    guarded = run_eval(EvalOptions(model=str(run), out=str(out / "eval-prefill-guard"), mode="prefill",
                                   baseline=baseline, **{**swept, "budget_guard": "band"}), console)
    # the points on the sweep's questions (its first `swept["limit"]`), so every marker and curve counts the same ones
    qids = {r["qid"] for r in sweep["records"]}
    frontier = plot_frontier({"base (plain prompt)": summary_on(base["records"], qids),
                              "base (brief prompt)": summary_on(brief["records"], qids),
                              "SFT + GRPO (own budget)": summary_on(trained["records"], qids)},
                             {"SFT + GRPO": sweep["summary"], "SFT + GRPO · guard band": guarded["summary"]},
                             out / "frontier.png",
                             f"accuracy vs tokens · {opts.model} · arith-test ({len(qids)} questions)")  # fmt: skip
    timings["eval"] = time.perf_counter() - t

    x = settings["export"]
    t = _stage(console, 4, total, f"export: merge → GGUF {x['quant']} → verify")
    exported = _export(run.root, out / "export", x, console)
    timings["export"] = time.perf_counter() - t

    t = _stage(console, 5, total, "generate: one answer, budget first")
    answer = _generate(exported, console)
    timings["generate"] = time.perf_counter() - t

    timings["total"] = time.perf_counter() - t_all
    summary = {
        "options": vars(opts),
        "dtype": recipe.model.dtype,  # what trained: opts.dtype, else bfloat16 where native, else the recipe's
        "settings": {name: s.to_json() for name, s in settings.items()},
        "timings_s": timings,
        "prepared": prep.report.get("counts", {}),
        "base": base["summary"]["overall"],
        "base_brief": brief["summary"]["overall"],
        "sft": sft["summary"]["overall"],
        "trained": trained["summary"]["overall"],
        "trained_by_level": trained["summary"]["by_level"],
        "prefill_sweep": sweep["summary"],
        "prefill_sweep_guarded": guarded["summary"],
        "beats_brief": beats_brief(summary_on(brief["records"], qids), sweep["summary"]),
        "brief_budget": brief_b,  # the budget the sweep added at the brief base's length (None: not added)
        "frontier_plot": str(frontier),
        "export": exported,
        "generate": answer,
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "ld_preload": os.environ.get("LD_PRELOAD") or None,  # a malloc such as tcmalloc changes the timings
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    (out / "report.md").write_text(render_demo_report(summary, base, brief, sft, trained, sweep, guarded), encoding="utf-8")
    return summary


def _export(run_dir: Path, out: Path, settings, console) -> dict[str, Any]:
    """Merge the run, write the GGUF and verify it (transformers, and llama.cpp when installed), as the
    recipe's ``export:`` section says."""
    from sblite.export import export_gguf, result_json

    with console.status("exporting…") as status:
        result = export_gguf(str(run_dir), str(out), quant=settings["quant"], ollama=settings["ollama"],
                             verify=settings["verify"], dtype=settings["dtype"], force=True,
                             log=lambda m: status.update(m), settings=settings.to_json())
    info = result_json(result)
    v = info.get("verification") or {}
    tf, lc = v.get("transformers") or {}, v.get("llama_cpp")
    parts = [f"passed={v.get('passed')}"]
    if tf:
        parts.append(f"transformers {tf.get('metric')}={tf.get(tf.get('metric'), float('nan')):.2e}")
    if isinstance(lc, dict):
        parts.append(f"llama.cpp tokens match={lc.get('tokenization_match')}, greedy match={lc.get('greedy_match')}")
    elif lc:
        parts.append(str(lc))
    console.print(f"wrote {info['gguf']} ({info['bytes'] / 2**20:.1f} MiB); verification: " + "; ".join(parts))
    return info


def _generate(exported: dict[str, Any], console) -> dict[str, Any]:
    """Answer ``DEMO_QUESTION`` from the exported GGUF (llama.cpp when installed, else transformers)."""
    import threading

    from rich.live import Live

    from sblite.generate import llamacpp
    from sblite.generate.loading import load_gguf_tokenizer, load_gguf_with_transformers, resolve_gguf
    from sblite.generate.stream import render_live, stream_answer, stream_answer_llamacpp, summary_line

    spec = resolve_gguf(exported["gguf"])
    tok = load_gguf_tokenizer(spec)
    kwargs = dict(max_new_tokens=160, instruction_in_user=spec.instruction_in_user, stop_event=threading.Event())
    if llamacpp.available():
        stream = stream_answer_llamacpp(spec.path, tok, DEMO_QUESTION, **kwargs)
        source = f"{spec.path} (llama.cpp)"
    else:
        stream = stream_answer(load_gguf_with_transformers(spec), tok, DEMO_QUESTION, **kwargs)
        source = f"{spec.path} (transformers; `make llamacpp` adds llama.cpp)"
    console.print(f"answering from {source}")
    state = None
    with Live(console=console, refresh_per_second=12) as live:
        for state in stream:
            live.update(render_live(state, DEMO_QUESTION))
    console.print(summary_line(state), highlight=False)
    return {"source": source, "question": DEMO_QUESTION, **state.to_json()}


def brief_length_budget(opts: DemoOptions, brief: dict[str, Any]) -> int | None:
    """With ``opts.brief_budget``, the budget the sweep adds: the brief-prompt base's (``brief``, a results dict)
    mean generated tokens on the sweep's questions (``eval.metrics.length_budget``); else None.

    >>> rec = lambda q, n: {"qid": q, "sample": 0, "correct": False, "format_ok": False, "length": n, "mode": "none"}
    >>> brief = {"records": [rec("a", 20), rec("b", 31), rec("c", 90)]}
    >>> brief_length_budget(DemoOptions(sweep_questions=2), brief), brief_length_budget(DemoOptions(brief_budget=False), brief)
    (26, None)
    """
    from sblite.eval.metrics import length_budget

    return length_budget(brief["records"], opts.sweep_questions) if opts.brief_budget else None


def _beats_brief_line(x: dict[str, Any]) -> str:
    verdict = "as accurate or more: it beats" if x["beats"] else "less accurate: it does not beat"
    return (f"Against just asking for brevity, on the same {x['questions']} problems: the brief-prompt base is "
            f"right on {_pct(x['brief_accuracy'])} at {_fmt(x['brief_tokens'])} generated tokens; pre-filled "
            f"with {x['budget']} (the budget whose answers come nearest that length) the trained model is right on "
            f"{_pct(x['accuracy'])} at {_fmt(x['tokens'])} tokens, {verdict} the brief prompt at that length.")  # fmt: skip


def _brief_budget_note(summary: dict[str, Any]) -> str:
    if not (n := summary.get("brief_budget")):
        return ""
    return f" Budget {n} is the brief-prompt base's mean length on these problems, where \"beats brief\" compares."


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3g}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f}%"


def _cold_start_line(o: dict[str, Any], dtype: str) -> str:
    """What the budget SFT trained on, in the report's words."""
    line = (f"Budget SFT: {o['train_questions']} questions, the base model's own correct answers (k={o['k']}, "
            f"styles {', '.join(o['styles'])})")
    own = o.get("self_renderings") or ()
    if pre := [v for v in o["renderings"] if v not in own]:
        line += f", each worked solution re-said as {', '.join(pre)} (pre-filled rows, `data.renderings`)"
    if own:
        line += (f", {'and ' * (not pre)}each worked solution as {', '.join(own)} with its length as the budget the "
                 "model states (self rows, `data.self_renderings`)")
    if o.get("stating_rows"):
        line += (f", {o['stating_rows']} copies of each self row cut after its budget, loss on the budget only "
                 "(`sft.budget_stating_rows`)")
    if o.get("stating_questions"):
        line += (f", the budget-stating rows of {o['stating_questions']} more questions, not sampled "
                 "(`data.stating_questions`)")
    if o.get("tag_weight", 1) != 1:
        line += f", each self row's budget weighing {o['tag_weight']:g}× in the loss (`sft.budget_tag_weight`)"
    if o["reading_tokens"]:
        line += (f", and budget-reading rows ({o['reading_tokens']} solution tokens each, {o['reading_samples']} "
                 "drawn budgets per question: `sft.budget_reading_tokens`, `sft.budget_reading_samples`"
                 + (", each with its question's prompt: `sft.budget_reading_prompt`" * bool(o.get("reading_prompt")))
                 + ")")
    if o.get("share_prompts"):
        line += (", batches packed with their shared prompts computed once, budget rows ordered by question "
                 "(`sft.pack_shared_prompts`, `sft.budget_rows_by_question`)")
    epochs, steps = o["sft_epochs"], o["grpo_steps"]
    line += f"; {epochs:g} epoch{'s' * (epochs != 1)}, then {steps} GRPO step{'s' * (steps != 1)}"
    return line + f", in {dtype}."


def _swept(summary: dict[str, Any]) -> int:
    """How many questions each pre-filled budget of the report's sweep ran on."""
    return next(iter(summary["prefill_sweep"]["by_prefill_budget"].values()))["questions"]


def render_demo_report(
    summary: dict[str, Any], base: dict, brief: dict, sft: dict, trained: dict, sweep: dict, guarded: dict
) -> str:
    from sblite.eval.run import markdown_table

    t = summary["timings_s"]
    lines = [
        f"# sblite demo: SelfBudgeter on {summary['options']['model']} (CPU)",
        "",
        f"Total {t['total'] / 60:.1f} min: " + ", ".join(f"{k} {v:.0f} s" for k, v in t.items() if k != "total") + ".",
        "",
        _cold_start_line(summary["options"], summary["dtype"]),
        "",
        "## Base model vs SelfBudgeter (held-out arithmetic problems)",
        "",
        markdown_table([("base (plain prompt)", base["summary"]["overall"]),
                        ("base (brief prompt)", brief["summary"]["overall"]),
                        ("budget SFT (self budget)", sft["summary"]["overall"]),
                        ("SFT + GRPO (self budget)", trained["summary"]["overall"])], "model"),
        "",
        "## SelfBudgeter by level",
        "",
        markdown_table(list(trained["summary"]["by_level"].items()), "level"),
        "",
        "Compression is against the plain prompt; the brief-prompt row is what asking for short answers buys "
        "without training.",
        "",
        "## Pre-filled budgets: does the budget set the length?",
        "",
        f"Each row forces `<budget>N</budget><solution>` on each of the first {_swept(summary)} held-out problems; `slope` is the OLS slope of solution "
        "length on N (1.0 = the length follows the budget), `±50%` the share within half of N either way."
        + _brief_budget_note(summary),
        "",
        markdown_table([(f"budget {b}", o) for b, o in sweep["summary"]["by_prefill_budget"].items()], "pre-filled"),
        "",
        f"Slope of length on the pre-filled budget: {_fmt(sweep['summary']['overall']['slope'])}, "
        f"R² {_fmt(sweep['summary']['overall']['r2'])}; within ±50% of the forced budget: "
        f"{_pct(sweep['summary']['overall']['adherence_50'])}.",
        "",
        _beats_brief_line(summary["beats_brief"]),
        "",
        "## The same sweep with the budget guard (`--budget-guard band`)",
        "",
        "The guard enforces the budget while decoding (sblite/generate/guard.py): it lands the solution by N "
        "(writing `\\boxed{` if no answer is there yet) and does not let it end before 0.6 × N. The length then "
        "follows the budget by construction; what it costs is the accuracy column.",
        "",
        markdown_table([(f"budget {b}", o) for b, o in guarded["summary"]["by_prefill_budget"].items()],
                       "pre-filled, guarded"),
        "",
        f"Slope {_fmt(guarded['summary']['overall']['slope'])}, R² {_fmt(guarded['summary']['overall']['r2'])}; "
        f"within ±50%: {_pct(guarded['summary']['overall']['adherence_50'])}; accuracy "
        f"{_pct(guarded['summary']['overall']['accuracy'])} (unguarded {_pct(sweep['summary']['overall']['accuracy'])}).",
        "",
        "Frontier (accuracy vs generated tokens; baselines as points, each pre-fill sweep as a curve, all on the "
        "sweep's questions): `frontier.png`.",
        "",
        "Plots: `eval-trained/budget_vs_length.png`, `eval-trained/by_level.png`, `eval-base/by_level.png`, "
        "`eval-prefill/prefill_sweep.png`.",
        "",
        "## Answer from the exported model",
        "",
        f"Source: {summary['generate']['source']}",
        "",
        "```",
        summary["generate"]["text"],
        "```",
        "",
    ]
    return "\n".join(lines)
