"""Does a pre-filled budget steer the length? The pre-fill token boundary, before and after the fix.

    OMP_NUM_THREADS=2 python benchmarks/prefill_boundary.py --train 50  # see results/prefill_boundary.json for the time
    OMP_NUM_THREADS=2 python benchmarks/prefill_boundary.py --quick    # a smoke run; numbers mean nothing

Budget SFT of SmolLM2-135M-Instruct on ``--train`` bundled arithmetic questions, each rendered at the four
``LEVELS`` of the same worked solution (budget = its true token length, so the budget is
the only thing that tells the renderings apart), then greedy generation on ``--test`` held-out ``arith-test``
questions in self mode and with each ``--budgets`` value pre-filled. Two cold starts, same data, seed and
settings, one run:

- ``whole`` (before the fix): SFT through TRL's conversational prompt/completion path, the way sblite fed it
  before — the training sequence is tokenized whole, so SmolLM2 merges ``<solution>``'s ``>`` with the next
  characters (``'>\\'`` before ``\\boxed``) while a pre-filled prompt ends in a lone ``'>'``;
- ``split`` (sblite now): ``protocol.encode_training_example``: the tags apart from the solution, so the
  pre-filled prompt is token for token the start of a training sequence.

Reported per variant: mean solution tokens per pre-filled budget (``protocol.count_solution_tokens``), the
OLS slope and R² of length on the forced budget, the share within ±50% of it, and self mode's budget and
length; plus how many training sequences start with the pre-filled prompt's ids under each tokenization.
JSON + markdown → benchmarks/results/prefill_boundary.{json,md}.
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

#: the four renderings the committed result used (``synthetic.VERBOSITY`` has grown since)
LEVELS = ("answer", "reference", "steps", "explained")
REPO = Path(__file__).resolve().parent.parent


def old_build_sft_dataset(rows, cfg, tokenizer):
    """sblite's SFT dataset before the fix (conversational; TRL tokenizes prompt + completion whole)."""
    from datasets import Dataset

    from sblite import protocol

    return Dataset.from_list(
        [
            {
                "prompt": protocol.build_messages(r["question"], instruction_in_user=cfg.model.instruction_in_user),
                "completion": [{"role": "assistant", "content": r["completion"]}],
            }
            for r in rows
        ]
    )


def boundary_counts(sft_rows, tok, instruction_in_user: bool) -> dict:
    """How many training sequences start with the pre-filled prompt's ids, under each tokenization."""
    from sblite import protocol

    whole = split = 0
    for r in sft_rows:
        budget = protocol.parse_completion(r["completion"]).budget
        opts = {"instruction_in_user": instruction_in_user}
        prefilled = protocol.encode_prompt(tok, protocol.render_prompt(tok, r["question"], budget=budget, **opts))
        ids, _ = protocol.encode_training_example(tok, r["question"], r["completion"], **opts)
        text = protocol.render_prompt(tok, r["question"], **opts) + r["completion"]
        whole += protocol.encode(tok, text)[: len(prefilled)] == prefilled
        split += ids[: len(prefilled)] == prefilled
    return {"sequences": len(sft_rows), "whole_start_with_prefilled_prompt": whole,
            "split_start_with_prefilled_prompt": split}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/sblite-prefill-boundary")
    ap.add_argument("--train", type=int, default=50)
    ap.add_argument("--test", type=int, default=40)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--budgets", default="12,32,48,110")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="whole,split")
    ap.add_argument("--quick", action="store_true", help="12 questions, 1 epoch, 6 test questions")
    ap.add_argument("--out", default=str(RESULTS / "prefill_boundary"))
    args = ap.parse_args()
    if args.quick:
        args.train, args.test, args.epochs, args.max_new_tokens = 12, 6, 1.0, 48
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer

    import sblite.train.run as train
    from sblite.data.prepared import load_prepared
    from sblite.models import resolve_model
    from sblite.recipes import load_recipe

    work = Path(args.work)
    budgets = [int(b) for b in args.budgets.split(",")]
    tok = AutoTokenizer.from_pretrained(resolve_model("builtin:smollm2-135m"))
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    lengths, _ = write_rendered_arith(data, tok, args.train, args.seed, LEVELS, prefilled=False)
    cfg0 = load_recipe("smollm2-135m")
    counts = boundary_counts(load_prepared(data).sft, tok, cfg0.model.instruction_in_user)
    print(f"rendering lengths (mean tokens): {lengths}; boundary: {counts}", flush=True)
    results = {}
    builders = {"whole": old_build_sft_dataset, "split": train.build_sft_dataset}
    for variant in args.variants.split(","):
        t0 = time.perf_counter()
        run_dir = work / f"run-{variant}"
        cfg = load_recipe("smollm2-135m", ["stages=[sft]", f"data.path={data}", f"output_dir={run_dir}",
                                          f"sft.num_train_epochs={args.epochs}", f"sft.seed={args.seed}"])  # fmt: skip
        original = train.build_sft_dataset
        train.build_sft_dataset = builders[variant]
        try:
            train.run_training(cfg, resume=(run_dir / "sft" / "adapter_config.json").is_file())
        finally:
            train.build_sft_dataset = original
        results[variant] = eval_self_and_sweep(run_dir, work / f"eval-{variant}", args.test, budgets, args.max_new_tokens)
        results[variant]["seconds"] = time.perf_counter() - t0
        print(f"{variant}: {json.dumps(results[variant])}", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "prefill_boundary",
        "what": "pre-filled budget → mean solution tokens after budget SFT on 4 renderings per question",
        "settings": {k: v for k, v in vars(args).items() if k not in ("work", "out")},
        "rendering_mean_tokens": lengths,
        "boundary": counts,
        "variants": results,
    }
    write_json(out.with_suffix(".json"), result)
    lines = [
        "# Pre-filled budget vs length: the pre-fill boundary before (`whole`) and after (`split`) the fix",
        "",
        f"SmolLM2-135M-Instruct, budget SFT on {args.train} arith questions × 4 renderings "
        f"(mean lengths {', '.join(f'{k} {v:.1f}' for k, v in lengths.items())} tokens), {args.epochs:g} epochs; "
        f"greedy on {args.test} arith-test questions. Training sequences that start with the pre-filled "
        f"prompt's ids: whole {counts['whole_start_with_prefilled_prompt']}/{counts['sequences']}, split "
        f"{counts['split_start_with_prefilled_prompt']}/{counts['sequences']}.",
        "",
        "| variant | " + " | ".join(f"pre-fill {b}" for b in budgets) + " | slope | R² | ±50% | self: budget → tokens |",
        "| --- | " + " | ".join("---:" for _ in budgets) + " | ---: | ---: | ---: | ---: |",
    ]
    for v, r in results.items():
        cells = [f"{r['prefill'][b]['mean_tokens']:.1f}" for b in budgets]
        s = r["self"]
        lines.append(
            f"| {v} | " + " | ".join(cells) + f" | {r['prefill_slope']:.3f} | {r['prefill_r2']:.3f} | "
            f"{100 * r['prefill_adherence_50']:.0f}% | {s['mean_budget'] or 0:.1f} → {s['mean_tokens']:.1f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
