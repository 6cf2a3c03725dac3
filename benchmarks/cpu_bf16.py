"""Budget SFT on this CPU in float32 against bfloat16 (``model.dtype``): seconds per optimizer step and the loss
each reaches, same model, data, seed and steps, in one run.

    OMP_NUM_THREADS=2 python benchmarks/cpu_bf16.py                     # 2 rounds × 2 dtypes × 24 steps, ~8 min
    OMP_NUM_THREADS=2 python benchmarks/cpu_bf16.py --steps 4 --rounds 1 --out /tmp/b.json   # a smoke run

Inputs: the first ``--questions`` GSM8K-train questions (``../shared/data/gsm8k/train.jsonl``) with their
reference solutions as targets (``sblite prepare --labels reference``), each row's budget its token length.
Model and settings: the ``smollm2-135m`` recipe (SmolLM2-135M-Instruct, LoRA r=16 on all linears, batch 8),
SFT stage only, ``--steps`` steps; the baseline is the recipe as shipped (``model.dtype=float32``: float32
weights, ``bf16=False``), against ``model.dtype=bfloat16`` (bf16 weights, ``bf16=True``: autocast, LoRA weights
and AdamW in float32). Each run is a fresh process (``--child``) timing ``run_training`` with TRL's own
``train_runtime``; rounds alternate the order. The ratio is float32 / bfloat16 of the median s/step. The loss
columns say whether the cheaper precision learns the same thing: each step's loss in both (same data order),
their mean absolute difference, and the mean of the last 8 steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from _common import write_json  # noqa: E402

RESULTS = HERE / "results"
SHARED = Path(os.environ.get("SBLITE_SHARED_DATA", REPO.parent / "shared" / "data"))
DTYPES = ("float32", "bfloat16")


def child(args) -> None:
    """One SFT run of ``--steps`` steps in ``--dtype``; prints a JSON line with TRL's timing and the losses."""
    from sblite.recipes import load_recipe
    from sblite.train.run import run_training

    run = Path(args.work) / f"run-{args.dtype}-{args.round}"
    cfg = load_recipe("smollm2-135m", [
        "stages=[sft]", f"data.path={args.data}", f"output_dir={run}", f"model.dtype={args.dtype}",
        f"sft.max_steps={args.steps}", "sft.save_steps=100000", "sft.seed=0",
    ])  # fmt: skip
    run_training(cfg)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r and "train_runtime" not in r]
    runtime = next(r["train_runtime"] for r in records if "train_runtime" in r)
    print("RESULT " + json.dumps({"dtype": args.dtype, "train_runtime": runtime, "steps": len(losses),
                                  "losses": losses}))  # fmt: skip


def prepare(work: Path, questions: int) -> Path:
    from sblite.data.prepare import PrepareOptions, run_prepare

    out = work / "prepared"
    run_prepare(PrepareOptions(dataset=str(SHARED / "gsm8k" / "train.jsonl"), out=str(out), labels="reference",
                               tokenizer="builtin:smollm2-135m", limit=questions, force=True))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--questions", type=int, default=256)
    ap.add_argument("--out", default=str(RESULTS / "cpu_bf16.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", help=argparse.SUPPRESS)
    ap.add_argument("--round", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if not (SHARED / "gsm8k" / "train.jsonl").is_file():
        sys.exit(f"needs {SHARED}/gsm8k/train.jsonl (../shared/data, or SBLITE_SHARED_DATA)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = prepare(work, args.questions)
        runs: list[dict] = []
        for r in range(args.rounds):
            for dtype in DTYPES if r % 2 == 0 else DTYPES[::-1]:
                cmd = [sys.executable, __file__, "--child", "--dtype", dtype, "--round", str(r), "--data", str(data),
                       "--work", str(work), "--steps", str(args.steps)]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                if proc.returncode:
                    sys.exit(f"{dtype} round {r} failed:\n{proc.stderr[-3000:]}")
                line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT "))
                res = json.loads(line[len("RESULT "):])
                res["round"] = r
                res["s_per_step"] = res["train_runtime"] / res["steps"]
                runs.append(res)
                print(f"round {r} {dtype:9s} {res['s_per_step']:.2f} s/step, last loss {res['losses'][-1]:.3f}")
    by = {d: [x for x in runs if x["dtype"] == d] for d in DTYPES}
    med = {d: statistics.median(x["s_per_step"] for x in by[d]) for d in DTYPES}
    first = {d: by[d][0]["losses"] for d in DTYPES}
    tail = {d: statistics.mean(first[d][-8:]) for d in DTYPES}
    diff = statistics.mean(abs(a - b) for a, b in zip(first["float32"], first["bfloat16"], strict=True))
    ratio = med["float32"] / med["bfloat16"]
    print(f"float32 {med['float32']:.2f} s/step, bfloat16 {med['bfloat16']:.2f} s/step: {ratio:.2f}× faster; "
          f"loss over the last 8 steps {tail['float32']:.3f} vs {tail['bfloat16']:.3f}, "
          f"mean |Δloss| per step {diff:.3f}")  # fmt: skip
    write_json(Path(args.out), {
        "benchmark": "cpu_bf16", "cpu": platform.processor() or platform.machine(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "args": vars(args),
        "inputs": f"GSM8K-train, first {args.questions} questions, reference solutions (labels=reference)",
        "s_per_step_median": med, "ratio_float32_over_bfloat16": ratio, "loss_last8_mean": tail,
        "mean_abs_loss_diff": diff, "runs": runs,
    })  # fmt: skip


if __name__ == "__main__":
    main()
