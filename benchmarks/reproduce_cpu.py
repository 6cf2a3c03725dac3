"""Reproduce SelfBudgeter's claims on this CPU: SmolLM2-135M on graded arithmetic, with two ablations.

    OMP_NUM_THREADS=2 python benchmarks/reproduce_cpu.py                 # ≤ 2 hours on 2 cores
    OMP_NUM_THREADS=2 python benchmarks/reproduce_cpu.py --quick         # minutes: a smoke test of the script

The paper-style table for base / budget SFT / SFT + GRPO, and GRPO ablations from the same SFT adapter:

- ``no_budget_penalty``: ``reward.r_b = 0`` (budgets above ``b_max`` cost nothing);
- ``fixed_alpha``: ``reward.alpha_schedule = constant`` at ``--fixed-alpha`` (default 1.0) instead of 6.0 → 0.1;
- extension ``prefill_grpo`` (not in the paper): ``grpo.prefill_fraction`` of the GRPO prompts carry a forced
  budget, so the budget reward pays for obeying it; it gets its own pre-filled sweep.

Cold-start data (``--styles plain,brief --targets all``, the default here): the base model is sampled under its
plain step-by-step instruction *and* a brief one; every distinct correct answer becomes an SFT row labelled
with its own length, so the same question is seen with short and long budgets (the paper samples plain only,
one target per question: ``--styles plain --targets shortest``). Compression is measured against the plain
prompt; the ``base (brief prompt)`` row shows what prompting alone buys, so the trained model must beat it.

Columns: accuracy, mean solution tokens, compression vs the base model's plain answers on the same questions,
adherence within ±50% / ±10% of the model's own budget, slope and R² of length on the budget, Spearman of the
budget with the level; a pre-filled budget sweep on the full model gives the "budgets obeyed" slope. Every
run is a library call of the CLI's own functions; the work dir keeps all outputs (prepare resumes its cache).
Results: benchmarks/results/reproduce_cpu.{json,md} and PNG plots, with the exact command and seeds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import prepare_arith_samples, stage_timer, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {
    "compression": ">= 0.50 at <= 1 point accuracy loss",
    "adherence_50": ">= 0.90",
    "spearman_budget_level": ">= 0.5",
    "prefill_slope": "0.8 - 1.2",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/sblite-reproduce")
    ap.add_argument("--train-questions", type=int, default=120)
    ap.add_argument("--eval-questions", type=int, default=80)
    ap.add_argument("-k", type=int, default=4)
    ap.add_argument("--sft-epochs", type=float, default=3.0)
    ap.add_argument("--grpo-steps", type=int, default=24)
    ap.add_argument("--fixed-alpha", type=float, default=1.0)
    ap.add_argument("--prefill-fraction", type=float, default=0.5,
                    help="the extension run: share of GRPO prompts with a forced budget (0 skips it)")
    ap.add_argument("--budgets", default="16,32,64,128")
    ap.add_argument("--styles", default="plain,brief", help="prepare's sampling instructions (plain = the paper's)")
    ap.add_argument("--targets", default="all", help="prepare's SFT targets: shortest | all correct responses")
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny settings: checks the script, not the method")
    ap.add_argument("--out", default=str(RESULTS / "reproduce_cpu"))
    args = ap.parse_args()
    if args.quick:
        args.train_questions, args.eval_questions, args.grpo_steps, args.sft_epochs = 10, 10, 2, 1.0
        args.max_new_tokens = 64

    from rich.console import Console

    from sblite.eval.run import EvalOptions, markdown_table, run_eval
    from sblite.recipes import load_recipe
    from sblite.train.run import run_training

    console = Console()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timed, timings = stage_timer(console)

    model = "builtin:smollm2-135m"
    prepared = work / "prepared"
    prep = timed("prepare", lambda: prepare_arith_samples(
        prepared, limit=args.train_questions, k=args.k, max_new_tokens=args.max_new_tokens, seed=args.seed,
        styles=args.styles.split(","), targets=args.targets, console=console, force=True))

    def train(name: str, extra: list[str]) -> Path:
        run = work / name
        if (run / ("grpo" if "stages=[sft]" not in extra else "sft") / "adapter_config.json").is_file():
            return run  # finished earlier: the work dir doubles as a cache
        cfg = load_recipe("smollm2-135m", [
            f"data.path={prepared}", f"output_dir={run}", f"sft.num_train_epochs={args.sft_epochs}",
            f"grpo.max_steps={args.grpo_steps}", f"sft.seed={args.seed}", f"grpo.seed={args.seed}",
            "grpo.num_completions_to_print=0", *extra])
        run_training(cfg, resume=run.exists(), console=console)
        return run

    full = timed("train sft+grpo", lambda: train("full", []))
    sft_adapter = full / "sft"
    ablations = {
        "no_budget_penalty": ["reward.r_b=0"],
        "fixed_alpha": ["reward.alpha_schedule=constant", f"reward.alpha_start={args.fixed_alpha}",
                        f"reward.alpha_end={args.fixed_alpha}"],
        # not in the paper: half the GRPO prompts carry a forced budget, so obeying one is rewarded directly
        "prefill_grpo": [f"grpo.prefill_fraction={args.prefill_fraction}", "grpo.prefill_range=[16,160]"],
    }
    if args.prefill_fraction <= 0:
        del ablations["prefill_grpo"]
    ablation_runs = {
        name: timed(f"train ablation {name}", lambda o=over, n=name: train(
            n, ["stages=[grpo]", f"model.adapter={sft_adapter}", *o]))
        for name, over in ablations.items()
    }

    common = dict(dataset="arith-test", limit=args.eval_questions, max_new_tokens=args.max_new_tokens,
                  batch_size=16, seed=args.seed, instruction_in_user=True)
    evals: dict[str, dict] = {}
    evals["base"] = timed("eval base", lambda: run_eval(
        EvalOptions(model=model, out=str(work / "eval-base"), mode="none", **common), console))
    baseline = str(work / "eval-base" / "results.json")
    evals["base (brief prompt)"] = timed("eval base brief", lambda: run_eval(
        EvalOptions(model=model, out=str(work / "eval-base-brief"), mode="none", style="brief", baseline=baseline,
                    **common), console))
    evals["sft"] = timed("eval sft", lambda: run_eval(
        EvalOptions(model=str(full), stage="sft", out=str(work / "eval-sft"), mode="self", baseline=baseline,
                    **common), console))
    evals["sft+grpo"] = timed("eval sft+grpo", lambda: run_eval(
        EvalOptions(model=str(full), out=str(work / "eval-full"), mode="self", baseline=baseline, **common), console))
    for name, run in ablation_runs.items():
        evals[("extension: " if name == "prefill_grpo" else "ablation: ") + name] = timed(f"eval {name}", lambda r=run, n=name: run_eval(
            EvalOptions(model=str(r), out=str(work / f"eval-{n}"), mode="self", baseline=baseline, **common), console))
    budgets = [int(b) for b in args.budgets.split(",")]
    sweep = timed("eval prefill sweep", lambda: run_eval(
        EvalOptions(model=str(full), out=str(work / "eval-sweep"), mode="prefill", budgets=budgets,
                    baseline=baseline, **common), console))
    sweep_ext = None
    if "prefill_grpo" in ablation_runs:
        sweep_ext = timed("eval prefill sweep (prefill_grpo)", lambda: run_eval(
            EvalOptions(model=str(ablation_runs["prefill_grpo"]), out=str(work / "eval-sweep-prefill_grpo"),
                        mode="prefill", budgets=budgets, baseline=baseline, **common), console))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for src, name in ((work / "eval-full" / "budget_vs_length.png", "budget_vs_length.png"),
                      (work / "eval-full" / "by_level.png", "by_level_sft_grpo.png"),
                      (work / "eval-base" / "by_level.png", "by_level_base.png"),
                      (work / "eval-sweep" / "prefill_sweep.png", "prefill_sweep.png")):
        if src.is_file():
            shutil.copy(src, out / name)
    full_sum = evals["sft+grpo"]["summary"]
    result = {
        "benchmark": "reproduce_cpu",
        "args": vars(args),
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        "timings_s": {**timings, "total": time.perf_counter() - t0},
        "prepared": prep.report.get("counts", prep.report),
        "table": {name: e["summary"]["overall"] for name, e in evals.items()},
        "by_level": {name: e["summary"]["by_level"] for name, e in evals.items()},
        "prefill_sweep": sweep["summary"],
        "prefill_slope": sweep["summary"]["overall"]["slope"],
        "prefill_sweep_prefill_grpo": sweep_ext["summary"] if sweep_ext else None,
        "targets": TARGETS,
        "reached": {
            "compression": full_sum["overall"].get("compression"),
            "accuracy_delta": full_sum["overall"].get("accuracy_delta"),
            "adherence_50": full_sum["overall"]["adherence_50"],
            "spearman_budget_level": full_sum["overall"]["spearman_budget_level"],
            "prefill_slope": sweep["summary"]["overall"]["slope"],
        },
    }
    result = write_json(out.with_suffix(".json"), result, default=str)
    md = [
        "# SelfBudgeter on SmolLM2-135M (CPU reproduction)",
        "",
        f"Command: `{result['command']}` (OMP_NUM_THREADS={result['omp_threads']}, seed {args.seed}); "
        f"{result['timings_s']['total'] / 60:.0f} min.",
        f"Training data: bundled `arith` ({args.train_questions} questions, k={args.k} samples per style "
        f"({args.styles}), T=0.8, SFT targets: {args.targets}; {result['prepared'].get('sft')} SFT rows from "
        f"{result['prepared'].get('sft_questions')} questions); "
        f"evaluation: `arith-test` ({args.eval_questions} held-out questions, greedy).",
        "",
        markdown_table([(n, e["summary"]["overall"]) for n, e in evals.items()], "model"),
        "",
        "## SFT + GRPO by level",
        "",
        markdown_table(list(full_sum["by_level"].items()), "level"),
        "",
        "## Pre-filled budgets (SFT + GRPO)",
        "",
        markdown_table(list(sweep["summary"]["by_prefill_budget"].items()), "budget"),
        "",
        f"Slope of length on the pre-filled budget: {sweep['summary']['overall']['slope']}",
        "",
        *([
            "## Pre-filled budgets (extension: GRPO with pre-filled budgets)",
            "",
            markdown_table(list(sweep_ext["summary"]["by_prefill_budget"].items()), "budget"),
            "",
            f"Slope of length on the pre-filled budget: {sweep_ext['summary']['overall']['slope']}",
            "",
        ] if sweep_ext else []),
        "## Targets",
        "",
        "| metric | target | reached |",
        "| --- | --- | --- |",
        *[f"| {k} | {TARGETS.get(k, '')} | {v} |" for k, v in result["reached"].items()],
        "",
    ]
    (out.with_suffix(".md")).write_text("\n".join(md))
    console.print("\n".join(md), markup=False)


if __name__ == "__main__":
    main()
