"""Benchmark ``sblite prepare``: reference-labelling throughput and batched vs one-at-a-time sampling.

    OMP_NUM_THREADS=1 python benchmarks/prepare.py                    # both parts, writes results/prepare.json
    OMP_NUM_THREADS=1 python benchmarks/prepare.py --skip-sample      # reference labelling only (~1 min)

1. Reference labels on GSM8K train (7,473) and MATH-12k (12,000) with the Qwen2 tokenizer from
   ``../shared/data/tokenizers/qwen2``: rows/s of ``run_prepare`` (read, validate, label, write; the
   tokenizer load is excluded) and the budget medians per MATH level / GSM8K difficulty bucket.
2. Sampling on SmolLM2-135M (``builtin:smollm2-135m``), k samples for each of a few arithmetic questions:
   ``generate_batch`` with ``--batch-size`` questions per call against one question per call (its k samples
   still share a call). Reported: wall time, generated tokens/s and questions/s, and the speed-up ratio.
   The sampling RNG differs between the two layouts, so token counts differ a little; tokens/s is the fair
   measure and questions/s the practical one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import write_json  # noqa: E402


def bench_reference(data_dir: Path) -> dict:
    from transformers import AutoTokenizer

    from sblite.data.prepare import PrepareOptions, run_prepare

    tok = AutoTokenizer.from_pretrained(data_dir / "tokenizers" / "qwen2")
    out: dict = {}
    for name in ("gsm8k", "math"):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = run_prepare(PrepareOptions(dataset=name, out=tmp, data_dir=str(data_dir)), tokenizer=tok)
            dt = time.perf_counter() - t0
        rep = res.report
        groups = rep["by_level"] if name == "math" else rep["by_difficulty"]
        out[name] = {
            "rows": rep["counts"]["read"],
            "kept": rep["counts"]["kept"],
            "seconds": round(dt, 2),
            "rows_per_s": round(rep["counts"]["read"] / dt, 1),
            "budget_p50_by_" + ("level" if name == "math" else "difficulty"): {
                str(g["group"]): g["budget"]["p50"] for g in groups
            },
        }
        print(name, out[name], flush=True)
    return out


def bench_sample(n_questions: int, k: int, max_new_tokens: int, batch_size: int) -> dict:
    from sblite.generate.hf import generate_batch, load_for_inference
    from sblite.protocol import PLAIN_SYSTEM_PROMPT, render_prompt

    model, tok = load_for_inference("builtin:smollm2-135m")
    with open(REPO / "tests" / "fixtures" / "arith.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][:n_questions]
    prompts = [
        render_prompt(tok, r["question"], system_prompt=PLAIN_SYSTEM_PROMPT, instruction_in_user=True)
        for r in rows
    ]
    kw = dict(max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.95, num_return_sequences=k, seed=0)
    generate_batch(model, tok, prompts[:1], **{**kw, "max_new_tokens": 4})  # warm-up
    results = {}
    for label, bs in (("one_question_at_a_time", 1), ("batched", batch_size)):
        t0 = time.perf_counter()
        gens = generate_batch(model, tok, prompts, batch_size=bs, **kw)
        dt = time.perf_counter() - t0
        n_tok = sum(g.n_tokens for gs in gens for g in gs)
        results[label] = {
            "questions_per_call": bs,
            "seconds": round(dt, 2),
            "generated_tokens": n_tok,
            "tokens_per_s": round(n_tok / dt, 1),
            "questions_per_s": round(len(prompts) / dt, 3),
            "truncated": sum(g.finish_reason == "length" for gs in gens for g in gs),
        }
        print(label, results[label], flush=True)
    results["speedup_tokens_per_s"] = round(
        results["batched"]["tokens_per_s"] / results["one_question_at_a_time"]["tokens_per_s"], 2
    )
    results["speedup_wall"] = round(
        results["one_question_at_a_time"]["seconds"] / results["batched"]["seconds"], 2
    )
    results["setup"] = {
        "questions": len(prompts),
        "k": k,
        "max_new_tokens": max_new_tokens,
        "engine": "compact",
        "model": "builtin:smollm2-135m",
    }
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("SBLITE_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("-k", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--skip-sample", action="store_true")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "prepare.json"))
    args = ap.parse_args()

    result = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "reference": bench_reference(Path(args.data_dir)),
    }
    if not args.skip_sample:
        result["sample"] = bench_sample(args.questions, args.k, args.max_new_tokens, args.batch_size)
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
