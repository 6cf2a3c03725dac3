"""The reproduction's pre-filled-GRPO extension row, re-run with the fixed pre-fill path; old slope beside new.

    OMP_NUM_THREADS=2 python benchmarks/prefill_grpo.py             # ~50 min on 2 cores
    OMP_NUM_THREADS=2 python benchmarks/prefill_grpo.py --quick     # minutes: checks the script only

Same settings and seed as ``reproduce_cpu.py``'s extension row (SmolLM2-135M, 120 bundled arith questions,
k=4 per style under plain + brief instructions, every correct answer an SFT row, SFT 3 epochs, then 24 GRPO
steps with ``grpo.prefill_fraction=0.5`` over budgets log-uniform in [16, 160]), on the code after the
pre-fill fixes: forced budgets reach ``generate`` as an open assistant turn, SFT sequences keep the pre-fill
boundary, and the reward scores the budget that was forced. Rows: budget SFT and SFT + pre-filled GRPO, each
in self mode and with budgets ``--budgets`` pre-filled (held-out ``arith-test``, greedy), compression against
the plain-prompted base on all generated tokens. The committed ``reproduce_cpu.json`` (before the fixes)
gives the old slopes, printed side by side. The GRPO run's per-step pre-filled share and mean
``|length - forced budget|`` (metrics.jsonl) are copied into the result.
JSON + markdown → benchmarks/results/prefill_grpo.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, prepare_arith_samples, stage_timer, write_json  # noqa: E402

KEYS = ("accuracy", "format_rate", "mean_generated_tokens", "mean_tokens", "compression", "compression_solution",
        "mean_budget", "adherence_50", "slope", "r2", "spearman_budget_level")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/sblite-prefill-grpo")
    ap.add_argument("--train-questions", type=int, default=120)
    ap.add_argument("--eval-questions", type=int, default=80)
    ap.add_argument("-k", type=int, default=4)
    ap.add_argument("--sft-epochs", type=float, default=3.0)
    ap.add_argument("--grpo-steps", type=int, default=24)
    ap.add_argument("--prefill-fraction", type=float, default=0.5)
    ap.add_argument("--prefill-range", default="16,160")
    ap.add_argument("--budgets", default="16,32,64,128")
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "prefill_grpo"))
    args = ap.parse_args()
    if args.quick:
        args.train_questions, args.eval_questions, args.grpo_steps, args.sft_epochs = 10, 8, 2, 1.0
        args.max_new_tokens = 64

    from rich.console import Console

    from sblite.eval.run import EvalOptions, run_eval
    from sblite.recipes import load_recipe
    from sblite.train.run import run_training

    console = Console()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timed, timings = stage_timer(console)
    model, prepared = "builtin:smollm2-135m", work / "prepared"
    prep = timed("prepare", lambda: prepare_arith_samples(
        prepared, limit=args.train_questions, k=args.k, max_new_tokens=args.max_new_tokens, seed=args.seed,
        styles=("plain", "brief"), targets="all", console=console))  # fmt: skip
    lo, hi = (int(x) for x in args.prefill_range.split(","))
    run = work / "run"
    cfg = load_recipe("smollm2-135m", [
        f"data.path={prepared}", f"output_dir={run}", f"sft.num_train_epochs={args.sft_epochs}",
        f"grpo.max_steps={args.grpo_steps}", f"sft.seed={args.seed}", f"grpo.seed={args.seed}",
        "grpo.num_completions_to_print=0", f"grpo.prefill_fraction={args.prefill_fraction}",
        f"grpo.prefill_range=[{lo},{hi}]"])  # fmt: skip
    done = (run / "grpo" / "adapter_config.json").is_file()
    if not done:
        timed("train sft → pre-filled grpo", lambda: run_training(cfg, resume=run.exists(), console=console))

    budgets = [int(b) for b in args.budgets.split(",")]
    common = dict(dataset="arith-test", limit=args.eval_questions, max_new_tokens=args.max_new_tokens,
                  batch_size=16, seed=args.seed, instruction_in_user=True)  # fmt: skip
    timed("eval base", lambda: run_eval(EvalOptions(model=model, out=str(work / "eval-base"), mode="none",
                                                    **common), console))  # fmt: skip
    baseline = str(work / "eval-base" / "results.json")
    rows, sweeps = {}, {}
    for name, stage in (("budget SFT", "sft"), ("SFT + pre-filled GRPO", "grpo")):
        rows[name] = timed(f"eval {stage}", lambda s=stage: run_eval(EvalOptions(
            model=str(run), stage=s, out=str(work / f"eval-{s}"), mode="self", baseline=baseline, **common),
            console))["summary"]["overall"]  # fmt: skip
        sweeps[name] = timed(f"eval {stage} sweep", lambda s=stage: run_eval(EvalOptions(
            model=str(run), stage=s, out=str(work / f"sweep-{s}"), mode="prefill", budgets=budgets,
            baseline=baseline, **common), console))["summary"]  # fmt: skip

    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    per_step = [
        {"step": m["step"], "prefilled_share": m["sblite/prefilled_share"],
         "prefill_abs_err": m.get("sblite/prefill_abs_err"), "reward": m.get("reward"),
         "format_rate": m.get("sblite/format_rate")}
        for m in metrics if m.get("stage") == "grpo" and "sblite/prefilled_share" in m
    ]  # fmt: skip
    old = json.loads((RESULTS / "reproduce_cpu.json").read_text())
    old_ext = old.get("prefill_sweep_prefill_grpo") or {}
    before = {
        "command": old["command"],
        "SFT + GRPO (no pre-fill) slope": old["prefill_slope"],
        "SFT + pre-filled GRPO slope": (old_ext.get("overall") or {}).get("slope"),
        "SFT + pre-filled GRPO mean tokens by budget": {
            b: v["mean_tokens"] for b, v in (old_ext.get("by_prefill_budget") or {}).items()
        },
    }
    result = write_json(Path(args.out).with_suffix(".json"), {
        "benchmark": "prefill_grpo",
        "args": vars(args),
        "timings_s": {**timings, "total": time.perf_counter() - t0},
        "prepared": prep.report.get("counts", prep.report),
        "self": {n: {k: r.get(k) for k in KEYS} for n, r in rows.items()},
        "sweeps": {n: {"slope": s["overall"]["slope"], "r2": s["overall"]["r2"],
                       "adherence_50": s["overall"]["adherence_50"],
                       "by_budget": {b: {k: v[k] for k in ("mean_tokens", "accuracy", "adherence_50")}
                                     for b, v in s["by_prefill_budget"].items()}}
                   for n, s in sweeps.items()},
        "grpo_per_step": per_step,
        "before_fix": before,
    }, default=str)  # fmt: skip

    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}%"

    def num(v):
        return "—" if v is None else f"{v:.3g}"

    md = [
        "# Pre-filled GRPO, re-run after the pre-fill fixes",
        "",
        f"Command: `{result['command']}`; {result['timings_s']['total'] / 60:.0f} min. "
        f"{result['prepared'].get('sft')} SFT rows; {args.eval_questions} held-out arith-test questions, greedy.",
        "",
        "| model | acc | format | mean tok (all) | mean tok (solution) | compression (all) | mean budget | ±50% | "
        "ρ(budget, level) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *[f"| {n} | {pct(r['accuracy'])} | {pct(r['format_rate'])} | {num(r['mean_generated_tokens'])} | "
          f"{num(r['mean_tokens'])} | {pct(r['compression'])} | {num(r['mean_budget'])} | {pct(r['adherence_50'])} | "
          f"{num(r['spearman_budget_level'])} |" for n, r in result["self"].items()],
        "",
        "## Pre-filled budget → mean solution tokens",
        "",
        "| model | " + " | ".join(str(b) for b in budgets) + " | slope | R² | ±50% of forced |",
        "| --- | " + " | ".join("---:" for _ in budgets) + " | ---: | ---: | ---: |",
        *[f"| {n} (now) | " + " | ".join(num(s["by_budget"][str(b)]["mean_tokens"]) for b in budgets)
          + f" | {num(s['slope'])} | {num(s['r2'])} | {pct(s['adherence_50'])} |"
          for n, s in result["sweeps"].items()],
        "| SFT + pre-filled GRPO (before the fix) | "
        + " | ".join(num(before["SFT + pre-filled GRPO mean tokens by budget"].get(str(b))) for b in budgets)
        + f" | {num(before['SFT + pre-filled GRPO slope'])} | — | — |",
        "",
        f"Before the fix (`{before['command']}`): SFT + GRPO slope {num(before['SFT + GRPO (no pre-fill) slope'])}.",
        "",
        "## GRPO per step: share of prompts pre-filled, mean |length − forced budget|",
        "",
        "| step | pre-filled | mean abs err | reward | format |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *[f"| {p['step']} | {pct(p['prefilled_share'])} | {num(p['prefill_abs_err'])} | {num(p['reward'])} | "
          f"{pct(p['format_rate'])} |" for p in per_step],
        "",
    ]  # fmt: skip
    Path(args.out).with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    console.print("\n".join(md), markup=False)


if __name__ == "__main__":
    main()
