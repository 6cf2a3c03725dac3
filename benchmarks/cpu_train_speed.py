"""Budget SFT on this CPU: float32 against bfloat16 (``model.dtype``), each under glibc's malloc and under
tcmalloc (``LD_PRELOAD``): seconds per optimizer step and the loss each reaches, same model, data, seed and
steps, in one run.

    OMP_NUM_THREADS=2 python benchmarks/cpu_train_speed.py                # 4 settings × 6 steps, ~10 min
    OMP_NUM_THREADS=2 python benchmarks/cpu_train_speed.py --steps 2 --out /tmp/b.json    # a smoke run

Inputs: the first ``--questions`` GSM8K-train questions (``../shared/data/gsm8k/train.jsonl``) with their
reference solutions as targets (``sblite prepare --labels reference``), each row's budget its token length.
Model and settings: the ``smollm2-135m`` recipe (SmolLM2-135M-Instruct, LoRA r=16 on all linears, batch 8),
SFT stage only, ``--steps`` steps. The baseline is the recipe as shipped under the system malloc
(``model.dtype=float32``: float32 weights, ``bf16=False``); against it ``model.dtype=bfloat16`` (bf16 weights,
``bf16=True``: autocast, LoRA weights and AdamW in float32) and each of the two with ``--tcmalloc`` preloaded
(``libtcmalloc_minimal.so.4``, Debian's ``libtcmalloc-minimal4``; skipped with a note when absent). glibc
hands each large tensor (a batch's logits: 8 × length × 49152 floats) back to the kernel and faults it in
again on the next step; tcmalloc keeps it. Each run is a fresh process (``--child``) timing
``run_training`` with TRL's own ``train_runtime``, rounds alternate the order, and the ratio is the baseline's
median s/step over each setting's. The loss columns say whether the cheaper setting learns the same thing:
each step's loss against the baseline's (same data order), their mean absolute difference, and the mean of
the last steps.
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
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"


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
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--questions", type=int, default=256)
    ap.add_argument("--tcmalloc", default=TCMALLOC, help="the tcmalloc library to preload ('' skips those settings)")
    ap.add_argument("--out", default=str(RESULTS / "cpu_train_speed.json"))
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
    settings = [("float32", ""), ("bfloat16", "")]
    skipped = None
    if args.tcmalloc and Path(args.tcmalloc).is_file():
        settings += [("float32", args.tcmalloc), ("bfloat16", args.tcmalloc)]
    elif args.tcmalloc:
        skipped = f"{args.tcmalloc} not found (apt-get install libtcmalloc-minimal4): tcmalloc settings skipped"
        print(skipped)
    name = {s: s[0] + (" + tcmalloc" if s[1] else "") for s in settings}
    base = settings[0]
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = prepare(work, args.questions)
        for r in range(args.rounds):
            for dtype, preload in settings if r % 2 == 0 else settings[::-1]:
                env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
                if preload:
                    env["LD_PRELOAD"] = preload
                cmd = [sys.executable, __file__, "--child", "--dtype", dtype, "--round", str(r), "--data", str(data),
                       "--work", str(work), "--steps", str(args.steps)]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
                if proc.returncode:
                    sys.exit(f"{name[(dtype, preload)]} round {r} failed:\n{proc.stderr[-3000:]}")
                line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
                res = json.loads(line.removeprefix("RESULT "))
                res.update(setting=name[(dtype, preload)], ld_preload=preload, round=r,
                           s_per_step=res["train_runtime"] / res["steps"])  # fmt: skip
                runs.append(res)
                print(f"round {r} {res['setting']:22s} {res['s_per_step']:.2f} s/step, last loss {res['losses'][-1]:.3f}")
    by = {name[s]: [x for x in runs if x["setting"] == name[s]] for s in settings}
    med = {n: statistics.median(x["s_per_step"] for x in rs) for n, rs in by.items()}
    first = {n: rs[0]["losses"] for n, rs in by.items()}
    tail_n = min(4, args.steps)
    summary = {
        n: {"s_per_step": med[n], "speedup": med[name[base]] / med[n],
            "loss_last_mean": statistics.mean(first[n][-tail_n:]),
            "mean_abs_loss_diff_vs_baseline": statistics.mean(
                abs(a - b) for a, b in zip(first[n], first[name[base]], strict=True))}
        for n in by
    }  # fmt: skip
    for n, s in summary.items():
        print(f"{n:22s} {s['s_per_step']:6.2f} s/step  {s['speedup']:.2f}× the baseline  "
              f"loss (last {tail_n}) {s['loss_last_mean']:.3f}  mean |Δloss| {s['mean_abs_loss_diff_vs_baseline']:.3f}")
    write_json(Path(args.out), {
        "benchmark": "cpu_train_speed", "cpu": platform.processor() or platform.machine(),
        "args": vars(args), "baseline": name[base], "skipped": skipped,
        "inputs": f"GSM8K-train, first {args.questions} questions, reference solutions (labels=reference)",
        "summary": summary, "runs": runs,
    })  # fmt: skip


if __name__ == "__main__":
    main()
