"""Which budget SFT makes a pre-filled budget set the length? Cold-start variants, one run, same data and seed.

    OMP_NUM_THREADS=2 python benchmarks/cold_start.py --train 40 --test 24   # see results/cold_start.json
    OMP_NUM_THREADS=2 python benchmarks/cold_start.py --quick                # a smoke run; numbers mean nothing

Budget SFT of SmolLM2-135M-Instruct on ``--train`` bundled arithmetic questions, each worked solution rendered
at the ``synthetic.VERBOSITY`` levels (bare answer → every step explained and checked, budget = the true
token length), then greedy generation on ``--test`` held-out ``arith-test`` questions in self mode and with
each ``--budgets`` value pre-filled. Variants (``--variants``):

- ``self-all``: every rendering is an ordinary SFT row, its budget a target the model learns to state;
- ``prefilled``: the reference rendering is the ordinary row (what the model states in self mode), and every
  rendering is also a *pre-filled* row (``prefilled: true``): its budget is context, only the solution is
  learned — the situation of a user who pre-fills a budget (``data.renderings`` in a recipe);
- ``reading``: ``prefilled`` plus ``sft.budget_reading_tokens`` (``--reading-tokens``): every row also trains
  its prompt-less ``<budget>N</budget><solution>`` + first K solution tokens, the one choice the number makes;
  batches grouped by length (``train_sampling_strategy: group_by_length``) so the short rows cost little;
- ``reading-draws``: ``reading`` plus ``sft.budget_reading_samples`` (``--reading-samples``): per question, more
  reading rows at budgets drawn across its range, each reading into the rendering nearest in ratio — the
  labels alone show each style only at its own few exact numbers;
- ``reading-phase``: ``reading-draws`` with ``sft.budget_reading_epochs`` (``--reading-epochs``): the reading rows
  are trained after the full rows, alone, instead of mixed in.

``--levels`` picks the renderings. The default drops ``checked``: it opens with the same words as
``explained``, so the number would have to decide ~60 tokens into the solution, where no short row reaches.

Reported per variant: mean solution tokens per pre-filled budget (``protocol.count_solution_tokens``), the
OLS slope and R² of length on the forced budget, the share within ±50% of it, accuracy, and self mode's
budget, length, ±50% adherence and ρ(budget, level). JSON + markdown → benchmarks/results/cold_start.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, eval_self_and_sweep, write_json, write_rendered_arith  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def first_token_shift(run_dir: Path, n_test: int, low: int, high: int) -> dict:
    """Does the model read the number at all? For each test question, the next-token distribution right after
    ``<budget>low</budget><solution>`` vs ``<budget>high</budget><solution>``: their total-variation distance
    (0 = the budget changes nothing, 1 = disjoint) and how often the most likely first token differs."""
    import torch

    from sblite import protocol
    from sblite.eval.run import load_questions
    from sblite.generate.loading import load_model, resolve_model_spec

    spec = resolve_model_spec(str(run_dir))
    model, tok = load_model(spec, dtype="float32", device="cpu")
    questions = load_questions("arith-test", limit=n_test)
    tv, flips = [], 0
    for q in questions:
        dists = []
        for b in (low, high):
            prompt = protocol.render_prompt(tok, q["question"], budget=b, instruction_in_user=spec.instruction_in_user)
            with torch.no_grad():
                logits = model(torch.tensor([protocol.encode_prompt(tok, prompt)])).logits[0, -1]
            dists.append(logits.float().softmax(-1))
        tv.append(0.5 * float((dists[0] - dists[1]).abs().sum()))
        flips += int(dists[0].argmax() != dists[1].argmax())
    return {"budgets": [low, high], "mean_tv": sum(tv) / len(tv), "argmax_differs": flips / len(tv)}


def evaluate(run_dir: Path, work: Path, n_test: int, budgets: list[int], max_new: int) -> dict:
    return eval_self_and_sweep(run_dir, work, n_test, budgets, max_new) | {
        "first_token_shift": first_token_shift(run_dir, n_test, min(budgets), max(budgets)),
    }


def write_results(out: Path, args, budgets: list[int], lengths: dict, results: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), {
        "benchmark": "cold_start",
        "what": "pre-filled budget → mean solution tokens after budget SFT on every rendering of each question",
        "settings": {k: v for k, v in vars(args).items() if k not in ("work", "out")},
        "data": lengths,
        "variants": results,
    })  # fmt: skip
    lines = [
        "# Cold-start variants: does a pre-filled budget set the length?",
        "",
        f"SmolLM2-135M-Instruct, budget SFT on {args.train} arith questions × renderings {args.levels} "
        f"({args.epochs:g} epochs, lr {args.lr:g}, seed {args.seed}); greedy on {args.test} arith-test questions.",
        "",
        "| variant | SFT rows | " + " | ".join(f"pre-fill {b}" for b in budgets)
        + " | slope | R² | ±50% of forced | acc (pre-filled) | self: budget → tokens | self ±50% | self acc "
        + f"| first-token TV {min(budgets)} vs {max(budgets)} | SFT min |",
        "| --- | ---: | " + " | ".join("---:" for _ in budgets) + " | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v, r in results.items():
        cells = [f"{r['prefill'][b]['mean_tokens']:.1f}" for b in budgets]
        s = r["self"]
        lines.append(
            f"| {v} | {lengths[v]['sft_rows']} | " + " | ".join(cells) + f" | {r['prefill_slope']:.3f} | "
            f"{r['prefill_r2']:.3f} | {100 * r['prefill_adherence_50']:.0f}% | {100 * r['prefill_accuracy']:.0f}% | "
            f"{s['mean_budget'] or 0:.1f} → {s['mean_tokens']:.1f} | {100 * (s['adherence_50'] or 0):.0f}% | "
            f"{100 * s['accuracy']:.0f}% | {r['first_token_shift']['mean_tv']:.3f} | {r['seconds']['train'] / 60:.1f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/sblite-cold-start")
    ap.add_argument("--train", type=int, default=40)
    ap.add_argument("--test", type=int, default=24)
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--budgets", default="8,16,32,64,128")
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="reading,prefilled")
    ap.add_argument("--levels", default="answer,reference,steps,stated,explained",
                    help="synthetic.VERBOSITY renderings per question")
    ap.add_argument("--reading-tokens", type=int, default=3, help="sft.budget_reading_tokens of `reading`")
    ap.add_argument("--reading-samples", type=int, default=20, help="sft.budget_reading_samples of `reading-draws`")
    ap.add_argument("--reading-epochs", type=float, default=3.0, help="sft.budget_reading_epochs of `reading-phase`")
    ap.add_argument("--quick", action="store_true", help="6 questions, 1 epoch, 4 test questions")
    ap.add_argument("--out", default=str(RESULTS / "cold_start"))
    args = ap.parse_args()
    unknown = set(args.variants.split(",")) - {"self-all", "prefilled", "reading", "reading-draws", "reading-phase"}
    if unknown:
        ap.error(f"--variants: unknown {', '.join(sorted(unknown))}; choose from self-all, prefilled, reading, reading-draws, reading-phase")
    if args.quick:
        args.train, args.test, args.epochs, args.max_new_tokens = 6, 4, 1.0, 48
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer

    import sblite.train.run as train
    from sblite.models import resolve_model
    from sblite.recipes import load_recipe

    def switches(variant: str) -> list[str]:
        if not variant.startswith("reading"):
            return []
        draws = [f"sft.budget_reading_samples={args.reading_samples}"] if variant != "reading" else []
        if variant == "reading-phase":
            draws.append(f"sft.budget_reading_epochs={args.reading_epochs}")
        return [f"sft.budget_reading_tokens={args.reading_tokens}", "sft.trl_args.train_sampling_strategy=group_by_length",
                *draws]  # fmt: skip

    work = Path(args.work)
    budgets = [int(b) for b in args.budgets.split(",")]
    levels = args.levels.split(",")
    tok = AutoTokenizer.from_pretrained(resolve_model("builtin:smollm2-135m"))
    results, lengths = {}, {}
    for variant in args.variants.split(","):
        t0 = time.perf_counter()
        data = work / f"data-{variant}"
        data.mkdir(parents=True, exist_ok=True)
        means, n_sft = write_rendered_arith(data, tok, args.train, args.seed, levels, prefilled=variant != "self-all")
        lengths[variant] = means | {"sft_rows": n_sft}
        print(f"{variant}: rendering lengths {lengths[variant]}", flush=True)
        run_dir = work / f"run-{variant}"
        cfg = load_recipe("smollm2-135m", ["stages=[sft]", f"data.path={data}", f"output_dir={run_dir}",
                                          f"sft.num_train_epochs={args.epochs}", f"sft.learning_rate={args.lr}",
                                          f"sft.seed={args.seed}", *switches(variant)])  # fmt: skip
        train.run_training(cfg, resume=(run_dir / "sft" / "adapter_config.json").is_file())
        t_train = time.perf_counter() - t0
        results[variant] = evaluate(run_dir, work / f"eval-{variant}", args.test, budgets, args.max_new_tokens)
        results[variant]["seconds"] = {"train": t_train, "total": time.perf_counter() - t0}
        print(f"{variant}: {json.dumps(results[variant])}", flush=True)
        write_results(Path(args.out), args, budgets, lengths, results)  # after each variant: a stopped run keeps its rows



if __name__ == "__main__":
    main()
